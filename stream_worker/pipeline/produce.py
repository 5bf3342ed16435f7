"""Produce stage: publish scores and dead-letter records; acknowledgements drive the commit stage.

The producer is idempotent with ``acks=all``: an acknowledged record is durable and written once.  Every record
carries a delivery callback that marks its input offset done in the ``OffsetTracker`` (commit stage, step 2).
A record the broker refuses for good (after librdkafka's own retries) is an infrastructure failure: the worker
stops with ``DeliveryError`` and the offset stays uncommitted, so the message is read again after a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from stream_worker.common import client_log
from stream_worker.common.errors import DeliveryError, InfrastructureError
from stream_worker.common.metrics import Metrics
from stream_worker.pipeline.commit import OffsetTracker
from stream_worker.pipeline.consume import Headers, Incoming

log = logging.getLogger(__name__)


class Publisher:
    """The producer.  With ``transactional`` (exactly-once) every record goes into the open transaction, begun
    on the first record after a commit; ``transaction.py`` commits or aborts it.  A record refused inside a
    transaction makes librdkafka mark the transaction abortable: ``poll`` leaves that to the commit, which aborts
    and rewinds instead of stopping the worker."""

    def __init__(self, config: dict[str, Any], tracker: OffsetTracker) -> None:
        self.transactional = bool(config.get("transactional.id"))
        self._producer = Producer({**config, "error_cb": self._on_client_error, "logger": client_log.client_logger()})
        self._tracker = tracker
        self._failures: list[str] = []
        self._fatal: str | None = None
        self.in_transaction = False

    @property
    def producer(self) -> Producer:
        return self._producer

    def begin(self) -> None:
        """Open a transaction unless one is open (exactly-once only)."""
        if self.transactional and not self.in_transaction:
            try:
                self._producer.begin_transaction()
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is not None and err.fatal():
                    self._client_call(lambda: self._producer.poll(0))
                    self.mark_fatal(err.str())
                    self._raise_failures()
                raise InfrastructureError(f"cannot begin a transaction: {err.str() if err else exc}") from None
            self.in_transaction = True

    def transaction_ended(self) -> None:
        """The open transaction was committed or aborted: forget refusals that belonged to it."""
        self.in_transaction = False
        self._failures.clear()

    def publish(
        self,
        topic: str,
        incoming: Incoming,
        value: bytes | None,
        headers: Headers,
        on_ack: Callable[[], None] | None = None,
    ) -> None:
        """Send one record keyed like ``incoming``; when acknowledged, ``incoming``'s offset becomes done."""

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._failures.append(f"{topic}: {err.str()}")
                return
            self._tracker.done(incoming.topic, incoming.partition, incoming.offset)
            if on_ack is not None:
                on_ack()

        self.begin()
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=incoming.key,
                    headers=cast("list[tuple[str, str | bytes | None]]", headers),
                    on_delivery=delivered,
                )
                return
            except BufferError:
                self._client_call(lambda: self._producer.poll(0.1))  # local queue full: serve callbacks
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is not None and (err.fatal() or err.code() == KafkaError._FATAL):
                    self._client_call(lambda: self._producer.poll(0))  # the error callback names the cause
                    self.mark_fatal(err.str())
                    self._raise_failures()
                raise DeliveryError(f"cannot produce to {topic}") from exc

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks; raise if a record was refused for good (at-least-once; in a transaction
        the refusal aborts the transaction at its commit instead)."""
        self._client_call(lambda: self._producer.poll(timeout_s))
        if self._fatal is not None or not self.transactional:
            self._raise_failures()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every record is acknowledged (or refused)."""
        remaining = 0

        def flush() -> None:
            nonlocal remaining
            remaining = self._producer.flush(timeout_s)

        self._client_call(flush)
        if self._fatal is not None or not self.transactional:
            self._raise_failures()
        if remaining:
            raise DeliveryError(f"{remaining} records still unacknowledged after {timeout_s:.0f}s")

    @property
    def fatal(self) -> str | None:
        """librdkafka's reason when the producer failed for good (e.g. fenced by a newer one), else None."""
        return self._fatal

    def mark_fatal(self, reason: str) -> None:
        self._fatal = self._fatal or reason

    def _client_call(self, call: Callable[[], object]) -> None:
        """poll/flush raise ``KafkaException`` once the producer failed for good (e.g. fenced): name the cause."""
        try:
            call()
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            self.mark_fatal(err.str() if err is not None else str(exc))
            self._raise_failures()

    def take_failures(self) -> str | None:
        """Transactional mode: the first refusal since the last call (the transaction must be aborted), or None."""
        failures, self._failures = self._failures, []
        return f"{len(failures)} records not acknowledged, first: {failures[0]}" if failures else None

    def _raise_failures(self) -> None:
        if self._fatal is not None:
            hint = (
                " (exactly-once: a newer worker with the same transactional id fenced this one, or the broker "
                "refused the id)"
                if self.transactional
                else ""
            )
            raise InfrastructureError(f"fatal producer error: {self._fatal}{hint}")
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryError(f"{len(failures)} records not acknowledged, first: {failures[0]}")

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err.str()
        client_log.report_error(err, "producer", "kafka producer error")


class ScoreAck:
    """Delivery hook of a score record: count it, observe publish-to-acknowledgement and end-to-end latency."""

    __slots__ = ("_metrics", "_produced_ms", "_sent")

    def __init__(self, metrics: Metrics, produced_ms: int | None) -> None:
        self._metrics = metrics
        self._produced_ms = produced_ms
        self._sent = time.perf_counter()

    def __call__(self) -> None:
        self._metrics.messages_out.inc()
        self._metrics.publish_ack_seconds.observe(time.perf_counter() - self._sent)
        if self._produced_ms is not None:
            self._metrics.end_to_end_seconds.observe(max(0.0, time.time() - self._produced_ms / 1000.0))
