"""Kafka client tooling: rate-limited client logs, librdkafka records as JSON, connectivity in metrics and /readyz."""

from __future__ import annotations

import json
import logging

import pytest
from confluent_kafka import KafkaError

from stream_worker.common import client_log
from stream_worker.common.client_log import ClientHealth, LibrdkafkaRecords, RateLimiter, broker_view
from stream_worker.common.logs import JsonFormatter
from stream_worker.common.metrics import Metrics, kafka_connectivity
from stream_worker.pipeline.connect import security_failure


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_one_per_kind_per_interval_and_counts_the_dropped() -> None:
    clock = FakeClock()
    limiter = RateLimiter(30.0, clock)
    assert limiter.admit("FAIL") == 0  # first one passes, nothing dropped before it
    for _ in range(500):  # a storm within the interval
        clock.now += 0.05
        assert limiter.admit("FAIL") is None
    assert limiter.admit("OTHER") == 0  # another kind has its own budget
    clock.now += 30.0
    assert limiter.admit("FAIL") == 500  # the next line after the interval says how many were dropped
    assert limiter.admit("FAIL") is None
    clock.now += 31.0
    assert limiter.admit("FAIL") == 1


def _librdkafka_record(level: int, facility: str, text: str) -> logging.LogRecord:
    """What confluent-kafka passes to the configured logger: log(level, "%s [%s] %s", facility, client, text)."""
    return logging.LogRecord("librdkafka", level, "", 0, "%s [%s] %s", (facility, "rdkafka#consumer-1", text), None)


def test_librdkafka_lines_become_structured_json_and_repeats_are_dropped() -> None:
    clock = FakeClock()
    records = LibrdkafkaRecords(RateLimiter(30.0, clock))
    text = "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused"
    first = _librdkafka_record(logging.ERROR, "FAIL", text)
    assert records.filter(first)
    line = json.loads(JsonFormatter().format(first))
    assert line["logger"] == "librdkafka" and line["level"] == "error"
    assert line["facility"] == "FAIL" and line["client"] == "rdkafka#consumer-1" and line["suppressed"] == 0
    assert line["msg"].startswith("127.0.0.1:9/bootstrap: Connect to") and "thrd:" not in line["msg"]
    passed = sum(records.filter(_librdkafka_record(logging.ERROR, "FAIL", text)) for _ in range(200))
    assert passed == 0
    assert records.filter(_librdkafka_record(logging.WARNING, "SESSTMOUT", "session timed out"))  # other facility
    clock.now += 30
    later = _librdkafka_record(logging.ERROR, "FAIL", text)
    assert records.filter(later) and later.suppressed == 200  # type: ignore[attr-defined]


def test_client_logger_is_given_to_every_client_and_propagates_to_our_handler() -> None:
    logger = client_log.client_logger()
    assert logger is client_log.client_logger()  # one logger, one filter, however many clients
    assert logger.name == "librdkafka" and logger.propagate
    assert sum(isinstance(f, LibrdkafkaRecords) for f in logger.filters) == 1


