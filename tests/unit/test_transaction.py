"""Exactly-once commit rules (``stream_worker/transaction.py``) without a broker: which transactional errors are
retried, which abort and rewind, which end the worker; offsets sent are those after the last produced message."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream_worker.common.errors import ConfigError, InfrastructureError
from stream_worker.common.settings import Settings
from stream_worker.pipeline.commit import OffsetTracker
from stream_worker.pipeline.transaction import TransactionCommitter, check_delivery_support


class FakeProducer:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: dict[str, list[KafkaError]] = {}
        self.sent: list[list[TopicPartition]] = []

    def _maybe_fail(self, name: str) -> None:
        self.calls.append(name)
        queue = self.fail.get(name)
        if queue:
            raise KafkaException(queue.pop(0))

    def init_transactions(self, _timeout: float) -> None:
        self._maybe_fail("init")

    def begin_transaction(self) -> None:
        self._maybe_fail("begin")

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], _meta: Any, _timeout: float) -> None:
        self._maybe_fail("send_offsets")
        self.sent.append(offsets)

    def commit_transaction(self, _timeout: float) -> None:
        self._maybe_fail("commit")

    def abort_transaction(self, _timeout: float) -> None:
        self._maybe_fail("abort")


class FakePublisher:
    """The parts of ``produce.Publisher`` the committer uses."""

    def __init__(self) -> None:
        self.producer = FakeProducer()
        self.in_transaction = False
        self.fatal: str | None = None
        self.refusal: str | None = None

    def flush(self, _timeout: float) -> None:
        pass

    def take_failures(self) -> str | None:
        refusal, self.refusal = self.refusal, None
        return refusal

    def begin(self) -> None:
        if not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True

    def transaction_ended(self) -> None:
        self.in_transaction = False

    def mark_fatal(self, reason: str) -> None:
        self.fatal = reason


class FakeConsumer:
    def consumer_group_metadata(self) -> str:
        return "group-metadata"


def committer() -> tuple[TransactionCommitter, FakePublisher, OffsetTracker, list[str]]:
    publisher, tracker, events = FakePublisher(), OffsetTracker(), []
    tc = TransactionCommitter(
        publisher,  # type: ignore[arg-type]
        tracker,
        1000,
        lambda: events.append("rewind"),
        on_outcome=events.append,
    )
    tc.consumer = FakeConsumer()  # type: ignore[assignment]
    return tc, publisher, tracker, events


def produced(publisher: FakePublisher, tracker: OffsetTracker, *offsets: int, done: bool = True) -> None:
    publisher.begin()
    for offset in offsets:
        tracker.track("in", 0, offset)
        if done:
            tracker.done("in", 0, offset)


def err(**kind: bool) -> KafkaError:
    return KafkaError(KafkaError._STATE, "boom", **kind)


def test_commit_sends_offset_after_last_produced_and_commits() -> None:
    tc, publisher, tracker, events = committer()
    produced(publisher, tracker, 0, 1, 2)
    tracker.track("in", 0, 3)  # still being scored: not produced, not in this transaction
    tc.commit()
    assert publisher.producer.sent == [[TopicPartition("in", 0, 3)]]
    assert publisher.producer.calls == ["begin", "send_offsets", "commit"]
    assert events == ["committed"] and not publisher.in_transaction


def test_nothing_to_commit_opens_no_transaction() -> None:
    tc, publisher, _tracker, events = committer()
    tc.commit()
    assert publisher.producer.calls == [] and events == []


def test_retriable_error_is_retried() -> None:
    tc, publisher, tracker, events = committer()
    produced(publisher, tracker, 0)
    publisher.producer.fail["commit"] = [err(retriable=True)]
    tc.commit()
    assert publisher.producer.calls.count("commit") == 2 and events == ["committed"]


def test_abortable_error_aborts_and_rewinds() -> None:
    tc, publisher, tracker, events = committer()
    produced(publisher, tracker, 0, 1)
    publisher.producer.fail["send_offsets"] = [err(txn_requires_abort=True)]
    tc.commit()
    assert publisher.producer.calls[-1] == "abort" and events == ["aborted", "rewind"]
    assert tc.aborts == 1 and tc.commits == 0


def test_refused_record_aborts_and_rewinds() -> None:
    tc, publisher, tracker, events = committer()
    produced(publisher, tracker, 0)
    publisher.refusal = "1 records not acknowledged"
    tc.commit()
    assert "send_offsets" not in publisher.producer.calls and events == ["aborted", "rewind"]


def test_fatal_error_ends_the_worker_and_marks_the_producer() -> None:
    tc, publisher, tracker, _events = committer()
    produced(publisher, tracker, 0)
    publisher.producer.fail["commit"] = [err(fatal=True)]
    with pytest.raises(InfrastructureError, match="fatal error in commit_transaction"):
        tc.commit()
    assert publisher.fatal is not None


def test_init_transactions_gives_up_after_retries() -> None:
    tc, publisher, _tracker, _events = committer()
    publisher.producer.fail["init"] = [err(retriable=True) for _ in range(10)]
    with pytest.raises(InfrastructureError, match="init_transactions failed"):
        tc.start()


def test_exactly_once_refused_on_tansu_only() -> None:
    eos = Settings(delivery="exactly-once")
    with pytest.raises(ConfigError, match="needs Apache Kafka"):
        check_delivery_support(eos, "tansu_cluster")
    check_delivery_support(eos, "MkU3OEVBNTcwNTJENDM2Qk")
    check_delivery_support(Settings(), "tansu_cluster")


def test_transactional_id_is_stable_per_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_WORKER_SLOT", "1")
    settings = Settings(delivery="exactly-once", group_id="grp")
    tid = settings.producer_config()["transactional.id"]
    assert tid.startswith("grp.") and tid.endswith(".1") and tid == settings.effective_transactional_id()
    assert Settings(delivery="exactly-once", transactional_id="x").producer_config()["transactional.id"] == "x"
    assert "transactional.id" not in Settings().producer_config()
    with pytest.raises(ValueError, match="transaction_timeout_ms"):
        Settings(delivery="exactly-once", commit_interval_ms=5000, transaction_timeout_ms=5000)


def test_stuck_call_replaces_the_producer_and_rewinds() -> None:
    """librdkafka's send_offsets_to_transaction can block past its timeout (librdkafka #5456): the committer
    abandons that producer, a new one registers the same transactional id (fencing it), and the worker rewinds."""
    import threading

    publisher, tracker, events = FakePublisher(), OffsetTracker(), []
    release = threading.Event()
    publisher.producer.send_offsets_to_transaction = (  # type: ignore[method-assign]
        lambda *_a: release.wait(5)
    )
    fresh = FakePublisher()
    tc = TransactionCommitter(
        publisher,  # type: ignore[arg-type]
        tracker,
        1000,
        lambda: events.append("rewind"),
        timeout_s=0.2,
        on_outcome=events.append,
        renew=lambda: fresh,  # type: ignore[arg-type,return-value]
    )
    tc.consumer = FakeConsumer()  # type: ignore[assignment]
    produced(publisher, tracker, 0, 1)
    tc.commit()
    release.set()
    assert events == ["producer_replaced", "rewind"]
    assert fresh.producer.calls == ["init"] and tc.commits == 0 and tc.aborts == 1
