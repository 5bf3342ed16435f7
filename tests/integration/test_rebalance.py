"""Graceful rebalances lose nothing and duplicate nothing: revoked partitions are finished and committed first.

A second worker joins mid-stream (cooperative-sticky moves partitions to it), then the first one stops
gracefully mid-stream (its partitions move back).  Unlike a SIGKILL, neither hand-over may produce duplicates.
"""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest

from stream_worker.avro import INPUT_SCHEMA, OUTPUT_SCHEMA, load_schema
from stream_worker.settings import Settings
from tests.harness import WorkerThread, produce, read_topic

pytestmark = pytest.mark.integration

TOTAL = 1500


def test_join_and_graceful_leave_mid_stream(
    broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path
) -> None:
    in_topic = topic_factory(broker, partitions=4)
    out_topic, dlq_topic = topic_factory(broker, partitions=2), topic_factory(broker)
    settings = Settings(
        bootstrap_servers=broker.bootstrap_servers,
        input_topic=in_topic,
        output_topic=out_topic,
        dead_letter_topic=dlq_topic,
        group_id=f"g-{in_topic}",
        model_dir=toy_model_dir,
        metrics_port=0,
        session_timeout_ms=6000,
        commit_interval_ms=5000,  # rare periodic commits: only rebalance commits help
    )
    schema = load_schema(INPUT_SCHEMA)
    messages = []
    for i in range(TOTAL):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, {"id": str(i), "text": "good " * (i % 40 + 1)})
        messages.append((str(i).encode(), buf.getvalue(), None))

    def trickle() -> None:
        for start in range(0, TOTAL, 50):
            produce(broker.bootstrap_servers, in_topic, messages[start : start + 50])
            time.sleep(0.6)

    feeder = threading.Thread(target=trickle, daemon=True)
    first = WorkerThread(settings).__enter__()
    second: WorkerThread | None = None
    try:
        feeder.start()
        read_topic(broker.bootstrap_servers, out_topic, lambda r: len(r) >= 300, 60)
        second = WorkerThread(settings).__enter__()  # joins: some partitions move to it
        _wait(lambda: second is not None and second.worker.metrics.assigned_partitions._value.get() > 0)
        read_topic(broker.bootstrap_servers, out_topic, lambda r: len(r) >= 700, 60)
        assert feeder.is_alive(), "the hand-over must happen mid-stream"
        first.stop()  # graceful leave: its partitions move to the second worker
        feeder.join(60)
        # Everything, plus two seconds to catch late duplicates.
        out = read_topic(broker.bootstrap_servers, out_topic, lambda r: len(r) >= TOTAL, 120, linger_s=2.0)
    finally:
        if second is not None:
            second.stop()
        if first._thread.is_alive():
            first.stop()
    ids = Counter(
        fastavro.schemaless_reader(io.BytesIO(r.value or b""), load_schema(OUTPUT_SCHEMA), None)["id"] for r in out
    )
    assert set(ids) == {str(i) for i in range(TOTAL)}, "ids lost"
    assert sum(ids.values()) == TOTAL, f"{sum(ids.values()) - TOTAL} duplicates after graceful hand-overs"


def _wait(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
