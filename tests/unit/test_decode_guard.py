from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from stream_worker.common.errors import (
    DecodeError,
    EmptyText,
    InvalidUtf8,
    SchemaMismatch,
    TextTooLong,
    UnsupportedContentType,
)
from stream_worker.pipeline.avro import INPUT_SCHEMA, AvroEncoder, load_schema
from stream_worker.pipeline.decode import Decoder, TextRecord
from stream_worker.pipeline.guard import Guard, has_content

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


def test_long_texts_cost_their_windows() -> None:
    from stream_worker.pipeline.guard import window_cost

    # One window of 128 holds 126 tokens; longer texts are cut into windows of 128 with stride 96, at most 8.
    assert window_cost(10, 128, 96, 8) == 12
    assert window_cost(126, 128, 96, 8) == 128
    assert window_cost(127, 128, 96, 8) == 2 * 128
    assert window_cost(126 + 96 * 3, 128, 96, 8) == 4 * 128
    assert window_cost(100_000, 128, 96, 8) == 8 * 128  # capped by max windows
    assert window_cost(100_000, 128) == 128  # a single-window model truncates


def test_guard_uses_the_model_windowing_for_a_long_review() -> None:
    review = "a long and winding review of a film " * 400  # ~14 kB, ~3,600 tokens by the estimate
    single = Guard(65_536, 128)(TextRecord("1", review))
    windowed = Guard(65_536, 128, 96, 8)(TextRecord("1", review))
    assert single.tokens == 128 and windowed.tokens == 8 * 128


def test_read_window_from_model_metadata(tmp_path: Path) -> None:
    import json

    from stream_worker.common.errors import ModelError
    from stream_worker.engine.score import read_window

    assert read_window(tmp_path) is None
    (tmp_path / "assets.extra").mkdir()
    meta = tmp_path / "assets.extra" / "scorer.json"
    meta.write_text(json.dumps({"max_seq_length": 128, "window_stride": 96, "max_windows": 8, "contract": 1}))
    assert read_window(tmp_path) == (128, 96, 8)
    meta.write_text("{not json")
    with pytest.raises(ModelError):
        read_window(tmp_path)
