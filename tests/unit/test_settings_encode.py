from __future__ import annotations

import io
from pathlib import Path

import fastavro
import pytest
from pydantic import ValidationError

from stream_worker.cli import build_settings
from stream_worker.common.errors import ConfigError, InvalidUtf8
from stream_worker.common.settings import Settings, read_properties
from stream_worker.pipeline.avro import OUTPUT_SCHEMA, load_schema
from stream_worker.pipeline.consume import Incoming
from stream_worker.pipeline.deadletter import dead_letter_headers
from stream_worker.pipeline.encode import ScoreEncoder


def test_env_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORER_INPUT_TOPIC", "from-env")
    monkeypatch.setenv("SCORER_MAX_BATCH_SIZE", "64")
    monkeypatch.setenv("SCORER_SASL_PASSWORD", "hunter2")
    s = build_settings(input_topic="from-flag", kafka=["ssl.ca.location=/ca.pem"])
    assert (s.input_topic, s.max_batch_size) == ("from-flag", 64)
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.redacted())
    conf = s.consumer_config()
    assert conf["sasl.password"] == "hunter2" and conf["ssl.ca.location"] == "/ca.pem"
    assert conf["enable.auto.offset.store"] is False and conf["enable.auto.commit"] is False
    assert s.producer_config()["enable.idempotence"] is True
    with pytest.raises(ValidationError):
        s.max_batch_size = 1  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    "kwargs",
    [
        {"output_topic": "text-messages"},
        {"token_budget": 64, "max_sequence_tokens": 128},
        {"kafka": {"enable.auto.commit": "true"}},
        {"max_batch_size": 0},
        {"input_format": "xml"},
    ],
)
def test_invalid_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_properties_file(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("# comment\nsecurity.protocol = SASL_SSL\n\nsasl.mechanism=PLAIN\n")
    assert read_properties(path) == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}
    assert Settings(kafka_properties_file=path).producer_config()["security.protocol"] == "SASL_SSL"
    path.write_text("no equals sign\n")
    with pytest.raises(ConfigError):
        read_properties(path)
    with pytest.raises(ConfigError):
        build_settings(kafka=["novalue"])


def test_score_record_and_headers() -> None:
    incoming = Incoming(
        "in",
        2,
        41,
        b"k",
        b"v",
        headers=[
            ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ("tracestate", b"a=1"),
        ],
    )
    value, headers = ScoreEncoder(precision="bf16")(incoming, "id-1", 0.75, "12", 1_700_000_000_000)
    record = fastavro.schemaless_reader(io.BytesIO(value), load_schema(OUTPUT_SCHEMA), None)
    assert record["label"] == "POSITIVE" and record["score"] == 0.75 and record["source_offset"] == 41
    assert dict(headers)["scorer.model.version"] == b"12" and dict(headers)["tracestate"] == b"a=1"
    assert dict(headers)["scorer.model.precision"] == b"bf16" and record["model_version"] == "12"
    assert "text" not in record


def test_dead_letter_headers_follow_connect_convention() -> None:
    incoming = Incoming("in", 1, 7, b"k", b"v", headers=[("app", b"x"), ("__connect.errors.topic", b"old")])
    headers = dead_letter_headers(incoming, InvalidUtf8("a string field is not valid UTF-8"))
    names = [k for k, _ in headers]
    assert names[0] == "app" and names.count("__connect.errors.topic") == 1
    h = dict(headers)
    assert h["__connect.errors.offset"] == b"7" and h["__connect.errors.stage"] == b"DECODE"
    assert h["scorer.errors.reason"] == b"invalid_utf8"
    assert h["__connect.errors.exception.class.name"] == b"stream_worker.errors.InvalidUtf8"
