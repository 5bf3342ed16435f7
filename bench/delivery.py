"""Benchmark: what exactly-once delivery costs next to at-least-once, and the knob that trades it.

One Apache Kafka node (the test suite's ``KafkaBroker``, jars from Maven Central), one ``scorer worker
--processes 1`` per run (the installed console script, as users run it), a backlog of ``--messages`` JSON review
snippets pre-published to a fresh 2-partition topic per run.  Measured: seconds from the worker's ``/readyz`` to
the moment a ``read_committed`` reader has seen every score (for exactly-once that includes the last transaction's
commit), as texts/s, interleaved over ``--rounds`` (A B C D A B C D ...) so machine noise hits all configurations
alike.  Configurations: at-least-once (commit every 1 s) and exactly-once with ``--commit-interval-ms`` 100 / 1000
/ 5000 (one transaction per interval).  Two models: the real one (``--model-dir``; scoring dominates) and a toy
model with the same contract (scoring nearly free: the delivery overhead shows in full).

Usage::

    .venv/bin/python bench/delivery.py --model-dir models/sentiment --messages 3000 --rounds 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from confluent_kafka import Consumer, Producer  # noqa: E402

from stream_worker.tools.broker import free_port  # noqa: E402
from stream_worker.tools.demo import load_reviews  # noqa: E402
from tests.brokers import KafkaBroker, new_topic  # noqa: E402

SCORER = str(Path(sys.executable).parent / "scorer")
CONFIGS = [
    ("at-least-once", 1000),
    ("exactly-once", 100),
    ("exactly-once", 1000),
    ("exactly-once", 5000),
]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def publish(bootstrap: str, topic: str, texts: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4"})
    for i, text in enumerate(texts):
        producer.produce(topic, key=f"m{i}".encode(), value=json.dumps({"id": f"m{i}", "text": text}).encode())
        producer.poll(0)
    assert producer.flush(60) == 0


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def one_run(
    bootstrap: str, model_dir: Path, texts: list[str], delivery: str, interval_ms: int, log: Path
) -> tuple[float, float]:
    """One worker drains a backlog of ``texts``: (texts/s until every score is written, as a read_uncommitted
    reader sees it; seconds more until a read_committed reader has every score)."""
    in_topic = new_topic(bootstrap, partitions=2, prefix="bench-in")
    out_topic = new_topic(bootstrap, partitions=2, prefix="bench-out")
    dlq_topic = new_topic(bootstrap, prefix="bench-dlq")
    publish(bootstrap, in_topic, texts)
    readers = {}
    for isolation in ("read_uncommitted", "read_committed"):
        reader = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "isolation.level": isolation,
            }
        )
        reader.subscribe([out_topic])
        reader.consume(1, timeout=3.0)  # join before the clock starts
        readers[isolation] = reader
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
    flags = ["--delivery", delivery, "--commit-interval-ms", str(interval_ms), "--processes", "1"]
    cmd = [SCORER, "worker", "--bootstrap-servers", bootstrap, "--input-topic", in_topic, "--output-topic",
           out_topic, "--dead-letter-topic", dlq_topic, "--group-id", f"g-{in_topic}", "--model-dir",
           str(model_dir), "--input-format", "json", "--metrics-port", str(port), "--session-timeout-ms", "6000",
           *flags]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not ready(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not become ready; see {log}")
            time.sleep(0.05)
        t0 = time.monotonic()
        seen = dict.fromkeys(readers, 0)
        done: dict[str, float] = {}
        while len(done) < len(readers):
            for isolation, reader in readers.items():
                if isolation not in done:
                    seen[isolation] += sum(1 for m in reader.consume(1000, timeout=0.05) if m.error() is None)
                    if seen[isolation] >= len(texts):
                        done[isolation] = time.monotonic() - t0
            if time.monotonic() - t0 > 900:
                raise RuntimeError(f"only {seen} of {len(texts)} scores after 900 s; see {log}")
        written = done["read_uncommitted"]
        return len(texts) / written, max(0.0, done["read_committed"] - written)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        for reader in readers.values():
            reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "sentiment")
    parser.add_argument("--messages", type=int, default=3000, help="backlog per run (real model)")
    parser.add_argument("--toy-messages", type=int, default=20000, help="backlog per run (toy model)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPO / "reports" / "benchmarks" / "delivery.md")
    args = parser.parse_args()

    from tests.toy_model import build_toy_model

    work = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    toy_dir = work / "toy"
    build_toy_model(toy_dir)
    reviews = load_reviews(max(args.messages, args.toy_messages))
    models = [("real model", args.model_dir, reviews[: args.messages]), ("toy model", toy_dir, reviews)]
    results: dict[tuple[str, str, int], list[float]] = {}
    delays: dict[tuple[str, str, int], list[float]] = {}
    log = work / "workers.log"
    with KafkaBroker() as broker:
        for _ in range(args.rounds):
            for model_name, model_dir, texts in models:
                for delivery, interval in CONFIGS:
                    rate, delay = one_run(broker.bootstrap_servers, model_dir, texts, delivery, interval, log)
                    results.setdefault((model_name, delivery, interval), []).append(rate)
                    delays.setdefault((model_name, delivery, interval), []).append(delay)
                    print(f"{model_name:10s} {delivery:13s} {interval:5d} ms  {rate:8.1f} texts/s  +{delay:.2f} s")

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    lines = [
        "# Exactly-once vs at-least-once: throughput cost",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; commit {commit.stdout.strip()}; "
        f"CPU: {cpu_model()} ({os.cpu_count()} cores); one Apache Kafka node on loopback",
        f"- one `scorer worker --processes 1` per run draining a backlog (real model: {args.messages} review "
        f"snippets, toy model: {args.toy_messages}) from a 2-partition topic; texts/s from `/readyz` until every "
        "score is written (a `read_uncommitted` reader has them all); 'visible after' = seconds more until a "
        f"`read_committed` reader has them all (the last transaction's commit); median of {args.rounds} "
        "interleaved rounds",
        "- command: `.venv/bin/python bench/delivery.py " + " ".join(sys.argv[1:]) + "`",
        "",
        "| model | delivery | commit interval (transaction length) | texts/s | vs at-least-once | visible after |",
        "|---|---|---|---|---|---|",
    ]
    for model_name, _, _ in models:
        base = statistics.median(results[(model_name, "at-least-once", 1000)])
        for delivery, interval in CONFIGS:
            rate = statistics.median(results[(model_name, delivery, interval)])
            delay = statistics.median(delays[(model_name, delivery, interval)])
            lines.append(
                f"| {model_name} | {delivery} | {interval} ms | {rate:.1f} | {rate / base:.2f}x | {delay:.2f} s |"
            )
    lines += [
        "",
        "Every round's figures (texts/s): "
        + "; ".join(f"{m} {d} {i} ms: {', '.join(f'{r:.1f}' for r in rs)}" for (m, d, i), rs in results.items()),
        "",
    ]
    args.output.write_text("\n".join(lines))
    print(f"report: {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")


if __name__ == "__main__":
    main()
