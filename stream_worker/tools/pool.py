"""The worker supervisor: ``scorer worker [--processes N]`` (tooling around the data path, not part of it).

Every ``scorer worker`` is a small supervisor that never imports TensorFlow, plus N worker processes (N = 1 by
``--processes 1``) in the same consumer group.  The supervisor:

1. splits the host's inference threads between them (``inference_threads`` or one per core, divided by N, at
   least 1 each);
2. hands each child its settings on stdin as JSON (secrets included), never on the command line or in the
   environment, where other users of the host could read them;
3. serves the host's ``/metrics``, ``/healthz`` and ``/readyz`` on ``metrics_port`` from the moment it starts:
   the children write their metrics to files (prometheus-client multiprocess mode) and the supervisor aggregates
   them; ``/readyz`` is ready when every child is (each child writes a ready file holding its pid once it
   consumes), ``/healthz`` fails when a ready child's loop stopped turning (its heartbeat file went stale).  Being
   free of TensorFlow, it answers while the children import it and load the model (which holds the GIL for
   more than a second at a time);
4. restarts a child that died, after a backoff (1 s, doubling, at most 30 s); a child that fails again and again
   right after starting (``_FAST_FAILURES`` times in a row, each within ``_FAST_S`` of its start) makes the
   supervisor stop with a clear error, and a child that exits with code 2 (bad settings or model) stops it at
   once, since a restart cannot help.  With one process (``--processes 1``) a child that ends on an error of its
   own (code 1, e.g. fenced by a newer worker with its transactional id; or code 2) ends the supervisor with the
   same one-line error and exit code, so an orchestrator sees the process fail as before; a child killed by a
   signal (e.g. the kernel's OOM killer) is restarted;
5. forwards SIGTERM/SIGINT to every child for the graceful stop (each finishes its batch, flushes and commits)
   and waits for them; children also get SIGTERM if the supervisor itself dies (Linux parent-death signal).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_worker.common.cpus import available_cores
from stream_worker.common.errors import ConfigError, InfrastructureError, ModelError
from stream_worker.common.metrics import STALE_AFTER_S, heartbeat_file
from stream_worker.common.settings import Settings

log = logging.getLogger(__name__)

_FAST_S = 30.0
_FAST_FAILURES = 5
_BACKOFF_MAX_S = 30.0
_STOP_GRACE_S = 90.0  # the supervisor SIGKILLs a child still running this long after SIGTERM
_POOL_DIR_ENV = "STREAM_WORKER_POOL_DIR"
_SLOT_ENV = "STREAM_WORKER_SLOT"
EXIT_CONFIG = 2


@dataclass
class _Child:
    slot: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    fast_failures: int = 0
    backoff_s: float = 1.0
    restart_at: float | None = None
    restarts: int = 0
    exits: list[int] = field(default_factory=list)


class WorkerPool:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = settings.process_count
        total_threads = settings.inference_threads or available_cores()
        self.threads_each = max(1, total_threads // self.count)
        self.children = [_Child(slot) for slot in range(self.count)]
        self.pool_dir = Path(tempfile.mkdtemp(prefix="scorer-pool-"))
        self.metrics_dir = self.pool_dir / "metrics"
        self.metrics_dir.mkdir()
        self.restarts_total = 0

    # --- the supervisor loop --------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        """Run until ``stop`` is set (returns 0) or the pool gives up (returns non-zero)."""
        from stream_worker.common.metrics import HealthServer, kafka_connectivity, schema_registry_status

        s = self.settings
        server = None
        try:
            if s.metrics_port:
                registry = self.registry()  # read at each scrape: the children's metric files as they are now
                server = HealthServer(
                    registry,
                    s.metrics_host,
                    s.metrics_port,
                    ready=self.ready,
                    healthy=self.healthy,
                    kafka=lambda: kafka_connectivity(registry),
                    schema_registry=(lambda: schema_registry_status(registry)) if s.schema_registry_url else None,
                ).start()
            self._preflight()
            log.info("worker pool starting", extra={"processes": self.count, "threads_each": self.threads_each})
            for child in self.children:
                self._spawn(child)
            while not stop.wait(0.25):
                code = self._supervise()
                if code is not None:
                    return code
            return 0
        finally:
            self._stop_all()
            if server is not None:
                server.stop()
            shutil.rmtree(self.pool_dir, ignore_errors=True)

    def _preflight(self) -> None:
        """Fail once, clearly, before N children would each fail the same way."""
        from stream_worker.engine.model_repo import require_servable
        from stream_worker.pipeline import connect
        from stream_worker.pipeline.transaction import check_delivery_support

        require_servable(self.settings.model_dir, self.settings.model_version)
        s = self.settings
        cluster_id = connect.check_cluster(s.consumer_config(), s.broker_timeout_s, s.input_topic)
        check_delivery_support(s, cluster_id)

    def _supervise(self) -> int | None:
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                code = proc.returncode
                failure = self._reap(child)
                if code == EXIT_CONFIG or (self.count == 1 and code == 1):
                    log.error(
                        "worker process stopped on an error of its own; stopping",
                        extra={"slot": child.slot, "exit_code": code},
                    )
                    detail = failure or f"worker process exited with code {code}"
                    raise ConfigError(detail) if code == EXIT_CONFIG else InfrastructureError(detail)
                fast = now - child.started < _FAST_S
                child.fast_failures = child.fast_failures + 1 if fast else 1
                if child.fast_failures >= _FAST_FAILURES:
                    log.error(
                        "worker process keeps failing right after start; giving up",
                        extra={"slot": child.slot, "failures": child.fast_failures, "exit_code": code},
                    )
                    return 1
                if not fast:
                    child.backoff_s = 1.0
                child.restart_at = now + child.backoff_s
                log.warning(
                    "worker process died; restarting it",
                    extra={"slot": child.slot, "exit_code": code, "restart_in_s": child.backoff_s},
                )
                child.backoff_s = min(_BACKOFF_MAX_S, child.backoff_s * 2)
            if child.proc is None and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self.restarts_total += 1
                self._spawn(child)
        return None

    # --- children -------------------------------------------------------------------------------------------
    def _child_settings(self, slot: int) -> dict[str, Any]:
        data = self.settings.model_dump(mode="json")
        for name in ("sasl_password", "ssl_key_password"):
            secret = getattr(self.settings, name)
            data[name] = secret.get_secret_value() if secret is not None else None
        data.update({"processes": 1, "inference_threads": self.threads_each, "metrics_port": 0})
        return data

    def _spawn(self, child: _Child) -> None:
        env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            _POOL_DIR_ENV: str(self.pool_dir),
            _SLOT_ENV: str(child.slot),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_worker.tools.pool"],
            stdin=subprocess.PIPE,
            env=env,
            preexec_fn=_die_with_parent,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(self._child_settings(child.slot)).encode())
        proc.stdin.close()
        child.proc, child.started, child.restart_at = proc, time.monotonic(), None
        log.info("worker process started", extra={"slot": child.slot, "pid": proc.pid})

    def _reap(self, child: _Child) -> str | None:
        """Forget a child that exited; returns the one-line error it left behind, if any."""
        from prometheus_client import multiprocess

        assert child.proc is not None
        child.exits.append(child.proc.returncode)
        multiprocess.mark_process_dead(child.proc.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
        ready = self.pool_dir / f"ready-{child.slot}"
        ready.unlink(missing_ok=True)
        heartbeat_file(ready).unlink(missing_ok=True)
        error = self.pool_dir / f"error-{child.slot}"
        try:
            return error.read_text().strip() or None
        except OSError:
            return None
        finally:
            error.unlink(missing_ok=True)
            child.proc = None

    def _stop_all(self) -> None:
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker process did not stop in time; killing it", extra={"slot": child.slot})
                child.proc.kill()
                child.proc.wait()
        log.info("worker pool stopped", extra={"restarts": self.restarts_total})

    # --- the host's scrape target ---------------------------------------------------------------------------
    def registry(self) -> Any:
        """The aggregate of the children's metric files plus the supervisor's own two series."""
        from prometheus_client import CollectorRegistry, multiprocess
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        pool = self

        class PoolCollector:
            def collect(self) -> Any:
                yield GaugeMetricFamily(
                    "scorer_pool_processes", "Worker processes the supervisor keeps running.", value=pool.count
                )
                yield CounterMetricFamily(
                    "scorer_pool_restarts", "Worker processes restarted after they died.", value=pool.restarts_total
                )

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        registry.register(PoolCollector())  # type: ignore[arg-type]
        return registry

    def ready(self) -> bool:
        for child in self.children:
            proc = child.proc
            if proc is None or proc.poll() is not None:
                return False
            try:
                if (self.pool_dir / f"ready-{child.slot}").read_text() != str(proc.pid):
                    return False
            except OSError:
                return False
        return True

    def healthy(self) -> bool:
        """Every child runs (or waits for its restart), and every ready child's loop ticked recently."""
        now = time.time()
        for child in self.children:
            proc = child.proc
            if proc is None:
                if child.restart_at is None and child.started:  # reaped, and no restart planned
                    return False
                continue  # not started yet (pre-flight checks) or waiting for its restart
            ready = self.pool_dir / f"ready-{child.slot}"
            try:
                if ready.read_text() != str(proc.pid):
                    continue  # still starting: loading a model is not a stall
                if now - heartbeat_file(ready).stat().st_mtime > STALE_AFTER_S:
                    return False
            except OSError:
                continue
        return True


