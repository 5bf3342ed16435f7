"""Benchmark: what registry-framed Avro in and out costs next to plain Avro (issue 19's target: ≥ 0.97x).

``scorer bench --schema-registry-url`` measures it too, once per round among a dozen variants; one round is too
noisy for a 3 % question.  This script measures only the two, interleaved over ``--rounds`` (plain, registry,
plain, registry, ...) so machine noise hits both alike: one Apache Kafka node and one Apicurio Registry (the test
suite's launchers, from Maven Central), ``scorer worker`` with default settings as users start it (the package's
``WorkerUnderTest``), a fresh topic set per run, ``short`` and ``long`` texts published at once, texts/s until the
last score is read back.  Both runs publish Avro; the registry run frames input with the registered schema id
(confluent-kafka's ``AvroSerializer``) and the worker frames its scores.

Usage::

    .venv/bin/python bench/registry_cost.py --model-dir .cache/ci-run/serving_model --rounds 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from stream_worker.bench.kafka_load import WorkerUnderTest  # noqa: E402
from stream_worker.bench.runner import machine, text_mixes  # noqa: E402
from stream_worker.bench.variants import Options  # noqa: E402
from tests.brokers import KafkaBroker  # noqa: E402
from tests.registry import ApicurioRegistry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--output", type=Path, default=REPO / "reports" / "benchmarks" / "registry.md")
    args = parser.parse_args()
    opts = Options(model_dir=args.model_dir.resolve(), output_dir=args.output.parent)
    mixes = text_mixes(opts)
    results: dict[tuple[str, str], list[float]] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="registry-cost-"))
    with KafkaBroker(heap="512m") as broker, ApicurioRegistry() as registry:
        variants = {"plain Avro": [], "registry-framed in and out": ["--schema-registry-url", registry.url]}
        for round_no in range(args.rounds):
            for name, flags in variants.items():
                worker = WorkerUnderTest(opts, broker.bootstrap_servers, flags, log_dir)
                try:
                    for mix, texts in mixes.items():
                        rate = worker.throughput(texts, f"{mix}{round_no}-")
                        results.setdefault((name, mix), []).append(rate)
                        print(f"round {round_no + 1}: {name} [{mix}] {rate:.1f} texts/s", file=sys.stderr, flush=True)
                finally:
                    worker.stop()
    info = machine()
    lines = [
        f"# Schema Registry cost — {info['date']}, commit {info['commit']}",
        "",
        f"Machine: **{info['cpu']}**, {info['cores']} cores; flags: `{info['flags']}`.",
        f"Command: `.venv/bin/python bench/registry_cost.py --model-dir {args.model_dir} --rounds {args.rounds}` "
        "(Apache Kafka single node, Apicurio Registry 3.3.3, `scorer worker` default settings; the two variants "
        "interleaved, medians of the rounds).",
        "",
        f"Texts: `short` = {len(mixes['short'])} review snippets, `long` = {len(mixes['long'])} texts of 30 "
        "snippets each.",
        "",
        "| variant | short texts/s (median) | long texts/s (median) | short, each round | long, each round |",
        "|---|---|---|---|---|",
    ]
    medians = {}
    for name in ("plain Avro", "registry-framed in and out"):
        row = [statistics.median(results[(name, m)]) for m in mixes]
        medians[name] = row
        each = [", ".join(f"{r:.1f}" for r in results[(name, m)]) for m in mixes]
        lines.append(f"| {name} | {row[0]:.1f} | {row[1]:.1f} | {each[0]} | {each[1]} |")
    ratio = [r / p for r, p in zip(medians["registry-framed in and out"], medians["plain Avro"], strict=True)]
    lines += [
        "",
        f"Registry-framed / plain: **{ratio[0]:.2f}x** (short), **{ratio[1]:.2f}x** (long); target ≥ 0.97x: "
        f"{'met' if min(ratio) >= 0.97 else 'not met'}.",
    ]
    args.output.write_text("\n".join(lines) + "\n")
    print(f"report: {args.output}")


if __name__ == "__main__":
    main()
