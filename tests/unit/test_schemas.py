"""Every schema round-trips, and old writers stay readable (backward-compatible evolution)."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import fastavro

from stream_worker.pipeline.avro import INPUT_SCHEMA, OUTPUT_SCHEMA, AvroDecoder, AvroEncoder, load_schema


def test_input_schema_round_trip() -> None:
    record = {
        "id": "m-1",
        "text": "Ünïcödé [NAME] wrote <EMAIL> 😀",
        "lang": "en",
        "produced_at": datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc),
        "attributes": {"source": "app"},
    }
    schema = load_schema(INPUT_SCHEMA)
    assert AvroDecoder(schema)(AvroEncoder(schema)(record)) == record


def test_output_schema_round_trip() -> None:
    record = {
        "id": "m-1",
        "label": "NEGATIVE",
        "score": 0.125,
        "model_version": "1732451234",
        "scored_at": datetime(2026, 11, 24, 12, 0, 1, tzinfo=timezone.utc),
        "source_topic": "in",
        "source_partition": 3,
        "source_offset": 2**40,
    }
    schema = load_schema(OUTPUT_SCHEMA)
    assert AvroDecoder(schema)(AvroEncoder(schema)(record)) == record


def test_minimal_v0_writer_is_readable_with_defaults() -> None:
    v0 = fastavro.parse_schema(
        {
            "type": "record",
            "name": "TextMessage",
            "namespace": "io.sentimentscorer.v1",
            "fields": [{"name": "id", "type": "string"}, {"name": "text", "type": "string"}],
        }
    )
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, v0, {"id": "a", "text": "b"})
    buf.seek(0)
    record = fastavro.schemaless_reader(buf, v0, load_schema(INPUT_SCHEMA))
    assert record == {"id": "a", "text": "b", "lang": None, "produced_at": None, "attributes": {}}


def test_schemas_parse_once() -> None:
    assert load_schema(INPUT_SCHEMA) is load_schema(INPUT_SCHEMA)
