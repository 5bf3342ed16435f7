"""Start-up check that the Kafka cluster answers, so a wrong address or credentials fail fast and clearly.

librdkafka retries an unreachable cluster forever and reports it only as repeated warnings; a worker that
started against ``127.0.0.1:1`` would sit there, never ready.  ``check_cluster`` asks for metadata once, waits up
to ``broker_timeout_s``, and turns silence into one ``InfrastructureError`` line naming the address and the last
client error (never a secret: librdkafka's error strings do not contain passwords).
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

from .errors import InfrastructureError

log = logging.getLogger(__name__)

# librdkafka's own log lines during the check are summarised by our error; route them to a quiet logger.
_quiet = logging.getLogger("stream_worker.librdkafka.check")
_quiet.propagate = False
_quiet.addHandler(logging.NullHandler())

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


def check_cluster(config: dict[str, Any], timeout_s: float, topic: str | None = None) -> None:
    """Raise ``InfrastructureError`` unless the cluster answers a metadata request within ``timeout_s``."""
    errors: list[KafkaError] = []
    conf = {k: v for k, v in config.items() if k not in _CLIENT_KEYS_TO_DROP and not callable(v)}
    conf.update({"error_cb": errors.append, "logger": _quiet})
    bootstrap = conf.get("bootstrap.servers", "?")
    try:
        admin = AdminClient(conf)
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        last = errors[-1].str() if errors else str(exc.args[0].str() if exc.args else exc)
        raise InfrastructureError(
            f"cannot reach the Kafka cluster at {bootstrap} within {timeout_s:g} s ({last}); "
            "check --bootstrap-servers and the security settings"
        ) from None
    if topic is not None and topic not in metadata.topics:
        log.warning("input topic does not exist yet; waiting for it", extra={"topic": topic})
