"""End to end: ≥ 2,000 messages, two worker processes in one group, a SIGKILL mid-stream, no id lost.

Also checks ``/metrics``, ``/healthz`` and ``/readyz`` of the running workers and that their counters match the
records found on the output topic.
"""

from __future__ import annotations

import io
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest

from stream_worker.pipeline.avro import OUTPUT_SCHEMA, load_schema
from stream_worker.tools.broker import free_port
from tests.harness import Record, WorkerProcess, avro_messages, http_get, metric_value, produce, read_topic, wait_for
from tests.toy_model import NEGATIVE, POSITIVE

pytestmark = pytest.mark.integration

FIRST_WAVE = 1000
SECOND_WAVE = 1500


def make_messages(start: int, count: int, rng: random.Random) -> list[tuple[bytes, bytes, None]]:
    words = [*POSITIVE, *NEGATIVE, "plot", "actor", "scene", "the", "a", "movie", "and", "but"]
    now_ms = int(time.time() * 1000)
    records = [
        {
            "id": f"msg-{i:05d}",
            "text": " ".join(rng.choice(words) for _ in range(rng.randint(1, 60))),
            "produced_at": now_ms,
        }
        for i in range(start, start + count)
    ]
    return avro_messages(records, keys=[f"key-{i:05d}".encode() for i in range(start, start + count)])


def _trickle(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes, None]], killed: threading.Event) -> None:
    """Publish in small chunks over several seconds, so that a kill lands mid-stream (however slow the workers
    are, the chunks from message 500 on wait for ``killed``)."""
    for start in range(0, len(messages), 50):
        if start == 500:
            killed.wait(600)
        produce(bootstrap, topic, messages[start : start + 50])
        time.sleep(0.4)


def _wait_until_both_own_partitions(workers: list[WorkerProcess], timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = [metric_value(http_get(w.port, "/metrics")[1], "scorer_assigned_partitions") for w in workers]
        if all(n > 0 for n in owned) and sum(owned) == 6:
            return
        time.sleep(0.2)
    raise AssertionError(f"partitions not spread over both workers: {owned}")


def scored_ids(records: list[Record]) -> Counter[str]:
    schema = load_schema(OUTPUT_SCHEMA)
    ids: Counter[str] = Counter()
    for r in records:
        record = fastavro.schemaless_reader(io.BytesIO(r.value or b""), schema, None)
        assert r.key == f"key-{record['id'][4:]}".encode(), "output key differs from input key"
        assert record["label"] in ("POSITIVE", "NEGATIVE") and 0.0 <= record["score"] <= 1.0
        ids[record["id"]] += 1
    return ids


def test_two_workers_sigkill_and_restart_lose_nothing(
    broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path, tmp_path: Path
) -> None:
    in_topic = topic_factory(broker, partitions=6)
    out_topic, dlq_topic = topic_factory(broker, partitions=3), topic_factory(broker, partitions=1)
    env_common = {
        "SCORER_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "SCORER_INPUT_TOPIC": in_topic,
        "SCORER_OUTPUT_TOPIC": out_topic,
        "SCORER_DEAD_LETTER_TOPIC": dlq_topic,
        "SCORER_GROUP_ID": f"group-{in_topic}",
        "SCORER_MODEL_DIR": str(toy_model_dir),
        "SCORER_SESSION_TIMEOUT_MS": "6000",
        "SCORER_COMMIT_INTERVAL_MS": "5000",  # a wide uncommitted window: the kill forces real redo
        "SCORER_INFERENCE_THREADS": "1",
    }
    workers = [
        WorkerProcess({**env_common, "SCORER_METRICS_PORT": str(free_port())}, tmp_path / f"worker-{n}.log")
        for n in range(2)
    ]
    rng = random.Random(7)
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready(300)  # TensorFlow's import and the model's load, two processes on a small machine
            assert http_get(w.port, "/healthz")[0] == 200
        _wait_until_both_own_partitions(workers)

        # Wave 1: both workers, no failure. Counters must match the output topic exactly.
        produce(broker.bootstrap_servers, in_topic, make_messages(0, FIRST_WAVE, rng))
        wave1 = read_topic(broker.bootstrap_servers, out_topic, lambda r: len(r) >= FIRST_WAVE, 180)
        ids1 = scored_ids(wave1)
        assert len(ids1) == FIRST_WAVE, f"only {len(ids1)} of {FIRST_WAVE} scored"

        def counted() -> bool:  # the last delivery callbacks land in the counters after the records do
            texts = [http_get(w.port, "/metrics")[1] for w in workers]
            return (
                sum(metric_value(t, "scorer_messages_in_total") for t in texts) >= FIRST_WAVE
                and sum(metric_value(t, "scorer_messages_out_total") for t in texts) >= len(wave1)
                and sum(metric_value(t, "scorer_end_to_end_seconds_count") for t in texts) >= len(wave1)
            )

        wait_for(counted, 120, "wave 1 counted in both workers' /metrics")
        texts = [http_get(w.port, "/metrics")[1] for w in workers]
        assert sum(metric_value(t, "scorer_messages_in_total") for t in texts) == FIRST_WAVE
        assert sum(metric_value(t, "scorer_messages_out_total") for t in texts) == len(wave1)
        assert all(metric_value(t, "scorer_batch_size_count") > 0 for t in texts), "both workers must score"
        assert sum(metric_value(t, "scorer_end_to_end_seconds_count") for t in texts) == len(wave1)
        assert all(http_get(w.port, "/readyz")[0] == 200 for w in workers)

        # Wave 2: SIGKILL worker 0 while it works, restart it, and still lose nothing.
        wave2 = make_messages(FIRST_WAVE, SECOND_WAVE, rng)
        killed = threading.Event()
        trickle = threading.Thread(
            target=_trickle, args=(broker.bootstrap_servers, in_topic, wave2, killed), daemon=True
        )
        trickle.start()
        read_topic(broker.bootstrap_servers, out_topic, lambda r: len(r) >= FIRST_WAVE + 300, 300)
        workers[0].kill()
        assert trickle.is_alive(), "the kill must happen while messages still arrive"
        killed.set()
        workers[0].start()
        workers[0].wait_ready(300)
        trickle.join(120)
        total = FIRST_WAVE + SECOND_WAVE
        everything = read_topic(broker.bootstrap_servers, out_topic, lambda r: len(scored_ids(r)) >= total, 300)
        ids = scored_ids(everything)
        missing = {f"msg-{i:05d}" for i in range(total)} - set(ids)
        assert not missing, f"{len(missing)} ids lost, e.g. {sorted(missing)[:5]}"
        duplicates = sum(n - 1 for n in ids.values())
        print(f"\n[{broker.kind}] scored {total} ids, {duplicates} duplicates after SIGKILL (at-least-once)")
        assert duplicates < total  # duplicates are allowed, but only those redone after the kill

        # Graceful stop: SIGTERM → exit 0.
        for w in workers:
            assert w.terminate(120) == 0, w.log_tail()
        assert read_topic(broker.bootstrap_servers, dlq_topic, lambda r: False, 1.0) == []
    finally:
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.kill()
