"""Back-pressure: when the model is slower than the input, the worker stops reading instead of queueing without
bound (regression: it used to read one message per loop turn even when full, until the engine refused work and the
worker stopped with 'texts are waiting').  Every message is still scored exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.harness import WorkerThread, avro_messages, produce, read_topic, worker_settings

pytestmark = pytest.mark.integration


class SlowScorer:
    """The real scorer, 30 ms slower per batch: a model slower than the input stream."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.version = inner.version

    def __call__(self, texts: list[str]) -> np.ndarray:
        time.sleep(0.03)
        return np.asarray(self.inner(texts))


@pytest.mark.broker_agnostic
def test_slow_model_bounds_in_flight_and_loses_nothing(
    broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path
) -> None:
    settings = worker_settings(broker, topic_factory, toy_model_dir, partitions=2, max_batch_size=8, sort_window=2)
    count = 1500
    with WorkerThread(settings) as wt:
        worker = wt.worker
        assert worker.engine is not None
        worker.engine.scorer = SlowScorer(worker.engine.scorer)  # type: ignore[assignment]
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, len(worker.in_flight))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        produce(
            broker.bootstrap_servers,
            settings.input_topic,
            avro_messages([{"id": f"m{i}", "text": "good film" if i % 2 else "bad film"} for i in range(count)]),
        )
        out = read_topic(broker.bootstrap_servers, settings.output_topic, lambda r: len(r) >= count, 240)
        done.set()
        assert wt.error is None
    assert sorted(r.key for r in out) == sorted(f"m{i}".encode() for i in range(count))
    assert peak <= worker.max_in_flight, f"in flight peaked at {peak} > {worker.max_in_flight}"
