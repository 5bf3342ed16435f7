"""The host's probes as an orchestrator uses them: ``/healthz`` and ``/readyz`` of ``scorer worker`` answer within a
one-second probe timeout from the moment the port is bound, while the worker process imports TensorFlow and loads
its model (the supervisor serves them, see ``stream_worker/pool.py``); clients that hang up mid-answer leave no
trace but JSON lines in the log.

The broker plays no part in what is checked here, so only Apache Kafka runs it.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import new_topic
from tests.harness import SCORER, _free_port, user_env, wait_for

pytestmark = pytest.mark.integration

PROBE_TIMEOUT_S = 1.0  # what a Kubernetes probe with timeoutSeconds: 1 allows


@dataclass
class Probe:
    path: str
    status: int  # 0: no answer within the probe timeout
    error: str = ""


@dataclass
class StartedWorker:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    probes: list[Probe] = field(default_factory=list)


def probe(port: int, path: str) -> Probe:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=PROBE_TIMEOUT_S) as resp:
            return Probe(path, resp.status)
    except urllib.error.HTTPError as exc:
        return Probe(path, exc.code)
    except OSError as exc:
        return Probe(path, 0, f"{type(exc).__name__}: {exc}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def started_worker(
    kafka_broker: Any, toy_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartedWorker]:
    """``scorer worker --processes 1``, probed every 0.2 s from the moment its port accepts until it is ready."""
    bootstrap = kafka_broker.bootstrap_servers
    in_topic, out_topic, dlq_topic = (new_topic(kafka_broker) for _ in range(3))
    log = tmp_path_factory.mktemp("probes") / "worker.log"
    port = _free_port()
    args = [
        SCORER, "worker", "--processes", "1", "--bootstrap-servers", bootstrap,
        "--input-topic", in_topic, "--output-topic", out_topic, "--dead-letter-topic", dlq_topic,
        "--group-id", f"g-{in_topic}", "--model-dir", str(toy_model_dir), "--metrics-port", str(port),
        "--session-timeout-ms", "6000",
    ]  # fmt: skip
    proc = subprocess.Popen(args, env=user_env(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    worker = StartedWorker(proc, port, log)
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 300, "the worker's metrics port to accept")
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]

        def probe_both() -> bool:
            worker.probes += [probe(port, "/healthz"), probe(port, "/readyz")]
            return worker.probes[-1].status == 200 or proc.poll() is not None

        wait_for(probe_both, 600, "the worker to become ready while probing /healthz and /readyz")
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        yield worker
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(180)


def test_probes_answer_within_a_second_during_start_up(started_worker: StartedWorker) -> None:
    probes = started_worker.probes
    unanswered = [p for p in probes if p.status == 0]
    assert not unanswered, f"{len(unanswered)} of {len(probes)} probes got no answer within 1 s: {unanswered[:5]}"
    assert {p.status for p in probes if p.path == "/healthz"} == {200}, probes
    starting = [p for p in probes if p.path == "/readyz" and p.status == 503]
    assert starting, "no probe landed before the worker was ready: start-up was not observed"
    print(f"\n{len(probes)} probes during start-up, {len(starting)} x /readyz 503 before ready; all answered in 1 s")


def _hang_up(port: int, request: bytes, reset: bool) -> None:
    """Send ``request`` and close at once, without reading (an abortive close with RST when ``reset``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(request)


def test_clients_that_hang_up_leave_only_json_lines(started_worker: StartedWorker) -> None:
    port, log = started_worker.port, started_worker.log
    for i in range(60):
        path = ("/metrics", "/readyz", "/healthz")[i % 3]
        whole = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        request = whole[:5] if i % 4 == 3 else whole  # every fourth hangs up in the middle of the request line
        _hang_up(port, request, reset=i % 2 == 0)
    # The server is still fine, and stops cleanly.
    wait_for(lambda: probe(port, "/healthz").status == 200, 60, "/healthz to answer after the hang-ups")
    proc = started_worker.proc
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(180) == 0
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    raw = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            raw.append(line)
    assert not raw, "non-JSON lines in the worker log:\n" + "\n".join(raw[:20])
    assert len(lines) > 3
