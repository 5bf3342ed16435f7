"""TLS and SASL/SCRAM-SHA-512 on Apache Kafka, through ``scorer worker`` as a user runs it (issue 10, item 4).

One secure broker for the module (tests/secure_kafka.py: certificates made with openssl for this run, SCRAM users
created at format time).  The worker is configured through settings only: flags (TLS), ``SCORER_*`` environment
(SASL), a ``--kafka-properties-file`` (SASL).  Each scores messages end to end, produced and read back by plain
confluent-kafka clients on the same secure listener.  A wrong password and an untrusted certificate end the worker
with one clear line and exit code 1 within a bounded time; the password never appears in any output, and no
Python traceback does either.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, Producer

from stream_worker.pipeline.avro import OUTPUT_SCHEMA, load_schema
from tests.brokers import new_topic
from tests.harness import SCORER, _free_port, http_status, user_env, wait_for
from tests.secure_kafka import SCRAM_MECHANISM, SecureKafkaBroker

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "alice-Pw-7f3c9e1d"
WRONG_PASSWORD = "wrong-Pw-91ab44c2"
SECRETS = (PASSWORD, WRONG_PASSWORD)
MESSAGES = 20


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[SecureKafkaBroker]:
    with SecureKafkaBroker({USER: PASSWORD}) as broker:
        yield broker


def _topics(broker: SecureKafkaBroker) -> tuple[str, str, str]:
    return tuple(new_topic(broker.bootstrap_servers, prefix=p) for p in ("sec-in", "sec-out", "sec-dlq"))  # type: ignore[return-value]


def _worker_args(bootstrap: str, topics: tuple[str, str, str], model_dir: Path, port: int) -> list[str]:
    in_topic, out_topic, dlq_topic = topics
    return [
        SCORER,
        "worker",
        "--processes",
        "1",
        "--bootstrap-servers",
        bootstrap,
        "--input-topic",
        in_topic,
        "--output-topic",
        out_topic,
        "--dead-letter-topic",
        dlq_topic,
        "--group-id",
        f"g-{in_topic}",
        "--model-dir",
        str(model_dir),
        "--metrics-port",
        str(port),
        "--session-timeout-ms",
        "6000",
        "--input-format",
        "json",
        "--broker-timeout-s",
        "60",
    ]


def _produce(config: dict[str, Any], topic: str, ids: list[str]) -> None:
    producer = Producer(config)
    for i in ids:
        producer.produce(topic, key=i.encode(), value=json.dumps({"id": i, "text": f"a great movie {i}"}).encode())
    assert producer.flush(30) == 0


def _scored_ids(config: dict[str, Any], topic: str, want: int, timeout_s: float = 90.0) -> set[str]:
    consumer = Consumer(
        {
            **config,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    schema = load_schema(OUTPUT_SCHEMA)
    ids: set[str] = set()
    try:
        wait_for(lambda: _read_into(consumer, schema, ids) >= want, timeout_s, f"{want} scores on {topic}")
    finally:
        consumer.close()
    return ids


def _read_into(consumer: Consumer, schema: Any, ids: set[str]) -> int:
    for msg in consumer.consume(num_messages=500, timeout=0.5):
        if msg.error() is None:
            ids.add(fastavro.schemaless_reader(io.BytesIO(msg.value() or b""), schema, None)["id"])
    return len(ids)


_RAW_LIBRDKAFKA = re.compile(r"^%\d+\|[\d.]+\|")  # librdkafka's own stderr format: %3|1700000000.123|FAIL|...


def _assert_clean(output: str) -> None:
    """No secret and no traceback anywhere; librdkafka's lines only inside our JSON log lines (TensorFlow's native
    start-up lines are not ours to format)."""
    for secret in SECRETS:
        assert secret not in output, "a password reached the output"
    assert "Traceback" not in output
    for line in output.splitlines():
        assert not _RAW_LIBRDKAFKA.match(line), line
        if line.startswith("{"):
            json.loads(line)


def _score_end_to_end(
    broker: SecureKafkaBroker,
    client: dict[str, Any],
    bootstrap: str,
    model_dir: Path,
    tmp_path: Path,
    flags: list[str],
    env: dict[str, str],
) -> None:
    topics = _topics(broker)
    port = _free_port()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_worker_args(bootstrap, topics, model_dir, port), *flags],
            env=user_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: http_status(port, "/readyz") == 200 or proc.poll() is not None, 180, "worker ready")
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        ids = [f"sec-{n:03d}" for n in range(MESSAGES)]
        _produce(client, topics[0], ids)
        assert _scored_ids(client, topics[1], MESSAGES) == set(ids)
    finally:
        proc.terminate()
        code = proc.wait(60)
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    _assert_clean(output)


def test_tls_through_flags(secure_kafka: SecureKafkaBroker, toy_model_dir: Path, tmp_path: Path) -> None:
    assert secure_kafka.certs is not None
    flags = ["--security-protocol", "SSL", "--kafka", f"ssl.ca.location={secure_kafka.certs.ca}"]
    client = secure_kafka.ssl_client_config()
    _score_end_to_end(secure_kafka, client, secure_kafka.ssl_bootstrap, toy_model_dir, tmp_path, flags, {})


def test_sasl_scram_through_the_environment(
    secure_kafka: SecureKafkaBroker, toy_model_dir: Path, tmp_path: Path
) -> None:
    env = {
        "SCORER_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SCORER_SASL_MECHANISM": SCRAM_MECHANISM,
        "SCORER_SASL_USERNAME": USER,
        "SCORER_SASL_PASSWORD": PASSWORD,
    }
    client = secure_kafka.sasl_client_config(USER, PASSWORD)
    _score_end_to_end(secure_kafka, client, secure_kafka.sasl_bootstrap, toy_model_dir, tmp_path, [], env)


def _properties_file(path: Path, password: str) -> Path:
    path.write_text(
        "# librdkafka options, Java properties syntax\n"
        "security.protocol=SASL_PLAINTEXT\n"
        f"sasl.mechanism={SCRAM_MECHANISM}\n"
        f"sasl.username={USER}\n"
        f"sasl.password={password}\n"
    )
    return path


def test_sasl_scram_through_a_properties_file(
    secure_kafka: SecureKafkaBroker, toy_model_dir: Path, tmp_path: Path
) -> None:
    props = _properties_file(tmp_path / "client.properties", PASSWORD)
    flags = ["--kafka-properties-file", str(props)]
    client = secure_kafka.sasl_client_config(USER, PASSWORD)
    _score_end_to_end(secure_kafka, client, secure_kafka.sasl_bootstrap, toy_model_dir, tmp_path, flags, {})


def _run_failing(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A bound, not a timing: the start-up check gives up after --broker-timeout-s (60 s) at the latest; a refused
    # login or handshake must end it long before, and must never loop.
    return subprocess.run(args, env=user_env(**env), capture_output=True, text=True, timeout=150, check=False)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_wrong_password_is_a_clear_error_without_the_secret(
    secure_kafka: SecureKafkaBroker, toy_model_dir: Path, tmp_path: Path, processes: str
) -> None:
    topics = _topics(secure_kafka)
    args = _worker_args(secure_kafka.sasl_bootstrap, topics, toy_model_dir, _free_port())
    args[args.index("--processes") + 1] = processes
    env = {
        "SCORER_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SCORER_SASL_MECHANISM": SCRAM_MECHANISM,
        "SCORER_SASL_USERNAME": USER,
        "SCORER_SASL_PASSWORD": WRONG_PASSWORD,
    }
    done = _run_failing(args, env)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("scorer: error:")]
    assert len(errors) == 1, output[-3000:]
    assert "authentication failed" in errors[0] and secure_kafka.sasl_bootstrap in errors[0]
    assert "timed out" not in errors[0] and "within 60 s" not in errors[0]  # recognised, not waited out
    _assert_clean(output)


def test_untrusted_certificate_is_a_clear_error(
    secure_kafka: SecureKafkaBroker, toy_model_dir: Path, tmp_path: Path
) -> None:
    assert secure_kafka.certs is not None
    topics = _topics(secure_kafka)
    props = tmp_path / "tls.properties"
    props.write_text(f"security.protocol=SSL\nssl.ca.location={secure_kafka.certs.untrusted_ca}\n")
    args = _worker_args(secure_kafka.ssl_bootstrap, topics, toy_model_dir, _free_port())
    done = _run_failing([*args, "--kafka-properties-file", str(props)], {})
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("scorer: error:")]
    assert len(errors) == 1 and "TLS handshake failed" in errors[0], output[-3000:]
    assert "certificate verify failed" in errors[0]
    _assert_clean(output)


def test_print_settings_masks_every_password(tmp_path: Path) -> None:
    props = _properties_file(tmp_path / "client.properties", PASSWORD)
    done = subprocess.run(
        [
            SCORER,
            "worker",
            "--print-settings",
            "--kafka",
            f"sasl.password={WRONG_PASSWORD}",
            "--kafka-properties-file",
            str(props),
        ],
        env=user_env(SCORER_SASL_PASSWORD=PASSWORD, SCORER_SSL_KEY_PASSWORD=WRONG_PASSWORD),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout)
    assert settings["sasl_password"] == "**********" and settings["kafka"] == {"sasl.password": "***"}
    assert settings["ssl_key_password"] == "**********"
    output = done.stdout + done.stderr
    assert all(secret not in output for secret in SECRETS) and "Traceback" not in output
