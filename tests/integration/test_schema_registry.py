"""``scorer worker --schema-registry-url`` against a real Schema Registry (Apicurio Registry) and real Apache Kafka.

* Producers evolve the input schema under the registry's BACKWARD rule (v1; v2 adds an optional field; v3 drops a
  field that had a default): every record scores, nothing is dead-lettered, and a plain consumer reads every score
  with confluent-kafka's ``AvroDeserializer`` (the scores are framed with the registered SentimentScore id).  An
  incompatible v4 is refused by the registry at registration.
* An id the registry does not know and a writer schema without ``text`` are dead-lettered with their reasons.
* The registry stopped for 10 s mid-stream and started again: the worker holds what it cannot decode, pauses,
  says so in ``/readyz`` and its metrics, and resumes on its own; nothing lost, nothing dead-lettered.
* Exactly-once with registry-framed output; ``scorer produce`` / ``scorer tail`` and ``examples/registry_client.py``
  with the registry, as users run them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from stream_worker.pipeline.registry import unavailable
from tests.brokers import tail
from tests.harness import REPO, SCORER, http_get, metric_value, read_topic, start_worker_cli, user_env, wait_for
from tests.integration.test_exactly_once import read_all
from tests.toy_model import NEGATIVE, POSITIVE

pytestmark = pytest.mark.integration

V1 = json.loads((REPO / "schemas" / "text_message.avsc").read_text())
V2 = {**V1, "fields": [*V1["fields"], {"name": "channel", "type": ["null", "string"], "default": None}]}
V3 = {**V2, "fields": [f for f in V2["fields"] if f["name"] != "lang"]}  # 'lang' had a default
V4_INCOMPATIBLE = {**V3, "fields": [*V3["fields"], {"name": "rating", "type": "int"}]}  # new required field
NO_TEXT = {"type": "record", "name": "TextMessage", "namespace": "io.sentimentscorer.v1",
           "fields": [{"name": "id", "type": "string"}, {"name": "body", "type": "string"}]}  # fmt: skip
WORDS = [*POSITIVE, *NEGATIVE, "plot", "scene"]
SECRET = "zebracorn"  # in every text: the logs must never show it
# Every registry call the tests make is bounded: the HTTP client's default is no timeout at all, and one CI run waited
# 900 s on a request to the just-restarted registry that was never answered.
REQUEST_TIMEOUT_S = 30
ANSWER_WITHIN_S = 300  # how long a test waits for the registry to answer again before it fails, saying so


def serializer(client: SchemaRegistryClient, schema: dict[str, Any]) -> AvroSerializer:
    return AvroSerializer(client, json.dumps(schema), conf={"subject.name.strategy": topic_subject_name_strategy})


def publish(bootstrap: str, topic: str, serialize: AvroSerializer, prefix: str, count: int, **extra: Any) -> list[str]:
    """``count`` registry-framed records ``<prefix>-<i>``; returns their ids."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    ctx = SerializationContext(topic, MessageField.VALUE)
    ids = []
    for i in range(count):
        key = f"{prefix}-{i:04d}"
        text = " ".join([SECRET, *(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 6))])
        producer.produce(topic, key=key.encode(), value=serialize({"id": key, "text": text, **extra}, ctx))
        ids.append(key)
    assert producer.flush(30) == 0
    return ids


def scores(bootstrap: str, topic: str, registry: Any, expect: int) -> list[dict[str, Any]]:
    """The output topic read by a plain consumer with confluent-kafka's ``AvroDeserializer`` (no schema file).
    Decoding needs the registry: while it does not answer (just restarted), retry until ``ANSWER_WITHIN_S``."""
    records = read_topic(bootstrap, topic, lambda r: len(r) >= expect, timeout_s=600)
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while True:
        deserialize = AvroDeserializer(registry_client(registry))
        try:
            return [deserialize(r.value, SerializationContext(topic, MessageField.VALUE)) for r in records]
        except Exception as exc:
            if unavailable(exc) is None:
                raise
            if time.monotonic() > deadline:
                log = tail(registry.log_file, 40)
                message = f"the registry did not answer for {ANSWER_WITHIN_S}s ({exc!r}); its log:\n{log}"
                raise AssertionError(message) from exc
            time.sleep(1)


def registry_client(registry: Any) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry.url, "timeout": REQUEST_TIMEOUT_S})


def worker(kafka: Any, registry: Any, topics: tuple[str, str, str], model: Path, log: Path, *flags: str) -> Any:
    return start_worker_cli(kafka.bootstrap_servers, topics, model, log, "--schema-registry-url", registry.url, *flags)


