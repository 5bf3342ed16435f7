"""Fixtures of the fault suite: one three-node Apache Kafka cluster per pytest session, the slow model.

The default run (``make test``, ``pytest tests``) collects only the time-boxed subset (scenarios marked
``faults_quick``); ``FAULTS_FULL=1`` (``make faults``) runs every scenario.  Deselected is not skipped: the
subset still fails a run that sets ``SCORER_TEST_NO_SKIP=1`` if it does not pass.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.slow_model import build_slow_model
from tests.kafka_cluster import KafkaCluster

log = logging.getLogger(__name__)

SLOW_BATCH_S = 9.0  # one slow batch; the scenario sets max.poll.interval.ms to 12 s


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("FAULTS_FULL") == "1":
        return
    keep, drop = [], []
    for item in items:
        in_suite = item.get_closest_marker("faults") is not None
        (drop if in_suite and item.get_closest_marker("faults_quick") is None else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="module")  # every scenario lives in test_faults.py: the three JVMs stop when it is done,
def kafka_cluster() -> Iterator[KafkaCluster]:  # not after the rest of make test (they idle at ~5 % CPU each)
    cluster = KafkaCluster().start_cluster()
    log.info("3-node Kafka cluster on %s in %.1fs", cluster.bootstrap_servers, cluster.startup_seconds or 0.0)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def slow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("slow-models")
    build_slow_model(base, SLOW_BATCH_S, version=3)
    return base
