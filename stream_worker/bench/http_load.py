"""The HTTP side of ``scorer bench``: ``scorer serve`` or the naive one-call-per-request server under test, driven
by compiled load generators: ``hey`` in closed loop (N clients), ``vegeta`` in open loop (a fixed rate)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from stream_worker.bench.variants import Options
from stream_worker.tools.broker import free_port

# Compiled load generators, in processes of their own, so the clients do not take the measured server's CPU the way
# Python client threads would.  Closed loop (N clients, each waits for its answer): hey, one static binary from
# Debian that writes one CSV row per request (the bench computes its own percentiles).  Open loop (a fixed rate,
# whatever the answers do): vegeta, built from the Go module proxy (hey's per-client rate cap sends synchronised
# bursts, not a steady rate).

def closed_loop(url: str, text: str, concurrency: int, requests_total: int) -> tuple[float, float, float]:
    """``concurrency`` hey clients, each sending one text per request (TF Serving ``:predict``) and waiting for the
    answer, until ``requests_total`` answers; returns (requests/s, p50 s, p99 s)."""
    return _hey(url, text, ["-n", str(max(requests_total, concurrency)), "-c", str(concurrency)])


def paced(url: str, text: str, rate: float, seconds: float) -> tuple[float, float, float]:
    """An open loop at ``rate`` requests/s for ``seconds`` (vegeta: requests leave on schedule whether or not earlier
    ones were answered, so a slow server's queueing shows in the percentiles); returns (requests/s answered, p50 s,
    p99 s)."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.json"
        body.write_text(json.dumps({"instances": [text]}))
        target = f"POST {url}/v1/models/sentiment:predict\nContent-Type: application/json\n@{body}\n"
        attack = subprocess.run(
            [_tool("vegeta"), "attack", f"-rate={max(1, round(rate * 10))}/10s", f"-duration={seconds:.0f}s",
             "-timeout=120s"],
            input=target.encode(), capture_output=True, timeout=seconds + 600, check=False,
        )  # fmt: skip
        if attack.returncode != 0:
            raise RuntimeError(f"vegeta attack failed: {attack.stderr.decode(errors='replace')[-1000:]}")
        report = subprocess.run(
            [_tool("vegeta"), "report", "-type=json"], input=attack.stdout, capture_output=True, timeout=120, check=True
        )
    data = json.loads(report.stdout)
    if data.get("success", 0) < 1.0:
        raise RuntimeError(f"vegeta: {data.get('status_codes')} ({data.get('errors', [])[:3]})")
    latencies = data["latencies"]
    return float(data["throughput"]), latencies["50th"] / 1e9, latencies["99th"] / 1e9


def _tool(name: str) -> str:
    """A load generator beside this Python (scripts/setup_worker_env.sh puts vegeta there) or on PATH."""
    import shutil

    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"scorer bench needs the '{name}' load generator (see scripts/setup_worker_env.sh)")
    return found


def _hey(url: str, text: str, load: list[str]) -> tuple[float, float, float]:
    import csv
    import json
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as body:
        json.dump({"instances": [text]}, body)
    try:
        done = subprocess.run(
            [_tool("hey"), *load, "-m", "POST", "-T", "application/json", "-D", body.name, "-t", "120",
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
