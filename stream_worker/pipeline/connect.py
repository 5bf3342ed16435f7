"""Start-up check that the Kafka cluster answers, so a wrong address or credentials fail fast and clearly.

librdkafka retries an unreachable cluster forever and reports it only as repeated warnings; a worker that
started against ``127.0.0.1:1`` would sit there, never ready.  ``check_cluster`` asks for metadata, waits up
to ``broker_timeout_s``, and turns silence into one ``InfrastructureError`` line naming the address and the last
client error (never a secret: librdkafka's error strings do not contain passwords).  A refused login (SASL) or a
TLS handshake that fails (untrusted certificate, wrong protocol) is recognised from the client's errors while it
waits and fails at once with a line naming that cause: retrying would not change the credentials.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from stream_worker.common import client_log
from stream_worker.common.errors import InfrastructureError

log = logging.getLogger(__name__)

_CLIENT_KEYS_TO_DROP = (
    "group.id",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "auto.offset.reset",
    "max.poll.interval.ms",
    "session.timeout.ms",
    "partition.assignment.strategy",
    "statistics.interval.ms",
)


def check_cluster(config: dict[str, Any], timeout_s: float, topic: str | None = None) -> str:
    """Raise ``InfrastructureError`` unless the cluster answers a metadata request within ``timeout_s``.

    Returns the cluster id (``tansu_cluster`` for the embedded tansu broker).
    """
    errors: list[KafkaError] = []
    conf = {k: v for k, v in config.items() if k not in _CLIENT_KEYS_TO_DROP and not callable(v)}
    conf.pop("logger", None)
    conf.update({"error_cb": errors.append, "logger": client_log.client_logger()})
    bootstrap = conf.get("bootstrap.servers", "?")
    deadline = time.monotonic() + timeout_s
    try:
        admin = AdminClient(conf)
    except KafkaException as exc:  # e.g. an unreadable ssl.ca.location: librdkafka refuses the config
        raise InfrastructureError(f"cannot create a Kafka client: {_error_text(exc)}") from None
    while True:
        try:
            metadata = admin.list_topics(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
            break
        except KafkaException as exc:
            last = _error_text(exc)
        admin.poll(0)  # serves the error callback and librdkafka's log lines gathered meanwhile
        refused = security_failure(errors)
        if refused is not None:
            raise InfrastructureError(
                f"the Kafka cluster at {bootstrap} refused the connection: {refused}; "
                "check the security settings (security protocol, SASL user and password, TLS certificates)"
            ) from None
        if time.monotonic() >= deadline:
            last = errors[-1].str() if errors else last
            raise InfrastructureError(
                f"cannot reach the Kafka cluster at {bootstrap} within {timeout_s:g} s ({last}); "
                "check --bootstrap-servers and the security settings"
            ) from None
    if topic is not None and topic not in metadata.topics:
        log.warning("input topic does not exist yet; waiting for it", extra={"topic": topic})
    return str(metadata.cluster_id or "")


_SECURITY_CODES = {
    KafkaError._AUTHENTICATION: "authentication failed",
    KafkaError.SASL_AUTHENTICATION_FAILED: "authentication failed",
    KafkaError._SSL: "TLS handshake failed",
    KafkaError.UNSUPPORTED_SASL_MECHANISM: "SASL mechanism not enabled on the broker",
    KafkaError.ILLEGAL_SASL_STATE: "SASL handshake failed",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "not authorized",
}


def security_failure(errors: list[KafkaError]) -> str | None:
    """The first client error that says the cluster refused us (login, TLS), as '<cause> (<librdkafka text>)'."""
    for err in errors:
        cause = _SECURITY_CODES.get(err.code())
        if cause is None and "SSL handshake failed" in err.str():
            cause = "TLS handshake failed"
        if cause is not None:
            return f"{cause} ({err.str()})"
    return None


def _error_text(exc: KafkaException) -> str:
    first = exc.args[0] if exc.args else exc
    return str(first.str() if isinstance(first, KafkaError) else first)
