"""Shared fixtures.  Brokers start lazily: only tests that request them pay for them.

Fixtures (session scope unless noted):
  kafka_broker   Apache Kafka 4.x KRaft node (jars via scripts/fetch_kafka.sh), or the cluster named
                 by TEST_KAFKA_BOOTSTRAP=host:port when set.
  tansu_broker   embedded tansu broker (stream_worker.broker.TansuBroker), memory storage.
  broker         parametrised over both: test ids end in [kafka] / [tansu].  TEST_BROKERS=kafka (or
                 tansu) skips the other one.  A test marked ``broker_agnostic`` (the broker plays no part in what
                 it checks) runs on tansu only in the full matrix (``TEST_FULL_MATRIX=1``, ``make test-all``);
                 ``make test`` deselects its [tansu] case.
  topic_factory  function scope: topic_factory(broker, partitions=3) -> fresh "test-<uuid>" topic.
Every broker object has ``.bootstrap_servers`` (str) and ``.kind`` ("kafka" | "tansu").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

try:
    from tests.brokers import Broker, ExternalBroker, KafkaBroker, new_topic
except ModuleNotFoundError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from brokers import Broker, ExternalBroker, KafkaBroker, new_topic  # type: ignore[no-redef]

log = logging.getLogger(__name__)

BROKER_KINDS = ("kafka", "tansu")


def _enabled_kinds() -> set[str]:
    raw = os.environ.get("TEST_BROKERS", ",".join(BROKER_KINDS))
    return {k.strip() for k in raw.split(",") if k.strip()}


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    external = os.environ.get("TEST_KAFKA_BOOTSTRAP")
    if external:
        yield ExternalBroker(external)
        return
    broker = KafkaBroker().start()
    log.info("Apache Kafka ready on %s in %.1fs", broker.bootstrap_servers, broker.startup_seconds or 0.0)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tansu_broker() -> Iterator[Broker]:
    from stream_worker.tools.broker import TansuBroker

    with TansuBroker() as broker:
        yield broker


@pytest.fixture(scope="session", params=BROKER_KINDS, ids=lambda kind: str(kind))
def broker(request: pytest.FixtureRequest) -> Broker:
    kind: str = request.param
    if kind not in _enabled_kinds():
        pytest.skip(f"{kind} broker disabled by TEST_BROKERS")
    result: Broker = request.getfixturevalue(f"{kind}_broker")
    return result


@pytest.fixture
def topic_factory() -> Callable[..., str]:
    """``topic_factory(broker, partitions=1, **kw)`` creates a fresh topic and waits for it."""

    def make(broker: Broker | str, partitions: int = 1, **kwargs: Any) -> str:
        return new_topic(broker, partitions=partitions, **kwargs)

    return make


@pytest.fixture(scope="session")
def toy_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A model repository holding one small model with the production contract (see tests/toy_model.py)."""
    try:
        from tests.toy_model import build_toy_model
    except ModuleNotFoundError:
        from toy_model import build_toy_model  # type: ignore[no-redef]

    base = tmp_path_factory.mktemp("models")
    build_toy_model(base, version=7)
    return base


_HEAVY_FIRST = ("tests/faults/", "tests/deploy/", "tests/integration/")  # minutes per file; unit files take seconds


@pytest.hookimpl(trylast=True)  # after pytest's own grouping by session-scoped parameters (the broker)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """1. Deselect (not skip) the [tansu] case of broker-agnostic tests unless TEST_FULL_MATRIX=1.
    2. On several pytest processes (``-n 2 --dist loadfile``), hand out the slow files first: the processes then
       finish together on small unit files instead of one waiting for the other's last fault scenario.  Stable:
       the order within each group is unchanged.  Needs ``--no-loadscope-reorder`` (xdist sorts by test count)."""
    if os.environ.get("TEST_FULL_MATRIX") != "1":
        keep, drop = [], []
        for item in items:
            repeat = item.get_closest_marker("broker_agnostic") is not None and item.name.endswith("[tansu]")
            (drop if repeat else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # set in each xdist process, which collects (the controller does not)
        return

    def rank(item: pytest.Item) -> int:
        path = item.nodeid
        return next((n for n, prefix in enumerate(_HEAVY_FIRST) if path.startswith(prefix)), len(_HEAVY_FIRST))

    items.sort(key=rank)


# --- a skipped test is a failure when SCORER_TEST_NO_SKIP=1 (set by `make test` and CI) -------------------------
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SKIPPED and os.environ.get("SCORER_TEST_NO_SKIP") == "1":
        print(f"\nERROR: {len(_SKIPPED)} tests were skipped; every test must run: {_SKIPPED[:5]}")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[Any]:
    """A real Schema Registry (Apicurio Registry, Confluent-compatible API at ``.url``), one per session."""
    try:
        from tests.registry import ApicurioRegistry
    except ModuleNotFoundError:
        from registry import ApicurioRegistry  # type: ignore[no-redef]

    with ApicurioRegistry() as registry:
        log.info("Apicurio Registry ready on %s in %.1fs", registry.url, registry.startup_seconds or 0.0)
        yield registry