STOP_GRACE_S = 120.0


def install_stop_handlers(stop: threading.Event, grace_s: float = STOP_GRACE_S, sigint: bool = True) -> None:
    """SIGTERM (and SIGINT) set ``stop`` for the graceful stop; if the process is still alive ``grace_s`` later
    (e.g. a final commit that cannot reach a broker that died meanwhile), it exits with code 3 rather than hang
    forever: its uncommitted messages are read again by the group, as after a crash."""

    def handler(signum: int, _frame: object) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        if not stop.is_set():
            stop.set()
            timer = threading.Timer(grace_s, _give_up, args=(grace_s,))
            timer.daemon = True
            timer.start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler if sigint else signal.SIG_IGN)


def _give_up(grace_s: float) -> None:
    log.error("graceful stop did not finish in time; exiting without it", extra={"grace_s": grace_s})
    logging.shutdown()
    os._exit(3)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the supervisor dies (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def child_main() -> int:
    """Entry point of one pool child: settings JSON on stdin, metrics to files, ready file for the supervisor."""
    from stream_worker.common import logs
    from stream_worker.common.errors import ScorerError
    from stream_worker.common.metrics import Metrics
    from stream_worker.pipeline.worker import Worker

    settings = Settings(**json.loads(sys.stdin.read()))
    logs.configure(settings.log_level)
    stop = threading.Event()
    # Ctrl-C reaches the whole process group: the supervisor decides; SIGTERM (from it, or from the kernel when
    # the supervisor died) starts the graceful stop, bounded in time.
    install_stop_handlers(stop, sigint=False)
    pool_dir = Path(os.environ[_POOL_DIR_ENV])
    slot = os.environ[_SLOT_ENV]
    try:
        Worker(settings, Metrics(ready_file=pool_dir / f"ready-{slot}")).run(stop)
    except (ConfigError, ModelError) as exc:
        log.error("worker failed", extra={"error": type(exc).__name__, "detail": str(exc)})
        _leave_error(pool_dir / f"error-{slot}", exc)
        return EXIT_CONFIG
    except ScorerError as exc:
        log.error("worker failed", extra={"error": type(exc).__name__, "detail": str(exc)})
        _leave_error(pool_dir / f"error-{slot}", exc)
        return 1
    return 0


def _leave_error(path: Path, exc: Exception) -> None:
    """The one-line reason for the supervisor, which reports it as its own error (``scorer: error: ...``)."""
    with contextlib.suppress(OSError):
        path.write_text(" ".join(str(exc).split()))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(child_main())
