"""Metrics and health: Prometheus counters/histograms, and the ``/metrics``, ``/healthz``, ``/readyz`` server.

``scorer worker`` is always a small supervisor (``pool.py``) with one or more worker processes; the supervisor,
which never imports TensorFlow, serves the three endpoints for the host, so they answer at once at any time:

* ``/healthz`` — 200 while every worker process runs (or is being restarted) and every ready one keeps its main
  loop turning (it ticks at least every poll; a loop silent for ``STALE_AFTER_S`` = 60 s is stalled), else 503.
  A process that is still loading its model is healthy: start-up is what ``/readyz`` is for.
* ``/readyz``  — 200 once every process has loaded and warmed up its model with a maximum-size batch and its
  consumer is subscribed; 503 before and while stopping.  The body is JSON: ``{"status": "ready"|"not ready",
  "kafka": {"brokers_up", "brokers_known", "last_client_error": {"kind", "age_s"} | null}}`` (connectivity from
  librdkafka statistics and client errors, see ``client_log``; it does not change the status code) and, with a
  Schema Registry, ``"schema_registry": {"unreachable", "held_messages"}`` (informative too: a registry outage
  pauses consumption, see ``hold.py``, and the worker stays ready).

Every worker process writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode, chosen by that variable before the import), signals readiness with a file and its loop's
heartbeat with that file's twin; the supervisor serves one aggregated ``/metrics``.  Gauges say how to aggregate:
partitions and lag add up over live processes, the model version gauge shows every version some live process
serves.  Label sets cannot be removed in multiprocess mode: ``forget_gauge`` sets them to 0 instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from stream_worker.common import client_log
from stream_worker.common.errors import ConfigError

log = logging.getLogger(__name__)

STALE_AFTER_S = 60.0  # a main loop silent this long is stalled (/healthz 503)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_FINE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def heartbeat_file(ready_file: Path) -> Path:
    """The file whose modification time is a pool child's last main-loop tick."""
    return ready_file.with_name(ready_file.name + ".alive")


