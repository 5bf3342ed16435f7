"""Smoke test: both brokers do what the worker relies on (idempotent produce, groups, manual commit)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.integration

N_MESSAGES = 100
PARTITIONS = 3


def _consumer_config(bootstrap: str, group: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    }


def test_produce_consume_commit_resume(broker: Any, topic_factory: Callable[..., str]) -> None:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    topic = topic_factory(broker, partitions=PARTITIONS)

    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "acks": "all", "enable.idempotence": True})
    delivered: list[tuple[int, int]] = []
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append((msg.partition(), msg.offset()))

    sent = {f"key-{i}": f"value-{i}" for i in range(N_MESSAGES)}
    for key, value in sent.items():
        producer.produce(topic, key=key.encode(), value=value.encode(), on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert errors == []
    assert len(delivered) == N_MESSAGES
    assert len({p for p, _ in delivered}) > 1, "keys should spread over partitions"

    group = f"smoke-{uuid.uuid4().hex}"
    consumer = Consumer(_consumer_config(broker.bootstrap_servers, group))
    consumer.subscribe([topic])
    received: dict[str, str] = {}
    deadline = time.monotonic() + 60
    try:
        while len(received) < N_MESSAGES and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                continue
            raw_key, raw_value = msg.key(), msg.value()
            assert isinstance(raw_key, bytes) and isinstance(raw_value, bytes)
            received[raw_key.decode()] = raw_value.decode()
            consumer.store_offsets(message=msg)
        assert received == sent, f"got {len(received)}/{N_MESSAGES} messages"
        committed = consumer.commit(asynchronous=False)
        assert committed is not None
        assert sum(tp.offset for tp in committed if tp.topic == topic) == N_MESSAGES
    finally:
        consumer.close()

    # A second member of the same group resumes from the committed offsets: nothing is left.
    second = Consumer(_consumer_config(broker.bootstrap_servers, group))
    assigned: list[TopicPartition] = []
    second.subscribe([topic], on_assign=lambda _c, parts: assigned.extend(parts))
    leftovers = []
    try:
        deadline = time.monotonic() + 60
        while not assigned and time.monotonic() < deadline:
            msg = second.poll(0.5)
            if msg is not None and not msg.error():
                leftovers.append(msg)
        assert len(assigned) == PARTITIONS, "second consumer never got its assignment"
        quiet_until = time.monotonic() + 3
        while time.monotonic() < quiet_until:
            msg = second.poll(0.5)
            if msg is not None and not msg.error():
                leftovers.append(msg)
        assert leftovers == []
        positions = second.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        assert sum(tp.offset for tp in positions) == N_MESSAGES
    finally:
        second.close()
