"""Every kind of bad input ends as a dead-letter record (or a documented skip); scoring goes on; nothing is lost.

Runs against real Apache Kafka and the embedded tansu broker.
"""

from __future__ import annotations

import io
import json
import logging
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition

from stream_worker.pipeline.avro import INPUT_SCHEMA, OUTPUT_SCHEMA, AvroDecoder, load_schema
from tests.harness import WorkerThread, produce, read_topic, worker_settings
from tests.toy_model import POISON

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def avro(record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, load_schema(INPUT_SCHEMA), record)
    return buf.getvalue()


def output_record_bytes() -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf,
        load_schema(OUTPUT_SCHEMA),
        {
            "id": "x",
            "label": "POSITIVE",
            "score": 0.5,
            "model_version": "1",
            "scored_at": 0,
            "source_topic": "t",
            "source_partition": 0,
            "source_offset": 0,
        },
    )
    return buf.getvalue()


SECRET = "sensitive-user-words"  # appears in every text below; must never reach a log line

# (key, value, headers, expected outcome) — outcome is a dead-letter reason, "scored" or "skipped".
CASES: list[tuple[str, bytes | None, list[tuple[str, bytes]] | None, str]] = [
    ("good-first", avro({"id": "good-first", "text": f"a great film {SECRET}"}), None, "scored"),
    ("undecodable", b"\x8f\x13 this is not avro at all " + SECRET.encode(), None, "schema_mismatch"),
    ("wrong-schema", output_record_bytes(), None, "schema_mismatch"),
    ("empty-text", avro({"id": "empty-text", "text": ""}), None, "empty_text"),
    (
        "missing-text-json",
        json.dumps({"id": "missing-text-json"}).encode(),
        [("content-type", b"application/json")],
        "empty_text",
    ),
    (
        "megabyte",
        avro({"id": "megabyte", "text": (SECRET + " bad ") * (1_000_000 // 26)}),
        None,
        "text_too_long",
    ),
    (
        "bad-utf8",
        avro({"id": "bad-utf8", "text": f"good {SECRET} XX"}).replace(b"XX", b"\xff\xfe"),
        None,
        "invalid_utf8",
    ),
    (
        "control-only",
        avro({"id": "control-only", "text": "\x00\x01\x07\t\n\u200b\ufffd"}),
        None,
        "empty_text",
    ),
    ("tombstone", None, None, "skipped"),
    (
        "junk-headers",
        avro({"id": "junk-headers", "text": f"awful {SECRET}"}),
        [("x-unknown", b"\xff\x00\xfe"), ("traceparent", b"garbage"), ("x-none", b"")],
        "scored",
    ),
    (
        "protobuf",
        avro({"id": "protobuf", "text": f"good {SECRET}"}),
        [("content-type", b"application/x-protobuf")],
        "unsupported_content_type",
    ),
    ("poisoned", avro({"id": "poisoned", "text": f"great {POISON} {SECRET}"}), None, "scoring_failed"),
    (
        "framed",
        b"\x00" + struct.pack(">I", 42) + avro({"id": "framed", "text": f"love it {SECRET}"}),
        None,
        "scored",
    ),
    (
        "json-ok",
        json.dumps({"id": "json-ok", "text": f"boring {SECRET}"}).encode(),
        [("content-type", b"application/json")],
        "scored",
    ),
    (
        "good-last",
        avro({"id": "good-last", "text": f"terrible {SECRET}"}),
        [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
        "scored",
    ),
]


@pytest.mark.broker_agnostic
def test_bad_input_is_dead_lettered_and_scoring_goes_on(
    broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = worker_settings(broker, topic_factory, toy_model_dir, max_wait_ms=10, commit_interval_ms=100)
    in_topic, out_topic, dlq_topic = settings.input_topic, settings.output_topic, settings.dead_letter_topic
    produce(broker.bootstrap_servers, in_topic, [(k.encode(), v, h) for k, v, h, _ in CASES])
    expected_dlq = {k: outcome for k, _, _, outcome in CASES if outcome not in ("scored", "skipped")}
    expected_scored = {k for k, _, _, outcome in CASES if outcome == "scored"}

    caplog.set_level(logging.DEBUG)
    with WorkerThread(settings) as worker:
        dlq = read_topic(broker.bootstrap_servers, dlq_topic, lambda r: len(r) >= len(expected_dlq), 90)
        out = read_topic(broker.bootstrap_servers, out_topic, lambda r: len(r) >= len(expected_scored), 90)
        # Let the periodic commit run after the last acknowledgement.
        read_topic(broker.bootstrap_servers, out_topic, lambda r: False, 1.0)
        metrics = worker.worker.metrics

    # Dead-letter records: original key and bytes unchanged, reason and coordinates in headers.
    values = {k: v for k, v, _, _ in CASES}
    assert {r.key.decode(): r.headers["scorer.errors.reason"].decode() for r in dlq if r.key} == expected_dlq
    for record in dlq:
        key = record.key.decode() if record.key else ""
        assert record.value == values[key], f"dead-letter value of {key} changed"
        assert record.headers["__connect.errors.topic"] == in_topic.encode()
        assert record.headers["__connect.errors.partition"] == b"0"
        assert int(record.headers["__connect.errors.offset"] or b"-1") == [c[0] for c in CASES].index(key)
        assert record.headers["__connect.errors.exception.class.name"].startswith(b"stream_worker.errors.")

    # Scores: the good messages before and after the bad ones, keys kept, valid schema, no text echoed.
    decode = AvroDecoder(load_schema(OUTPUT_SCHEMA))
    scored = {r.key.decode(): (decode(r.value), r.headers) for r in out if r.key and r.value}
    assert set(scored) == expected_scored
    for key, (record, headers) in scored.items():
        assert record["id"] == key and record["model_version"] == "7" and 0.0 <= record["score"] <= 1.0
        assert headers["scorer.model.version"] == b"7"
        assert SECRET.encode() not in (out[0].value or b"")
    assert scored["good-first"][0]["label"] == "POSITIVE" and scored["good-last"][0]["label"] == "NEGATIVE"
    assert scored["framed"][0]["label"] == "POSITIVE"
    assert scored["good-last"][1]["traceparent"].startswith(b"00-0af7651916cd43dd")
    assert "traceparent" not in scored["junk-headers"][1]  # malformed trace context is not passed on

    # Counters match what was sent; the tombstone is a documented skip.
    assert metrics.messages_in._value.get() == len(CASES)
    assert metrics.messages_out._value.get() == len(expected_scored)
    assert metrics.skipped.labels(reason="tombstone")._value.get() == 1
    for reason in set(expected_dlq.values()):
        assert metrics.dead_lettered.labels(reason=reason)._value.get() == list(expected_dlq.values()).count(reason)

    # Nothing lost: the group committed past the last message.
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": settings.group_id})
    try:
        committed = consumer.committed([TopicPartition(in_topic, 0)], timeout=10)
    finally:
        consumer.close()
    assert committed[0].offset == len(CASES)

    # Message text never reaches the logs.
    assert caplog.records, "expected worker logs"
    for rec in caplog.records:
        line = rec.getMessage() + " " + json.dumps({k: str(v) for k, v in rec.__dict__.items()})
        assert SECRET not in line
