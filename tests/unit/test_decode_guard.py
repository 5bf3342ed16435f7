from __future__ import annotations

import json
import struct

import pytest

from stream_worker.avro import INPUT_SCHEMA, AvroEncoder, load_schema
from stream_worker.decode import Decoder
from stream_worker.errors import (
    DecodeError,
    EmptyText,
    InvalidUtf8,
    SchemaMismatch,
    TextTooLong,
    UnsupportedContentType,
)
from stream_worker.guard import Guard, has_content

encode = AvroEncoder(load_schema(INPUT_SCHEMA))
avro_decode = Decoder("avro")
json_decode = Decoder("json")


def test_plain_avro() -> None:
    record = avro_decode(encode({"id": "1", "text": "hello", "produced_at": 1_700_000_000_000}))
    assert (record.id, record.text, record.produced_at_ms, record.schema_id) == (
        "1",
        "hello",
        1_700_000_000_000,
        None,
    )


def test_confluent_framing_is_recognised() -> None:
    record = avro_decode(b"\x00" + struct.pack(">I", 99) + encode({"id": "1", "text": "hi"}))
    assert (record.id, record.schema_id) == ("1", 99)


def test_plain_record_with_empty_id_is_not_mistaken_for_framing() -> None:
    value = encode({"id": "", "text": "a fairly long text so that framing is tried first"})
    assert value[0] == 0
    assert avro_decode(value).text.startswith("a fairly long")


@pytest.mark.parametrize(
    "value, error",
    [
        (b"", SchemaMismatch),
        (b"\x8f\x13 not avro", SchemaMismatch),
        (encode({"id": "1", "text": "x"}) + b"trailing", SchemaMismatch),
        (encode({"id": "1", "text": "AB"}).replace(b"AB", b"\xff\xfe"), InvalidUtf8),
    ],
)
def test_bad_avro(value: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        avro_decode(value)


def test_json_and_content_type() -> None:
    assert json_decode(json.dumps({"id": "j", "text": "t"}).encode()).text == "t"
    assert avro_decode(b'{"id": "j", "text": "t"}', "application/json; charset=utf-8").id == "j"
    assert json_decode(encode({"id": "a", "text": "b"}), "avro/binary").id == "a"
    with pytest.raises(UnsupportedContentType):
        avro_decode(b"{}", "application/x-protobuf")
    with pytest.raises(SchemaMismatch):
        json_decode(b"[1, 2]")
    with pytest.raises(SchemaMismatch):
        json_decode(b'{"id": 5, "text": "x"}')
    with pytest.raises(InvalidUtf8):
        json_decode(b'{"id": "\xff"}')
    with pytest.raises(DecodeError):
        json_decode(b"{not json")
    assert json_decode(b'{"id": "no-text"}').text == ""


guard = Guard(max_text_bytes=100, max_sequence_tokens=16)


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01\t\n", "\u200b\ufeff", "\ufffd\ufffd"])
def test_guard_rejects_texts_without_content(text: str) -> None:
    with pytest.raises(EmptyText):
        guard(json_decode(json.dumps({"id": "1", "text": text}).encode()))


def test_guard_limits() -> None:
    with pytest.raises(TextTooLong):
        guard(json_decode(json.dumps({"id": "1", "text": "é" * 51}).encode()))  # 102 bytes, 51 characters
    with pytest.raises(InvalidUtf8):
        guard(json_decode(b'{"id": "1", "text": "bad \\ud800 surrogate"}'))
    assert guard(json_decode(b'{"id": "1", "text": "ok"}')).tokens == 3
    assert guard(json_decode(json.dumps({"id": "1", "text": "x" * 100}).encode())).tokens == 16


def test_has_content() -> None:
    assert has_content("[NAME]") and has_content("😀") and has_content("日本")
    assert not has_content("\t \r\n\x7f")
