"""Consume stage: the Kafka consumer, its rebalance callbacks and polling.

``Incoming`` is the worker's view of one Kafka message; it is what flows through the later stages and what the
dead-letter stage copies byte for byte.  Building it from a ``confluent_kafka.Message`` is the only place the
worker touches the consumer's message objects, so every other stage is testable without a broker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from stream_worker.common import client_log
from stream_worker.common.errors import InfrastructureError
from stream_worker.common.settings import Settings

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes | None]]
PartitionCallback = Callable[[list[TopicPartition]], None]


@dataclass(frozen=True, slots=True)
class Incoming:
    """One consumed message. ``value`` is ``None`` for a tombstone. Never log ``value``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    timestamp_ms: int | None = None

    def header(self, name: str) -> bytes | None:
        """Last value of header ``name`` (case-insensitive), or None."""
        found = None
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                found = value
        return found

    @classmethod
    def from_message(cls, msg: Message) -> Incoming:
        ts_type, ts = msg.timestamp()
        raw_headers = msg.headers() or []
        pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None  # set on consumed messages
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key=msg.key(),
            value=msg.value(),
            headers=[(str(k), v.encode() if isinstance(v, str) else v) for k, v in pairs],
            timestamp_ms=ts if ts_type != 0 and ts >= 0 else None,
        )


def open_consumer(
    settings: Settings,
    on_assign: PartitionCallback,
    on_revoke: PartitionCallback,
    on_lost: PartitionCallback,
    on_lag: Callable[[str, int, int], None],
) -> Consumer:
    """Create the consumer and subscribe; ``on_lag(topic, partition, lag)`` is fed from librdkafka statistics."""

    def stats(raw: str) -> None:
        try:
            data = json.loads(raw)
            client_log.HEALTH.statistics(data)
            for topic, tdata in data.get("topics", {}).items():
                for part, pdata in tdata.get("partitions", {}).items():
                    lag = pdata.get("consumer_lag", -1)
                    if int(part) >= 0 and lag >= 0:
                        on_lag(topic, int(part), int(lag))
        except (ValueError, AttributeError, TypeError):
            log.debug("unreadable librdkafka statistics ignored")

    conf: dict[str, Any] = settings.consumer_config()
    conf["stats_cb"] = stats
    conf["error_cb"] = _on_client_error
    conf["logger"] = client_log.client_logger()  # librdkafka's lines: JSON, rate-limited, served on consume()
    consumer = Consumer(conf)

    consumer.subscribe(
        [settings.input_topic],
        on_assign=lambda _c, parts: on_assign(parts),
        on_revoke=lambda _c, parts: on_revoke(parts),
        on_lost=lambda _c, parts: on_lost(parts),
    )
    return consumer


def fetch(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """Up to ``max_messages`` raw messages, returned as soon as there is at least one (waiting at most
    ``timeout_s`` when there is none).

    librdkafka's ``consume(num_messages=N, timeout=T)`` returns only when N messages arrived or T passed, so at low
    traffic every message would wait the whole timeout.  Here: take what the client already fetched (no wait);
    if that is nothing, block for the first message only, then take what came with it.
    """
    wanted = max(1, max_messages)
    messages: list[Message] = consumer.consume(num_messages=wanted, timeout=0)
    if not messages and timeout_s > 0:
        messages = consumer.consume(num_messages=1, timeout=timeout_s)
        if messages and wanted > 1:
            messages += consumer.consume(num_messages=wanted - 1, timeout=0)
    return messages


def poll(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Incoming]:
    """``fetch``, as ``Incoming`` records; raises ``InfrastructureError`` on fatal errors only."""
    try:
        messages = fetch(consumer, max_messages, timeout_s)
    except KafkaException as exc:
        raise InfrastructureError("consume failed") from exc
    batch: list[Incoming] = []
    for msg in messages:
        err = msg.error()
        if err is None:
            batch.append(Incoming.from_message(msg))
        elif err.code() == KafkaError._PARTITION_EOF:
            continue
        elif err.fatal():
            raise InfrastructureError(f"fatal consumer error: {err.str()}")
        else:
            client_log.report_error(err, "consumer", "consumer error")
    return batch


def _on_client_error(err: KafkaError) -> None:
    client_log.report_error(err, "consumer")
