"""Registry-framed Avro in and out, the hold rules and the registry settings, with confluent-kafka's ``mock://``
registry client (no broker, no registry; the real registry is in tests/integration/test_schema_registry.py)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.schema_registry import topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from stream_worker.common.errors import (
    ConfigError,
    IncompatibleSchema,
    RegistryUnavailable,
    SchemaMismatch,
    UnknownSchemaId,
)
from stream_worker.common.metrics import Metrics, schema_registry_status
from stream_worker.common.registry_settings import RegistrySettings
from stream_worker.pipeline import registry
from stream_worker.pipeline.avro import INPUT_SCHEMA, OUTPUT_SCHEMA, AvroEncoder, load_schema, schema_text
from stream_worker.pipeline.consume import Incoming
from stream_worker.pipeline.decode import Decoder
from stream_worker.pipeline.encode import ScoreEncoder
from stream_worker.pipeline.hold import FIRST_RETRY_S, MAX_RETRY_S, Hold
from stream_worker.tools.client import ScoreDecoder

V1 = json.loads(schema_text(INPUT_SCHEMA))
V2 = {**V1, "fields": [*V1["fields"], {"name": "channel", "type": ["null", "string"], "default": None}]}
V3 = {**V2, "fields": [f for f in V2["fields"] if f["name"] != "lang"]}
NO_TEXT = {"type": "record", "name": "TextMessage", "namespace": "io.sentimentscorer.v1",
           "fields": [{"name": "id", "type": "string"}, {"name": "body", "type": "string"}]}  # fmt: skip


@pytest.fixture
def settings() -> RegistrySettings:
    return RegistrySettings(schema_registry_url=f"mock://{uuid.uuid4().hex}")


@pytest.fixture
def client(settings: RegistrySettings) -> Any:
    return registry.open_client(settings)


def frame(client: Any, schema: dict[str, Any], record: dict[str, Any], topic: str = "in") -> bytes:
    serialize = AvroSerializer(client, json.dumps(schema), conf={"subject.name.strategy": topic_subject_name_strategy})
    value: bytes = serialize(record, SerializationContext(topic, MessageField.VALUE))
    return value


def test_every_compatible_version_decodes_to_our_record(client: Any) -> None:
    decode = Decoder("avro", None, registry.RegistryReader(client, schema_text(INPUT_SCHEMA)))
    v1 = decode(frame(client, V1, {"id": "a", "text": "one", "lang": "en"}))
    v2 = decode(frame(client, V2, {"id": "b", "text": "two", "channel": "web"}))
    v3 = decode(frame(client, V3, {"id": "c", "text": "three"}))
    assert (v1.id, v1.text, v1.lang) == ("a", "one", "en")
    assert (v2.id, v2.text, v3.id, v3.text, v3.lang) == ("b", "two", "c", "three", None)  # lang: our default
    assert (v1.schema_id, v2.schema_id, v3.schema_id) == (1, 2, 3)


def test_unknown_id_and_unresolvable_schema_are_bad_input_with_their_reasons(client: Any) -> None:
    decode = Decoder("avro", None, registry.RegistryReader(client, schema_text(INPUT_SCHEMA)))
    body = frame(client, V1, {"id": "a", "text": "t"})[5:]
    with pytest.raises(UnknownSchemaId) as unknown:
        decode(b"\x00\x00\x0f\x42\x3f" + body)
    assert unknown.value.reason == "unknown_schema_id" and "999999" in str(unknown.value)
    with pytest.raises(IncompatibleSchema) as incompatible:
        decode(frame(client, NO_TEXT, {"id": "x", "body": "y"}, topic="other"))
    assert incompatible.value.reason == "incompatible_schema"
    with pytest.raises(SchemaMismatch):  # framed, known id, but the body is cut short
        decode(frame(client, V1, {"id": "a", "text": "a longer text"})[:-4])


def test_unframed_records_keep_todays_behaviour_with_a_registry(client: Any) -> None:
    decode = Decoder("avro", None, registry.RegistryReader(client, schema_text(INPUT_SCHEMA)))
    plain = AvroEncoder(load_schema(INPUT_SCHEMA))
    assert decode(plain({"id": "p", "text": "plain"})).text == "plain"
    empty_id = plain({"id": "", "text": "starts with a zero byte"})  # looks framed: 0x00 + 4 bytes
    assert empty_id[0] == 0 and decode(empty_id).text == "starts with a zero byte"


def test_a_registry_that_does_not_answer_is_unavailable_not_bad_input() -> None:
    down = RegistrySettings(schema_registry_url="http://127.0.0.1:9", schema_registry_timeout_s=2)
    decode = Decoder("avro", None, registry.RegistryReader(registry.open_client(down), schema_text(INPUT_SCHEMA)))
    with pytest.raises(RegistryUnavailable):
        decode(b"\x00\x00\x00\x00\x07" + AvroEncoder(load_schema(INPUT_SCHEMA))({"id": "a", "text": "t"}))
    framer = registry.RegistryFramer(registry.open_client(down), schema_text(OUTPUT_SCHEMA), down)
    with pytest.raises(RegistryUnavailable):
        framer.warm_up(registry._SAMPLE_SCORE, "out")


@pytest.mark.parametrize(
    "strategy, subject",
    [("topic", "out-value"), ("record", "io.sentimentscorer.v1.SentimentScore"),
     ("topic-record", "out-io.sentimentscorer.v1.SentimentScore")],
)  # fmt: skip
def test_scores_are_framed_under_the_subject_strategy(
    client: Any, settings: RegistrySettings, strategy: str, subject: str
) -> None:
    framer = registry.RegistryFramer(
        client, schema_text(OUTPUT_SCHEMA), settings.model_copy(update={"subject_name_strategy": strategy})
    )
    schema_id = framer.warm_up(registry._SAMPLE_SCORE, "out")
    assert client.get_latest_version(subject).schema_id == schema_id
    encode = ScoreEncoder(None, framer=framer, output_topic="out")
    incoming = Incoming("in", 0, 5, b"k", b"v", [], 0)
    value, _headers = encode(incoming, "id-1", 0.9, "3", 1_700_000_000_000)
    assert value[0] == 0 and int.from_bytes(value[1:5], "big") == schema_id
    record = AvroDeserializer(client)(value, SerializationContext("out", MessageField.VALUE))
    assert (record["id"], record["label"], record["source_offset"]) == ("id-1", "POSITIVE", 5)
    assert ScoreDecoder(client=client)(value)["id"] == "id-1"  # scorer tail --schema-registry-url
    assert ScoreDecoder()(value)["id"] == "id-1"  # without a registry: the frame is stripped, our schema reads


def test_without_auto_registration_the_latest_registered_version_is_used(
    client: Any, settings: RegistrySettings
) -> None:
    lookup = settings.model_copy(update={"auto_register_schemas": False})
    framer = registry.RegistryFramer(client, schema_text(OUTPUT_SCHEMA), lookup)
    with pytest.raises(ConfigError, match=r"refused|cannot register"):
        framer.warm_up(registry._SAMPLE_SCORE, "out")  # nothing registered under 'out-value'
    registered = registry.RegistryFramer(client, schema_text(OUTPUT_SCHEMA), settings)
    schema_id = registered.warm_up(registry._SAMPLE_SCORE, "out")
    assert framer.warm_up(registry._SAMPLE_SCORE, "out") == schema_id


def test_registry_settings_are_validated_and_the_password_is_a_secret() -> None:
    s = RegistrySettings(schema_registry_url="https://r:8081", schema_registry_user="u", schema_registry_password="pw")
    assert s.registry_client_config()["basic.auth.user.info"] == "u:pw"
    assert "pw" not in repr(s) and s.registry_client_config()["max.retries"] == 0
    with pytest.raises(ValueError, match="http"):
        RegistrySettings(schema_registry_url="r:8081")
    with pytest.raises(ValueError, match="needs schema_registry_user"):
        RegistrySettings(schema_registry_url="http://r", schema_registry_password="pw")


class FakeConsumer:
    def __init__(self, assigned: list[tuple[str, int]]) -> None:
        self.assigned = assigned
        self.paused: set[tuple[str, int]] = set()

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.assigned]

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in tps}

    def resume(self, tps: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in tps}


def message(partition: int, offset: int) -> Incoming:
    return Incoming("in", partition, offset, None, b"v", [], 0)


def test_hold_pauses_keeps_order_backs_off_and_resumes() -> None:
    now = [100.0]
    metrics = Metrics()
    hold, consumer = Hold(metrics, clock=lambda: now[0]), FakeConsumer([("in", 0), ("in", 1)])
    hold.start(consumer, message(0, 10), RegistryUnavailable("down"))  # type: ignore[arg-type]
    hold.add(consumer, message(1, 4))  # type: ignore[arg-type]
    hold.add(consumer, message(2, 0))  # type: ignore[arg-type]  # a partition assigned during the outage
    assert consumer.paused == {("in", 0), ("in", 1), ("in", 2)}
    assert schema_registry_status(metrics.registry) == {"unreachable": True, "held_messages": 3}
    assert not hold.due()
    delays = []
    for _ in range(8):  # every retry fails at the first message: the delay doubles up to the cap
        start = now[0]
        while not hold.due():
            now[0] += 0.25
        delays.append(now[0] - start)
        taken = hold.take()
        assert [(m.partition, m.offset) for m in taken] == [(0, 10), (1, 4), (2, 0)]
        hold.again(taken, RegistryUnavailable("down"))
    assert delays[0] == FIRST_RETRY_S and delays[1] == 2 * FIRST_RETRY_S and delays[-1] == MAX_RETRY_S
    hold.drop([("in", 1)])  # revoked: its held message is the next owner's
    consumer.assigned = [("in", 0), ("in", 2)]
    assert [(m.partition, m.offset) for m in hold.items] == [(0, 10), (2, 0)]
    hold.take()
    hold.recovered(consumer)  # type: ignore[arg-type]
    assert consumer.paused == {("in", 1)}  # resumed what is still assigned
    assert schema_registry_status(metrics.registry) == {"unreachable": False, "held_messages": 0}


def test_a_worker_started_before_its_registry_waits_for_it() -> None:
    """``RegistryFramer.register`` keeps retrying while the registry does not answer, and returns at stop."""
    import threading
    import time

    down = RegistrySettings(schema_registry_url="http://127.0.0.1:9", schema_registry_timeout_s=1)
    framer = registry.RegistryFramer(registry.open_client(down), schema_text(OUTPUT_SCHEMA), down)
    metrics, stop = Metrics(), threading.Event()

    def failures() -> float:
        return metrics.registry.get_sample_value("scorer_failures_total", {"kind": "RegistryUnavailable"}) or 0.0

    def stop_after_three_attempts() -> None:
        deadline = time.monotonic() + 120
        while failures() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()

    watcher = threading.Thread(target=stop_after_three_attempts)
    watcher.start()
    framer.register("out", stop, metrics)  # returns only because stop was set
    watcher.join()
    assert failures() >= 3
