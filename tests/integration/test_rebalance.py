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

from stream_worker.pipeline.avro import OUTPUT_SCHEMA, load_schema
from tests.harness import WorkerThread, avro_messages, produce, read_topic, wait_for, worker_settings

pytestmark = pytest.mark.integration

TOTAL = 1500


def test_join_and_graceful_leave_mid_stream(
    broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path
) -> None:
    # Rare periodic commits: only the commits made on revocation can prevent duplicates.
    settings = worker_settings(broker, topic_factory, toy_model_dir, partitions=4, commit_interval_ms=5000)
    in_topic, out_topic = settings.input_topic, settings.output_topic
    messages = avro_messages([{"id": str(i), "text": "good " * (i % 40 + 1)} for i in range(TOTAL)])
    leaving = threading.Event()

    def trickle() -> None:
        for start in range(0, TOTAL, 25):
            if start == 900:  # however slow the workers are, the rest waits for the leave: it happens mid-stream
                leaving.wait(600)
            produce(broker.bootstrap_servers, in_topic, messages[start : start + 25])
            time.sleep(0.5)

    feeder = threading.Thread(target=trickle, daemon=True)
    first = WorkerThread(settings).__enter__()
    second: WorkerThread | None = None
    try:
        feeder.start()
        read_topic(broker.bootstrap_servers, out_topic, lambda r: len(r) >= 300, 300)
        second = WorkerThread(settings).__enter__()  # joins: some partitions move to it
        wait_for(
            lambda: second is not None and second.worker.metrics.assigned_partitions._value.get() > 0,
            300,
            "partitions assigned to the second worker",
        )
        read_topic(broker.bootstrap_servers, out_topic, lambda r: len(r) >= 700, 300)
        assert feeder.is_alive(), "the hand-over must happen mid-stream"
        leaving.set()
        first.stop()  # graceful leave: its partitions move to the second worker
        feeder.join(120)
        # Everything, plus two seconds to catch late duplicates.
        out = read_topic(broker.bootstrap_servers, out_topic, lambda r: len(r) >= TOTAL, 300, linger_s=2.0)
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
