"""Produce stage: publish scores and dead-letter records; acknowledgements drive the commit stage.

The producer is idempotent with ``acks=all``: an acknowledged record is durable and written once.  Every record
carries a delivery callback that marks its input offset done in the ``OffsetTracker`` (commit stage, step 2).
A record the broker refuses for good (after librdkafka's own retries) is an infrastructure failure: the worker
stops with ``DeliveryError`` and the offset stays uncommitted, so the message is read again after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from . import client_log
from .commit import OffsetTracker
from .consume import Headers, Incoming
from .errors import DeliveryError, InfrastructureError

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, config: dict[str, Any], tracker: OffsetTracker) -> None:
        self._producer = Producer({**config, "error_cb": self._on_client_error, "logger": client_log.client_logger()})
        self._tracker = tracker
        self._failures: list[str] = []
        self._fatal: str | None = None

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
                self._producer.poll(0.1)  # local queue full: serve callbacks until there is room
            except KafkaException as exc:
                raise DeliveryError(f"cannot produce to {topic}") from exc

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks; raise if a record was refused for good."""
        self._producer.poll(timeout_s)
        self._raise_failures()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every record is acknowledged (or refused)."""
        remaining = self._producer.flush(timeout_s)
        self._raise_failures()
        if remaining:
            raise DeliveryError(f"{remaining} records still unacknowledged after {timeout_s:.0f}s")

    def _raise_failures(self) -> None:
        if self._fatal is not None:
            raise InfrastructureError(f"fatal producer error: {self._fatal}")
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryError(f"{len(failures)} records not acknowledged, first: {failures[0]}")

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err.str()
        client_log.report_error(err, "producer", "kafka producer error")