def test_report_error_counts_every_error_but_logs_one_per_kind(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(client_log, "_error_limiter", RateLimiter(30.0, clock))
    metrics = Metrics()
    caplog.set_level(logging.INFO, logger="stream_worker.kafka")
    for _ in range(300):
        client_log.report_error(KafkaError(KafkaError._TRANSPORT, "broker down"), "consumer")
        client_log.report_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"), "consumer")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.kind for r in warnings] == ["_TRANSPORT", "_ALL_BROKERS_DOWN"]  # type: ignore[attr-defined]
    assert metrics.kafka_client_errors.labels(kind="_TRANSPORT")._value.get() == 300
    clock.now += 31
    client_log.report_error(KafkaError(KafkaError._TRANSPORT, "broker down"), "consumer")
    assert caplog.records[-1].suppressed == 299  # type: ignore[attr-defined]
    fatal = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
    client_log.report_error(fatal, "producer")
    client_log.report_error(fatal, "producer")
    assert sum(r.levelno == logging.ERROR for r in caplog.records) == 2  # fatal errors are never dropped


STATS = {
    "brokers": {
        "127.0.0.1:9092/bootstrap": {"nodeid": -1, "state": "UP"},
        "GroupCoordinator": {"nodeid": -1, "state": "UP"},
        "127.0.0.1:9092/1": {"nodeid": 1, "state": "UP"},
        "127.0.0.1:9093/2": {"nodeid": 2, "state": "DOWN"},
        "127.0.0.1:9094/3": {"nodeid": 3, "state": "CONNECT"},
    }
}


def test_broker_view_counts_cluster_brokers_only() -> None:
    view = broker_view(STATS)
    assert view is not None and (view.up, view.known) == (1, 3)
    assert view.states["127.0.0.1:9093/2"] == "DOWN"
    assert broker_view({"topics": {}}) is None
    # every broker down: librdkafka forgets the learned ones and retries its bootstrap list
    rebootstrap = {
        "brokers": {
            "127.0.0.1:9092/bootstrap": {"nodeid": -1, "state": "INIT", "source": "configured"},
            "GroupCoordinator": {"nodeid": -1, "state": "INIT", "source": "logical"},
        }
    }
    view = broker_view(rebootstrap)
    assert view is not None and (view.up, view.known) == (0, 1)


def test_connectivity_reaches_metrics_and_the_readyz_body() -> None:
    clock = FakeClock()
    health = ClientHealth(clock=clock)
    metrics = Metrics()
    health.attach(metrics)
    assert kafka_connectivity(metrics.registry) == {"brokers_up": 0, "brokers_known": 0, "last_client_error": None}
    health.statistics(STATS)
    health.client_error("_TRANSPORT")
    clock.now += 3
    health.client_error("_ALL_BROKERS_DOWN")
    body = kafka_connectivity(metrics.registry, now=clock.now + 12)
    assert body == {
        "brokers_up": 1,
        "brokers_known": 3,
        "last_client_error": {"kind": "_ALL_BROKERS_DOWN", "age_s": 12.0},
    }
    health.statistics({"brokers": {"127.0.0.1:9092/1": {"nodeid": 1, "state": "UP"}}})
    assert kafka_connectivity(metrics.registry)["brokers_up"] == 1
    assert metrics.kafka_brokers_known._value.get() == 1


def test_health_server_readyz_body_is_json_and_keeps_the_status_codes() -> None:
    from stream_worker.common.metrics import HealthServer, kafka_connectivity
    from tests.harness import http_get

    metrics = Metrics()
    server = HealthServer(
        metrics.registry,
        "127.0.0.1",
        0,
        ready=lambda: metrics.ready,
        healthy=lambda: True,
        kafka=lambda: kafka_connectivity(metrics.registry),
    ).start()
    try:
        status, body = http_get(server.port, "/readyz")
        assert status == 503 and json.loads(body)["status"] == "not ready"
        metrics.ready = True
        status, body = http_get(server.port, "/readyz")
        data = json.loads(body)
        assert (
            status == 200
            and data["status"] == "ready"
            and set(data["kafka"])
            == {
                "brokers_up",
                "brokers_known",
                "last_client_error",
            }
        )
    finally:
        server.stop()


def test_security_failures_are_recognised_from_client_errors() -> None:
    auth = KafkaError(
        KafkaError._AUTHENTICATION,
        "sasl_plaintext://127.0.0.1:1/bootstrap: SASL authentication error: Authentication failed during "
        "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
    )
    tls = KafkaError(KafkaError._SSL, "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: certificate verify failed")
    down = KafkaError(KafkaError._TRANSPORT, "Connection refused")
    assert security_failure([down]) is None
    assert (security_failure([down, auth]) or "").startswith("authentication failed (")
    assert (security_failure([tls]) or "").startswith("TLS handshake failed (")
