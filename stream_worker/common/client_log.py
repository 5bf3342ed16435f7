"""Tooling for the Kafka clients (not a data-path stage): their logs, their errors and broker connectivity.

* **librdkafka's log** goes through our structured logger: ``client_logger()`` is the ``logging.Logger`` given to
  confluent-kafka as the ``logger`` config key (consumer, producer, admin client).  confluent-kafka then hands
  every librdkafka line to it when the client is polled, instead of writing ``%3|...|FAIL|...`` to stderr.  Each
  line becomes one JSON record of logger ``librdkafka`` with ``facility`` and ``client`` fields.
* **Repeated errors are rate-limited**: while a broker is down librdkafka reports the same failure several times a
  second per client.  ``RateLimiter`` lets one line per kind (librdkafka facility, or error code name) through per
  ``interval_s``; the next line of that kind after the interval carries ``suppressed``, how many were dropped.
  Fatal errors are never dropped.
* **Connectivity**: ``HEALTH`` (one per process) keeps what the clients said last: brokers up/known from
  librdkafka statistics, every client error by kind.  ``Metrics`` objects attach to it and turn it into gauges
  and counters (``scorer_kafka_brokers_up``, ``scorer_kafka_client_errors_total{kind}``...) and ``/readyz``'s body.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

DEFAULT_INTERVAL_S = 30.0
LOGGER_NAME = "librdkafka"

log = logging.getLogger("stream_worker.kafka")


class RateLimiter:
    """One event per kind per ``interval_s``; counts what it drops.  Thread-safe; ``clock`` is injectable."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def admit(self, kind: str) -> int | None:
        """``None``: drop this occurrence.  Else let it through: how many of ``kind`` were dropped before it."""
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval_s:
                self._dropped[kind] = self._dropped.get(kind, 0) + 1
                return None
            self._last[kind] = now
            return self._dropped.pop(kind, 0)


# --- librdkafka's log -------------------------------------------------------------------------------------------
_THREAD_PREFIX = re.compile(r"^\[thrd:[^\]]*\]: ")


class LibrdkafkaRecords(logging.Filter):
    """Turns confluent-kafka's ``log(level, "%s [%s] %s", facility, client, text)`` calls into structured records
    and drops repeats of a facility within the limiter's interval."""

    def __init__(self, limiter: RateLimiter) -> None:
        super().__init__()
        self.limiter = limiter

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3:
            facility, client, text = (str(a) for a in args)
            record.msg, record.args = _THREAD_PREFIX.sub("", text), None
            record.facility, record.client = facility, client
        facility = str(getattr(record, "facility", "?"))
        suppressed = self.limiter.admit(f"log:{facility}:{record.levelno}")
        if suppressed is None:
            return False
        record.suppressed = suppressed
        return True


_client_logger: logging.Logger | None = None
_client_logger_lock = threading.Lock()


def client_logger(interval_s: float = DEFAULT_INTERVAL_S) -> logging.Logger:
    """The logger for librdkafka's lines (the ``logger`` config key); it propagates to our JSON handler."""
    global _client_logger
    with _client_logger_lock:
        if _client_logger is None:
            logger = logging.getLogger(LOGGER_NAME)
            logger.addFilter(LibrdkafkaRecords(RateLimiter(interval_s)))
            _client_logger = logger
        return _client_logger


# --- client errors (error_cb, consumer error messages) ----------------------------------------------------------
_error_limiter = RateLimiter()


def report_error(err: KafkaError, client: str, what: str = "kafka client error") -> None:
    """Count ``err`` by kind (always) and log it (once per kind per interval, with ``suppressed``; fatal: always)."""
    kind = _kind(err)
    HEALTH.client_error(kind)
    fatal = err.fatal()
    suppressed = 0 if fatal else _error_limiter.admit(f"{client}:{kind}")
    if suppressed is None:
        return
    extra = {"kafka_error": err.str(), "kind": kind, "client": client, "suppressed": suppressed}
    if fatal:
        log.error(f"fatal {what}", extra=extra)
    else:
        log.warning(what, extra=extra)


def _kind(err: KafkaError) -> str:
    try:
        return str(err.name())
    except Exception:  # a KafkaError built by hand may carry a code librdkafka has no name for
        return str(err.code())


# --- connectivity ---------------------------------------------------------------------------------------------------
class HealthSink(Protocol):
    def on_brokers(self, up: int, known: int) -> None: ...

    def on_client_error(self, kind: str, at_unix_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class BrokerView:
    up: int
    known: int
    states: dict[str, str]


def broker_view(stats: dict[str, Any]) -> BrokerView | None:
    """Brokers of the cluster in one librdkafka statistics object: those learned from metadata (node id >= 0), or,
    while there are none (at start, or after every broker went down and librdkafka fell back to the bootstrap
    list), the bootstrap entries.  Logical entries (``GroupCoordinator``) are left out.  ``None`` when the object
    has no ``brokers`` section."""
    brokers = stats.get("brokers")
    if not isinstance(brokers, dict):
        return None
    learned: dict[str, str] = {}
    bootstrap: dict[str, str] = {}
    for name, data in brokers.items():
        if not isinstance(data, dict):
            continue
        state = str(data.get("state", "?"))
        if int(data.get("nodeid", -1)) >= 0:
            learned[str(name)] = state
        elif data.get("source") == "configured" or str(name).endswith("/bootstrap"):
            bootstrap[str(name)] = state
    states = learned or bootstrap
    return BrokerView(sum(1 for s in states.values() if s == "UP"), len(states), states)


class ClientHealth:
    """What this process's Kafka clients said last; attached sinks (``Metrics``) are told about every change."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sinks: weakref.WeakSet[Any] = weakref.WeakSet()
        self.brokers: BrokerView | None = None
        self.last_error: tuple[str, float] | None = None

    def attach(self, sink: HealthSink) -> None:
        with self._lock:
            self._sinks.add(sink)

    def _each_sink(self) -> list[HealthSink]:
        with self._lock:
            return list(self._sinks)

    def statistics(self, stats: dict[str, Any]) -> None:
        view = broker_view(stats)
        if view is None:
            return
        previous, self.brokers = self.brokers, view
        if previous is None or (previous.up, previous.known) != (view.up, view.known):
            log.info("kafka brokers", extra={"brokers_up": view.up, "brokers_known": view.known})
        for sink in self._each_sink():
            sink.on_brokers(view.up, view.known)

    def client_error(self, kind: str) -> None:
        now = self._clock()
        self.last_error = (kind, now)
        for sink in self._each_sink():
            sink.on_client_error(kind, now)


HEALTH = ClientHealth()