class Metrics:
    def __init__(self, ready_file: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        self._ready_file = ready_file
        self._ready = False
        r = self.registry
        self.messages_in = Counter("scorer_messages_in", "Messages consumed from the input topic.", registry=r)
        self.messages_out = Counter("scorer_messages_out", "Scores acknowledged on the output topic.", registry=r)
        self.dead_lettered = Counter(
            "scorer_dead_lettered", "Messages acknowledged on the dead-letter topic.", ["reason"], registry=r
        )
        self.skipped = Counter("scorer_skipped", "Messages skipped on purpose (tombstones).", ["reason"], registry=r)
        self.failures = Counter("scorer_failures", "Infrastructure failures by kind.", ["kind"], registry=r)
        self.batch_size = Histogram("scorer_batch_size", "Texts per scored batch.", buckets=_BATCH_BUCKETS, registry=r)
        self.batch_tokens = Histogram(
            "scorer_batch_padded_tokens",
            "Estimated padded tokens per batch.",
            buckets=(64, 256, 1024, 4096, 16384),
            registry=r,
        )
        self.pii_findings = Counter(
            "scorer_pii_findings", "Personal data found in texts, by kind and policy.", ["kind", "policy"], registry=r
        )
        self.queue_depth = Gauge(
            "scorer_queue_depth",
            "Texts waiting in the engine for a batch.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.registry_unreachable = Gauge(
            "scorer_schema_registry_unreachable",
            "1 while the Schema Registry does not answer (consumption paused, messages held; see hold.py).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.held_messages = Gauge(
            "scorer_held_messages",
            "Messages held until the Schema Registry answers again.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.inference_seconds = Histogram(
            "scorer_inference_seconds", "Model time per batch.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_wait_seconds = Histogram(
            "scorer_queue_wait_seconds",
            "Time a text waited in the engine before its batch started (submit to model call).",
            buckets=_FINE_BUCKETS,
            registry=r,
        )
        self.publish_ack_seconds = Histogram(
            "scorer_publish_ack_seconds",
            "Score record handed to the producer until the broker acknowledged it.",
            buckets=_FINE_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "scorer_end_to_end_seconds",
            "Produced (record or Kafka timestamp) to scored.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "scorer_consumer_lag",
            "Messages behind the partition end (librdkafka statistics).",
            ["topic", "partition"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.assigned_partitions = Gauge(
            "scorer_assigned_partitions",
            "Input partitions this worker owns now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.model_info = Gauge(
            "scorer_model_info", "Model version being served (1).", ["version"], registry=r, multiprocess_mode="livemax"
        )
        self.model_load_failures = Counter(
            "scorer_model_load_failures",
            "Model versions refused (load error, broken contract or failed warm-up).",
            ["reason"],
            registry=r,
        )
        self.model_swaps = Counter("scorer_model_swaps", "Model versions swapped in without a restart.", registry=r)
        self.transactions = Counter(
            "scorer_transactions",
            "Exactly-once transactions by outcome (committed; aborted or producer_replaced: its work is redone).",
            ["outcome"],
            registry=r,
        )
        self.warmup_seconds = Gauge(
            "scorer_warmup_seconds",
            "Time of the maximum-size warm-up batch.",
            registry=r,
            multiprocess_mode="livemax",
        )
        # Kafka connectivity (client_log.HEALTH feeds these).  In a pool: the worst process's view of the brokers.
        self.kafka_brokers_up = Gauge(
            "scorer_kafka_brokers_up",
            "Kafka brokers whose connection is UP (librdkafka statistics of the consumer).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.kafka_brokers_known = Gauge(
            "scorer_kafka_brokers_known",
            "Kafka brokers the consumer knows from cluster metadata.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.kafka_client_errors = Counter(
            "scorer_kafka_client_errors",
            "Errors reported by the Kafka clients (error callback, consumer errors), by kind (error code name).",
            ["kind"],
            registry=r,
        )
        self.kafka_last_client_error = Gauge(
            "scorer_kafka_last_client_error_timestamp_seconds",
            "Unix time of the last client error of each kind.",
            ["kind"],
            registry=r,
            multiprocess_mode="livemax",
        )
        client_log.HEALTH.attach(self)
        self._heartbeat = heartbeat_file(ready_file) if ready_file is not None else None
        self._beat_at = 0.0

    @property
    def ready(self) -> bool:
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        """Readiness; in a pool it is also a file the supervisor looks for (holding this process id)."""
        self._ready = value
        if self._ready_file is not None:
            if value:
                self._ready_file.write_text(str(os.getpid()))
            else:
                self._ready_file.unlink(missing_ok=True)

    def serve_version(self, version: str, previous: str | None = None) -> None:
        """The version gauge shows only the version being served now."""
        if previous is not None and previous != version:
            forget_gauge(self.model_info, previous)
        self.model_info.labels(version=version).set(1)

    def count_pii(self, policy: str, counts: tuple[tuple[str, int], ...]) -> None:
        """Findings of the anonymization guard, by kind (the kinds only: never values)."""
        for kind, count in counts:
            self.pii_findings.labels(kind=kind, policy=policy).inc(count)

    def on_brokers(self, up: int, known: int) -> None:
        self.kafka_brokers_up.set(up)
        self.kafka_brokers_known.set(known)

    def on_client_error(self, kind: str, at_unix_s: float) -> None:
        self.kafka_client_errors.labels(kind=kind).inc()
        self.kafka_last_client_error.labels(kind=kind).set(at_unix_s)

    def tick(self) -> None:
        """The main loop turned: at most once a second the heartbeat file's time says so (the supervisor's
        ``/healthz`` reads it; a worker outside a pool has none)."""
        if self._heartbeat is None:
            return
        now = time.monotonic()
        if now - self._beat_at >= 1.0:
            self._beat_at = now
            try:
                os.utime(self._heartbeat)
            except FileNotFoundError:
                self._heartbeat.touch()


def kafka_connectivity(registry: CollectorRegistry, now: float | None = None) -> dict[str, Any]:
    """Connectivity for ``/readyz``'s body, read back from the gauges above (one process's registry, or the
    supervisor's aggregate of its children)."""
    values: dict[str, float] = {}
    last: tuple[str, float] | None = None
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in ("scorer_kafka_brokers_up", "scorer_kafka_brokers_known"):
                values[sample.name] = sample.value
            elif (
                sample.name == "scorer_kafka_last_client_error_timestamp_seconds"
                and sample.value > 0
                and (last is None or sample.value > last[1])
            ):
                last = (sample.labels.get("kind", "?"), sample.value)
    now = time.time() if now is None else now
    return {
        "brokers_up": int(values.get("scorer_kafka_brokers_up", 0)),
        "brokers_known": int(values.get("scorer_kafka_brokers_known", 0)),
        "last_client_error": None if last is None else {"kind": last[0], "age_s": round(max(0.0, now - last[1]), 1)},
    }


def schema_registry_status(registry: CollectorRegistry) -> dict[str, Any]:
    """The Schema Registry's state for ``/readyz``'s body: unreachable (any process) and messages held (all)."""
    values = {"scorer_schema_registry_unreachable": 0.0, "scorer_held_messages": 0.0}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in values:
                values[sample.name] = sample.value
    return {
        "unreachable": values["scorer_schema_registry_unreachable"] > 0,
        "held_messages": int(values["scorer_held_messages"]),
    }


class HealthServer:
    """The probe and scrape server of a worker host: ``/metrics``, ``/healthz``, ``/readyz``.

    It runs in the pool supervisor, a process that never imports TensorFlow, so it answers at once at any time,
    start-up included (importing TensorFlow holds the GIL for more than a second at a time; a server in the
    process that loads the model could not promise a one-second probe).  ``/metrics`` is prometheus-client's own
    WSGI exposition of ``registry`` (content negotiation, gzip); the server is the standard library's WSGI server,
    one thread per request.  A client that hangs up mid-answer is not an error: nothing is printed, one debug line
    is logged.  A port that is taken is a ``ConfigError`` with a clear message.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        *,
        ready: Callable[[], bool],
        healthy: Callable[[], bool],
        kafka: Callable[[], dict[str, Any]] | None = None,
        schema_registry: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        app = _probe_app(make_wsgi_app(registry), ready, healthy, {"kafka": kafka, "schema_registry": schema_registry})
        try:
            self._server = make_server(host, port, app, server_class=_QuietServer, handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc} "
                "(another worker there? give each worker its own --metrics-port, 0 to turn it off, "
                "or run one pool with --processes N)"
            ) from exc
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("metrics server listening", extra={"port": self.port})
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_HANGUPS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class _QuietServer(ThreadingWSGIServer):
    """Errors of one connection (a probe that gave up and hung up) become a debug log line, not a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        log.debug(
            "metrics client connection ended early" if isinstance(exc, _HANGUPS) else "metrics request failed",
            extra={"error": type(exc).__name__},
        )


class _QuietHandler(WSGIRequestHandler):
    """No access log lines (probes come every few seconds) and no stderr writes of its own."""

    def log_message(self, format: str, *args: Any) -> None:
        return


def _probe_app(
    metrics_app: Callable[..., Any],
    ready: Callable[[], bool],
    healthy: Callable[[], bool],
    details: dict[str, Callable[[], dict[str, Any]] | None],
) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return list(metrics_app(environ, start_response))
        if path == "/healthz":
            ok = healthy()
            return _answer(start_response, 200 if ok else 503, b"ok\n" if ok else b"stalled\n")
        if path == "/readyz":
            is_ready = ready()
            body: dict[str, Any] = {"status": "ready" if is_ready else "not ready"}
            for key, detail in details.items():
                if detail is None:
                    continue
                try:
                    body[key] = detail()
                except Exception:  # connectivity is informative; never let it break the probe
                    log.debug("readiness detail unavailable", extra={"detail": key}, exc_info=True)
            data = (json.dumps(body) + "\n").encode()
            return _answer(start_response, 200 if is_ready else 503, data, "application/json; charset=utf-8")
        return _answer(start_response, 404, b"not found\n")

    return app


_REASONS = {200: "200 OK", 404: "404 Not Found", 503: "503 Service Unavailable"}


def _answer(
    start_response: Callable[..., Any], status: int, body: bytes, ctype: str = "text/plain; charset=utf-8"
) -> list[bytes]:
    start_response(_REASONS[status], [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def multiprocess_mode() -> bool:
    """prometheus-client's multiprocess mode (a pool child): label sets cannot be removed there."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def forget_gauge(gauge: Gauge, *labels: str) -> None:
    """Drop one labelled gauge sample; in multiprocess mode (no removal) it reads 0 instead."""
    if multiprocess_mode():
        gauge.labels(*labels).set(0)
        return
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
