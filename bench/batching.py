"""Benchmark: how batching decides scoring throughput on this machine (real model, real review texts).

Compares, side by side in one run and interleaved (A B C A B C ...) so machine noise hits all alike:

  one-by-one       every text alone (what a request-per-message service does)
  batch, arrival   batches of ``--batch`` in arrival order (sort_window=1)
  batch, sorted    the worker's default: windows of 4 batches sorted by length, then cut by count and token budget

Only the score stage runs (no broker): this is the part the worker's batching changes.  Reports texts/s and
ratios to one-by-one.  Usage::

    .venv/bin/python bench/batching.py --model-dir .cache/default-run/models --texts 1024 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from stream_worker.bench.child import plan_batches
from stream_worker.engine.score import Scorer
from stream_worker.pipeline.guard import Guard
from stream_worker.tools.demo import load_reviews


def plan(texts: list[str], batch: int, budget: int, window: int, max_tokens: int) -> list[list[str]]:
    """The batches the worker's own guard and batcher cut from a backlog of ``texts`` (full windows)."""
    return plan_batches(texts, Guard(1 << 20, max_tokens), batch, budget, window)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--token-budget", type=int, default=4096)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one-by-one-texts", type=int, default=256, help="one-by-one is slow: time a prefix")
    args = parser.parse_args()

    scorer = Scorer.load(args.model_dir)
    scorer.warm_up(args.batch, args.max_tokens)
    texts = load_reviews(args.texts)
    variants = {
        "one-by-one": [[t] for t in texts[: args.one_by_one_texts]],
        "batch, arrival order": plan(texts, args.batch, args.token_budget, 1, args.max_tokens),
        "batch, length-sorted (default)": plan(texts, args.batch, args.token_budget, 4, args.max_tokens),
    }
    for batches in variants.values():  # warm every shape once
        for b in batches[:3]:
            scorer(b)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, batches in variants.items():
            started = time.perf_counter()
            for b in batches:
                scorer(b)
            rates[name].append(sum(len(b) for b in batches) / (time.perf_counter() - started))
    base = statistics.median(rates["one-by-one"])
    print(
        f"model {args.model_dir} v{scorer.version}; {len(texts)} Rotten Tomatoes reviews; batch {args.batch}, "
        f"token budget {args.token_budget}; {args.rounds} interleaved rounds; {os.cpu_count()} cores"
    )
    print("| variant | batches | texts/s (median) | min - max | ratio to one-by-one |\n|---|---|---|---|---|")
    for name, values in rates.items():
        med = statistics.median(values)
        spread = f"{min(values):.1f} - {max(values):.1f}"
        print(f"| {name} | {len(variants[name])} | {med:.1f} | {spread} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