@dataclass
class Setup:
    bootstrap: str
    topics: tuple[str, str, str]  # input, output, dead letters
    client: SchemaRegistryClient


@pytest.fixture
def setup(kafka_broker: Any, schema_registry: Any, topic_factory: Callable[..., str]) -> Setup:
    topics = (topic_factory(kafka_broker, partitions=2), topic_factory(kafka_broker), topic_factory(kafka_broker))
    return Setup(kafka_broker.bootstrap_servers, topics, registry_client(schema_registry))


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 0


def test_evolving_schemas_score_and_bad_ids_are_dead_lettered(
    setup: Setup, kafka_broker: Any, schema_registry: Any, toy_model_dir: Path, tmp_path: Path
) -> None:
    bootstrap, topics, client = setup.bootstrap, setup.topics, setup.client
    in_topic, out_topic, dlq_topic = topics
    subject = f"{in_topic}-value"
    # v1 through the console script, as a user publishes (it registers v1 under '<topic>-value').
    source = tmp_path / "v1.jsonl"
    source.write_text("".join(json.dumps({"id": f"v1-{i:04d}", "text": f"{SECRET} {WORDS[i % len(WORDS)]}"}) + "\n"
                              for i in range(100)))  # fmt: skip
    produced = subprocess.run(
        [SCORER, "produce", str(source), "--bootstrap-servers", bootstrap, "--topic", in_topic,
         "--schema-registry-url", schema_registry.url],
        env=user_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    client.set_compatibility(subject_name=subject, level="BACKWARD")
    ids = [f"v1-{i:04d}" for i in range(100)]
    ids += publish(bootstrap, in_topic, serializer(client, V2), "v2", 100, channel="web")
    ids += publish(bootstrap, in_topic, serializer(client, V3), "v3", 100)
    versions = client.get_versions(subject)
    assert len(versions) == 3, versions
    with pytest.raises(SchemaRegistryError) as refused:  # BACKWARD: a new required field cannot read old data
        publish(bootstrap, in_topic, serializer(client, V4_INCOMPATIBLE), "v4", 1, rating=5)
    assert refused.value.http_status_code == 409, refused.value
    # Bad input: a registered writer schema that has no 'text' (another team's subject), and an id nobody registered.
    elsewhere = SerializationContext(f"other-{uuid.uuid4().hex[:8]}", MessageField.VALUE)
    foreign = serializer(client, NO_TEXT)({"id": "foreign", "body": SECRET}, elsewhere)
    body = serializer(client, V1)({"id": "ghost", "text": SECRET}, SerializationContext(in_topic, MessageField.VALUE))
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(in_topic, key=b"foreign", value=foreign)
    producer.produce(in_topic, key=b"ghost", value=b"\x00\x00\x0f\x42\x3f" + body[5:])  # schema id 999999
    assert producer.flush(30) == 0

    log = tmp_path / "worker.log"
    proc, port = worker(kafka_broker, schema_registry, topics, toy_model_dir, log)
    try:
        got = scores(bootstrap, out_topic, schema_registry, len(ids))
        dead = read_topic(bootstrap, dlq_topic, lambda r: len(r) >= 2, timeout_s=120)
        status, body_text = http_get(port, "/readyz")
    finally:
        stop(proc)
    assert Counter(s["id"] for s in got) == Counter(ids)  # every version scored, once each
    assert all(s["label"] in ("POSITIVE", "NEGATIVE") and 0.0 <= s["score"] <= 1.0 for s in got)
    out_version = client.get_latest_version(f"{out_topic}-value")
    framed_ids = {r.value[1:5] for r in read_topic(bootstrap, out_topic, lambda r: len(r) >= len(ids))}
    assert framed_ids == {out_version.schema_id.to_bytes(4, "big")}
    reasons = {r.key: r.headers["scorer.errors.reason"] for r in dead}
    assert reasons == {b"ghost": b"unknown_schema_id", b"foreign": b"incompatible_schema"}, reasons
    assert {r.key: r.value for r in dead}[b"foreign"] == foreign  # the original bytes
    assert status == 200 and json.loads(body_text)["schema_registry"] == {"unreachable": False, "held_messages": 0}
    assert SECRET not in log.read_text(), "message text in the log"


def test_registry_outage_holds_messages_and_resumes(
    setup: Setup, kafka_broker: Any, schema_registry: Any, toy_model_dir: Path, tmp_path: Path
) -> None:
    bootstrap, topics, client = setup.bootstrap, setup.topics, setup.client
    in_topic, out_topic, dlq_topic = topics
    before = publish(bootstrap, in_topic, serializer(client, V1), "before", 50)
    log = tmp_path / "worker.log"
    proc, port = worker(kafka_broker, schema_registry, topics, toy_model_dir, log)
    try:
        scores(bootstrap, out_topic, schema_registry, len(before))  # v1's id is now cached by the worker
        later = serializer(client, V2)  # v2 registered now (the serializer caches its id); the worker never saw it
        later({"id": "warm", "text": "x"}, SerializationContext(in_topic, MessageField.VALUE))
        schema_registry.stop()
        during = publish(bootstrap, in_topic, later, "during", 100, channel="app")
        wait_for(lambda: '"unreachable": true' in http_get(port, "/readyz")[1], 300, "/readyz to report the outage")
        metrics = http_get(port, "/metrics")[1]
        assert metric_value(metrics, "scorer_schema_registry_unreachable") == 1
        assert metric_value(metrics, "scorer_held_messages") >= 1
        time.sleep(10)  # the outage itself: ten seconds with the registry down mid-stream
        schema_registry.start()
        after = publish(bootstrap, in_topic, later, "after", 50)
        expected = before + during + after
        got = scores(bootstrap, out_topic, schema_registry, len(expected))
        wait_for(lambda: '"unreachable": false' in http_get(port, "/readyz")[1], 120, "/readyz to clear")
        failures = metric_value(http_get(port, "/metrics")[1], "scorer_failures_total", 'kind="RegistryUnavailable"')
    finally:
        stop(proc)
    assert {s["id"] for s in got} == set(expected) and len(got) >= len(expected)
    assert not read_topic(bootstrap, dlq_topic, lambda r: False, timeout_s=5), "nothing may be dead-lettered"
    assert SECRET not in log.read_text(), "message text in the log"
    lines = log.read_text().splitlines()
    assert all(line.startswith("{") for line in lines if line.strip()), "JSON lines only"
    outage_lines = [line for line in lines if "schema registry" in line and "unreachable" in line]
    assert 1 <= len(outage_lines) <= failures <= 20, (len(outage_lines), failures)  # one line per backed-off retry
    assert any("reachable again" in line for line in lines)


def test_exactly_once_with_registry_framed_scores_and_the_example_client(
    setup: Setup, kafka_broker: Any, schema_registry: Any, toy_model_dir: Path, tmp_path: Path
) -> None:
    bootstrap, topics, client = setup.bootstrap, setup.topics, setup.client
    in_topic, out_topic, _ = topics
    log = tmp_path / "worker.log"
    proc, _port = worker(kafka_broker, schema_registry, topics, toy_model_dir, log, "--delivery", "exactly-once",
                         "--subject-name-strategy", "topic-record")  # fmt: skip
    try:
        ids = publish(bootstrap, in_topic, serializer(client, V1), "eos", 200)
        committed = read_all(bootstrap, out_topic, "read_committed", len(ids), timeout_s=600)
        example = subprocess.run(
            [sys.executable, str(REPO / "examples" / "registry_client.py"), "--bootstrap", bootstrap,
             "--schema-registry-url", schema_registry.url, "--input-topic", in_topic, "--output-topic", out_topic,
             "--timeout", "300", "a warm and wonderful film", "a dull, lifeless plot"],
            capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        tail = subprocess.run(
            [SCORER, "tail", "--bootstrap-servers", bootstrap, "--topic", out_topic, "--json",
             "--max-messages", str(len(ids) + 2), "--schema-registry-url", schema_registry.url],
            env=user_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        stop(proc)
    deserialize = AvroDeserializer(client)
    got = [deserialize(r.value, SerializationContext(out_topic, MessageField.VALUE)) for r in committed]
    assert Counter(s["id"] for s in got) == Counter(ids)  # exactly once, every record framed
    subject = f"{out_topic}-io.sentimentscorer.v1.SentimentScore"
    assert subject in client.get_subjects()
    assert example.returncode == 0, example.stderr[-2000:]
    assert len(example.stdout.splitlines()) == 2 and "POSITIVE" in example.stdout, example.stdout
    assert tail.returncode == 0, tail.stderr[-2000:]
    tailed = [json.loads(line) for line in tail.stdout.splitlines()]
    assert {t["id"] for t in tailed} >= set(ids) and len(tailed) == len(ids) + 2
    assert uuid.UUID(tailed[-1]["id"])  # the example's records are there too, read back through the registry
