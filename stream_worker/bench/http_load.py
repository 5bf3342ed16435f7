"""The HTTP side of ``scorer bench``: ``scorer serve`` or the naive one-call-per-request server under test, driven
by a compiled load generator (``hey``) in closed loop (N clients) or paced."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from stream_worker.bench.variants import Options
from stream_worker.tools.broker import free_port

HEY = "hey"  # github.com/rakyll/hey, compiled Go, from Debian (apt-get install hey): see load_generator()


def load_generator() -> str:
    """The compiled HTTP load generator the bench drives servers with, so its clients do not take the measured
    server's CPU the way Python client threads would.  ``hey`` because it installs from Debian as one static
    binary, runs closed-loop clients (``-c``) with a per-client rate cap (``-q``) and writes one CSV row per
    request (``-o csv``), from which the bench computes its own percentiles."""
    import shutil

    found = shutil.which(HEY)
    if found is None:
        raise RuntimeError("scorer bench needs the 'hey' HTTP load generator on PATH (Debian: apt-get install hey)")
    return found


def closed_loop(url: str, text: str, concurrency: int, requests_total: int) -> tuple[float, float, float]:
    """``concurrency`` hey clients, each sending one text per request (TF Serving ``:predict``) and waiting for the
    answer, until ``requests_total`` answers; returns (requests/s, p50 s, p99 s)."""
    return _hey(url, text, ["-n", str(max(requests_total, concurrency)), "-c", str(concurrency)])


def paced(url: str, text: str, rate: float, seconds: float, clients: int = 64) -> tuple[float, float, float]:
    """About ``rate`` requests/s for ``seconds``: ``clients`` hey clients each capped at rate/clients per second
    (an approximation of an open loop: a client whose answer is late sends its next request late)."""
    per_client = max(rate / clients, 0.01)
    return _hey(url, text, ["-z", f"{seconds:.0f}s", "-c", str(clients), "-q", f"{per_client:.3f}"])


def _hey(url: str, text: str, load: list[str]) -> tuple[float, float, float]:
    import csv
    import json
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as body:
        json.dump({"instances": [text]}, body)
    try:
        done = subprocess.run(
            [load_generator(), *load, "-m", "POST", "-T", "application/json", "-D", body.name, "-t", "120",
             "-o", "csv", f"{url}/v1/models/sentiment:predict"],
            capture_output=True, text=True, timeout=3600, check=False,
        )  # fmt: skip
    finally:
        os.unlink(body.name)
    if done.returncode != 0:
        raise RuntimeError(f"hey failed: {done.stderr[-1000:]}")
    rows = list(csv.DictReader(done.stdout.splitlines()))
    ok = [r for r in rows if r.get("status-code") == "200"]
    if not ok or len(ok) < len(rows):
        raise RuntimeError(f"{len(rows) - len(ok)} of {len(rows)} requests failed")
    latencies = sorted(float(r["response-time"]) for r in ok)
    elapsed = max(float(r["offset"]) + float(r["response-time"]) for r in ok)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(ok) / elapsed, latencies[len(latencies) // 2], p99


class HttpUnderTest:
    """``scorer serve`` (default settings) or the naive per-request server, started and waited for."""

    def __init__(self, opts: Options, naive: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
        if naive:
            command = [
                sys.executable,
                "-m",
                "stream_worker.bench.child",
                "naive-serve",
                "--model-dir",
                str(opts.model_dir),
                "--port",
                str(self.port),
            ]
        else:
            command = [
                str(Path(sys.executable).parent / "scorer"),
                "serve",
                "--model-dir",
                str(opts.model_dir),
                "--port",
                str(self.port),
            ]
        self.proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("HTTP server under test did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
