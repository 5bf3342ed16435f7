"""Model rollout without restart, on a real broker, through the ``scorer worker`` console script.

A stream is scored while version 8 is copied into the repository file by file (as TFX Pusher does): outputs flip
from 7 to 8 with no restart and no loss.  Then a broken version 9 (corrupt ``saved_model.pb``) is pushed: it is
refused (log line + ``scorer_model_load_failures_total``) and scoring goes on with 8.  Along the input's offsets,
the versions never go back and never include 9.  Apache Kafka only: the broker plays no part in a rollout (the
end-to-end, pool and rebalance tests run on both brokers).
"""

from __future__ import annotations

import io
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest

from stream_worker.pipeline.avro import OUTPUT_SCHEMA, load_schema
from tests.harness import avro_messages, http_get, metric_value, produce, read_topic, start_worker_cli, wait_for

pytestmark = pytest.mark.integration

SCORER = str(Path(sys.executable).parent / "scorer")


def slow_copy(src: Path, dst: Path) -> None:
    """Copy a version folder file by file with pauses, like a pusher writing to shared storage."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            time.sleep(0.3)


def test_new_version_is_served_without_restart_and_a_broken_one_is_refused(
    kafka_broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "models"
    shutil.copytree(toy_model_dir / "7", repo / "7")
    bootstrap = kafka_broker.bootstrap_servers
    in_topic, out_topic, dlq_topic = (topic_factory(kafka_broker) for _ in range(3))
    log_path = tmp_path / "worker.log"
    worker, port = start_worker_cli(
        bootstrap,
        (in_topic, out_topic, dlq_topic),
        repo,
        log_path,
        "--model-poll-interval-s",
        "0.5",
        "--model-settle-s",
        "1",
    )
    stop = threading.Event()
    sent: list[int] = []

    def stream() -> None:
        n = 0
        while not stop.is_set():
            batch = [
                {"id": f"m-{i:05d}", "text": "a great film" if i % 2 else "an awful waste"} for i in range(n, n + 20)
            ]
            produce(bootstrap, in_topic, avro_messages(batch))
            n += 20
            sent.append(n)
            time.sleep(0.2)

    streamer = threading.Thread(target=stream, daemon=True)
    try:
        streamer.start()
        read_topic(bootstrap, out_topic, lambda r: len(r) >= 100, 300)

        slow_copy(repo / "7", repo / "8")  # a non-atomic push of a new version
        wait_for(
            lambda: metric_value(http_get(port, "/metrics")[1], "scorer_model_info", 'version="8"') == 1,
            300,
            "version 8 served",
        )

        broken = repo / "9"
        shutil.copytree(repo / "7", broken)
        (broken / "saved_model.pb").write_bytes(b"\x00 this is not a protocol buffer \xff" * 10)
        wait_for(
            lambda: (
                sum(
                    metric_value(http_get(port, "/metrics")[1], "scorer_model_load_failures_total", f'reason="{r}"')
                    for r in ("load", "contract", "warmup")
                )
                >= 1
            ),
            300,
            "version 9 refused",
        )
        time.sleep(2.0)  # keep scoring after the refusal
        stop.set()
        streamer.join(120)
        total = sent[-1]
        records = read_topic(bootstrap, out_topic, lambda r: len({x.key for x in r}) >= total, 300)
        assert worker.poll() is None, "the worker must keep running"

        schema = load_schema(OUTPUT_SCHEMA)
        decoded = [fastavro.schemaless_reader(io.BytesIO(r.value or b""), schema, None) for r in records]
        assert {d["id"] for d in decoded} == {f"m-{i:05d}" for i in range(total)}, "no message may be lost"
        by_offset = sorted(decoded, key=lambda d: d["source_offset"])
        versions = [d["model_version"] for d in by_offset]
        assert set(versions) == {"7", "8"}, set(versions)
        first8 = versions.index("8")
        assert all(v == "7" for v in versions[:first8]) and all(v == "8" for v in versions[first8:]), (
            "versions must flip once, in offset order"
        )
        headers = {r.headers.get("scorer.model.version") for r in records}
        assert headers == {b"7", b"8"}
        metrics = http_get(port, "/metrics")[1]
        assert metric_value(metrics, "scorer_model_info", 'version="8"') == 1
        assert metric_value(metrics, "scorer_model_info", 'version="7"') == 0
        assert metric_value(metrics, "scorer_model_swaps_total") == 1
        # a corrupt saved_model.pb is a load failure, not a broken contract (the reason comes from the error type)
        assert metric_value(metrics, "scorer_model_load_failures_total", 'reason="load"') == 1
        log = log_path.read_text()
        assert "model version refused" in log and "Traceback" not in log
        assert "great film" not in log and "awful waste" not in log
    finally:
        stop.set()
        if worker.poll() is None:
            worker.terminate()
            assert worker.wait(60) == 0
