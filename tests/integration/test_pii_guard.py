"""The anonymization guard on Apache Kafka, through the ``scorer worker`` console script.

reject: a text with personal data goes to the dead-letter topic (or the quarantine topic) with reason
``pii_detected`` and the kinds header, its bytes unchanged, and scoring goes on.  redact: it is scored, the output
carries ``scorer.pii.kinds``, and no part of the value appears in any output record or log line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import avro_messages, http_get, metric_value, produce, read_topic, start_worker_cli

pytestmark = pytest.mark.integration

SCORER = str(Path(sys.executable).parent / "scorer")
EMAIL, CARD = "jane.doe@mailbox.org", "4111 1111 1111 1111"
# What must never leak. Whole values and long runs only: a short digit run such as "4111" also turns up by chance in a
# random port ("metrics_port": 54111 failed a CI run), a timestamp or a float's bytes.
LEAKS = ("jane.doe", "mailbox.org", EMAIL, CARD, CARD.replace(" ", ""), "1111 1111")
TEXTS = {
    "clean-1": "a great film with a wonderful cast",
    "pii-mail": f"great film, write to me at {EMAIL} for the tickets",
    "clean-2": "an awful waste of time",
    "pii-card": f"bad movie and they charged my card {CARD} twice",
    "placeholder": "great film, contact <EMAIL> or [NAME] for details",
}


def run_worker(broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path, log: Path, *flags: str) -> Any:
    topics = {name: topic_factory(broker) for name in ("in", "out", "dlq")}
    proc, port = start_worker_cli(
        broker.bootstrap_servers, (topics["in"], topics["out"], topics["dlq"]), toy_model_dir, log, *flags
    )
    return proc, topics, port


@pytest.mark.parametrize("quarantine", [False, True], ids=["dead-letter", "quarantine"])
def test_reject_policy(
    kafka_broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path, tmp_path: Path, quarantine: bool
) -> None:
    log = tmp_path / "worker.log"
    extra = ["--pii-quarantine-topic"] if quarantine else []
    proc, topics, port = None, {}, 0
    try:
        topics_q = topic_factory(kafka_broker) if quarantine else None
        proc, topics, port = run_worker(
            kafka_broker,
            topic_factory,
            toy_model_dir,
            log,
            "--pii-policy",
            "reject",
            *([*extra, topics_q] if topics_q else []),
        )
        messages = avro_messages([{"id": k, "text": v} for k, v in TEXTS.items()])
        produce(kafka_broker.bootstrap_servers, topics["in"], messages)
        scored = read_topic(kafka_broker.bootstrap_servers, topics["out"], lambda r: len(r) >= 3, 60, linger_s=1.0)
        assert sorted(r.key for r in scored) == [b"clean-1", b"clean-2", b"placeholder"]  # scoring goes on
        rejected_topic = topics_q if quarantine else topics["dlq"]
        rejected = read_topic(kafka_broker.bootstrap_servers, rejected_topic, lambda r: len(r) >= 2, 60)
        by_key = {r.key: r for r in rejected}
        assert set(by_key) == {b"pii-mail", b"pii-card"}
        original = dict((k, v) for k, v, _ in messages)
        for key, record in by_key.items():
            assert record.value == original[key], "the original bytes go to the dead-letter/quarantine topic"
            assert record.headers["scorer.errors.reason"] == b"pii_detected"
        assert by_key[b"pii-mail"].headers["scorer.pii.kinds"] == b"EMAIL"
        assert by_key[b"pii-card"].headers["scorer.pii.kinds"] == b"CREDIT_CARD"
        assert EMAIL.encode() not in b"".join(v or b"" for r in rejected for v in r.headers.values())
        if quarantine:
            assert read_topic(kafka_broker.bootstrap_servers, topics["dlq"], lambda r: False, 1.0) == []
        metrics = http_get(port, "/metrics")[1]
        assert metric_value(metrics, "scorer_pii_findings_total", 'kind="EMAIL",policy="reject"') == 1
        assert metric_value(metrics, "scorer_dead_lettered_total", 'reason="pii_detected"') == 2
    finally:
        if proc is not None:
            proc.terminate()
            assert proc.wait(60) == 0
    text = log.read_text()
    assert not [fragment for fragment in LEAKS if fragment in text]


def test_redact_policy(
    kafka_broker: Any, topic_factory: Callable[..., str], toy_model_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    proc, topics, port = run_worker(kafka_broker, topic_factory, toy_model_dir, log, "--pii-policy", "redact")
    try:
        produce(
            kafka_broker.bootstrap_servers,
            topics["in"],
            avro_messages([{"id": k, "text": v} for k, v in TEXTS.items()]),
        )
        out = read_topic(kafka_broker.bootstrap_servers, topics["out"], lambda r: len(r) >= len(TEXTS), 60)
        by_key = {r.key: r for r in out}
        assert by_key[b"pii-mail"].headers["scorer.pii.kinds"] == b"EMAIL"
        assert by_key[b"pii-card"].headers["scorer.pii.kinds"] == b"CREDIT_CARD"
        assert "scorer.pii.kinds" not in by_key[b"clean-1"].headers
        assert "scorer.pii.kinds" not in by_key[b"placeholder"].headers  # placeholders are not findings
        everything = b"".join((r.value or b"") + b"".join(v or b"" for v in r.headers.values()) for r in out)
        assert not [fragment for fragment in LEAKS if fragment.encode() in everything]
        assert read_topic(kafka_broker.bootstrap_servers, topics["dlq"], lambda r: False, 1.0) == []
        metrics = http_get(port, "/metrics")[1]
        assert metric_value(metrics, "scorer_pii_findings_total", 'kind="CREDIT_CARD",policy="redact"') == 1
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
    text = log.read_text()
    assert not [fragment for fragment in LEAKS if fragment in text]
