"""Helpers for integration tests: run workers (in a thread or as processes) and read topics back."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from stream_worker.common.settings import Settings
from stream_worker.pipeline.avro import INPUT_SCHEMA, AvroEncoder, load_schema
from stream_worker.pipeline.worker import Worker

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]
    partition: int
    offset: int


def read_topic(
    bootstrap: str, topic: str, until: Callable[[list[Record]], bool], timeout_s: float = 60.0, linger_s: float = 0.0
) -> list[Record]:
    """Read ``topic`` from the start until ``until(records)`` holds (then ``linger_s`` more) or the timeout passes."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    records: list[Record] = []
    end, lingering = time.monotonic() + timeout_s, False
    try:
        while time.monotonic() < end:
            if not lingering and until(records):
                if not linger_s:
                    break
                end, lingering = time.monotonic() + linger_s, True
            for msg in consumer.consume(num_messages=1000, timeout=0.2 if lingering else 0.5):
                if not msg.error():
                    records.append(
                        Record(msg.key(), msg.value(), dict(msg.headers() or []), msg.partition(), msg.offset())
                    )
    finally:
        consumer.close()
    return records


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None, list[Any] | None]]) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": "lz4",
            "message.max.bytes": 4_000_000,
            "linger.ms": 5,
        }
    )
    errors: list[str] = []
    for key, value, headers in messages:
        producer.produce(
            topic,
            key=key,
            value=value,
            headers=headers,
            on_delivery=lambda err, _m: errors.append(str(err)) if err else None,
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors


def worker_settings(
    broker: Any, topic_factory: Callable[..., str], model_dir: Path, partitions: int = 1, **overrides: Any
) -> Settings:
    """Fresh uuid input/output/dead-letter topics on ``broker`` and worker settings that use them."""
    in_topic = topic_factory(broker, partitions=partitions)
    out_topic, dlq_topic = topic_factory(broker, partitions=partitions), topic_factory(broker)
    values: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap_servers,
        "input_topic": in_topic,
        "output_topic": out_topic,
        "dead_letter_topic": dlq_topic,
        "group_id": f"g-{in_topic}",
        "model_dir": model_dir,
        "metrics_port": 0,
        "session_timeout_ms": 6000,
        # In-process workers share the test process's TensorFlow, whose precision is set once per process:
        # keep them fp32; bf16 is tested through the console script (a process of its own).
        "precision": "fp32",
    }
    return Settings(**{**values, **overrides})


def avro_messages(records: list[dict[str, Any]], keys: list[bytes] | None = None) -> list[tuple[bytes, bytes, None]]:
    """Input records encoded with the input schema, keyed by ``keys`` (default: their ids)."""
    encode = AvroEncoder(load_schema(INPUT_SCHEMA))
    keys = keys or [str(r["id"]).encode() for r in records]
    return [(key, encode(r), None) for key, r in zip(keys, records, strict=True)]


class WorkerThread:
    """One in-process worker (shares the test's TensorFlow); ``stop()`` is a graceful SIGTERM equivalent."""

    def __init__(self, settings: Settings) -> None:
        self.worker = Worker(settings)
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run(self.stop_event)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def __enter__(self) -> WorkerThread:
        self._thread.start()
        deadline = time.monotonic() + 600  # a generous bound: model load on a slow, loaded machine
        while not self.worker.metrics.ready:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, "worker did not become ready"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error


class WorkerProcess:
    """``scorer worker`` as a real OS process (so a test can SIGKILL it)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        # One worker process (under its supervisor, as every `scorer worker`); kill() takes both down at once.
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "SCORER_PROCESSES": "1", **env}
        self.log_path = log_path
        self.port = int(env["SCORER_METRICS_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream_worker.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group, so kill() reaches the supervisor and its child
        )
        return self

    def wait_ready(self, timeout_s: float = 600.0) -> None:
        """Until /readyz says ready (a slow, loaded machine may take minutes to import TensorFlow)."""
        proc = self.proc
        assert proc is not None
        wait_for(lambda: proc.poll() is not None or http_status(self.port, "/readyz") == 200, timeout_s, "ready")
        assert proc.poll() is None, self.log_tail()

    def kill(self) -> None:
        """SIGKILL the supervisor and its worker process together: a crash of the host or container."""
        assert self.proc is not None
        kill_group(self.proc)

    def terminate(self, timeout_s: float = 180.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def http_status(port: int, path: str) -> int:
    return http_get(port, path)[0]


def metric_value(text: str, name: str, labels: str = "") -> float:
    """Value of one sample in Prometheus text format (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == wanted:
            return float(value)
    return 0.0


# --- the console script, as a user runs it ------------------------------------------------------------------------
SCORER = str(Path(sys.executable).parent / "scorer")


def user_env(**extra: str) -> dict[str, str]:
    """This environment without any SCORER_* variable (a test states its settings), plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}, **extra}


def wait_while_progressing(
    done: Callable[[], bool], progress: Callable[[], int], stall_s: float, what: str, cap_s: float = 3600.0
) -> None:
    """Wait until ``done()``, however long that takes while ``progress()`` keeps growing: fail only when it stood
    still for ``stall_s`` (or, as a last bound, after ``cap_s``).  A slow machine makes the wait longer, not red."""
    start = last_change = time.monotonic()
    last = progress()
    while not done():
        now = time.monotonic()
        current = progress()
        if current != last:
            last, last_change = current, now
        if now - last_change > stall_s:
            raise AssertionError(f"timed out waiting for {what}: no progress for {stall_s:.0f}s (at {current})")
        if now - start > cap_s:
            raise AssertionError(f"timed out waiting for {what}: still progressing after {cap_s:.0f}s (at {current})")
        time.sleep(0.2)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc``'s whole process group (started with ``start_new_session=True``): supervisor and workers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(60)


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, detail: Callable[[], str] | None = None) -> None:
    """Until ``check()`` holds; fails saying what it waited for (and ``detail()``, e.g. a log tail)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}" + (f":\n{detail()}" if detail else ""))


def start_worker_cli(
    bootstrap: str, topics: tuple[str, str, str], model_dir: Path, log: Path, *flags: str
) -> tuple[subprocess.Popen[bytes], int]:
    """``scorer worker`` on (input, output, dead-letter) topics with its own metrics port; waits for /readyz.
    One process unless ``flags`` say ``--processes``."""
    in_topic, out_topic, dlq_topic = topics
    if "--processes" not in flags:
        flags = ("--processes", "1", *flags)
    port = _free_port()
    proc = subprocess.Popen(
        [
            SCORER,
            "worker",
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
            *flags,
        ],
        env=user_env(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: http_status(port, "/readyz") == 200 or proc.poll() is not None, 600, "worker ready")
    assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
    return proc, port


def _free_port() -> int:
    from stream_worker.tools.broker import free_port

    return free_port()
