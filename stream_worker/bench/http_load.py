"""The HTTP side of ``scorer bench``: ``scorer serve`` or the naive one-call-per-request server under test, and
closed-loop clients."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from stream_worker.bench.variants import Options
from stream_worker.tools.broker import free_port


def closed_loop(url: str, texts: list[str], concurrency: int, requests_total: int) -> tuple[float, float, float]:
    """``concurrency`` clients, each sending one text per request and waiting for the answer, until
    ``requests_total`` answers; returns (requests/s, p50 s, p99 s)."""
    import threading

    import httpx

    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests_total))

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            for i in counter:
                t0 = time.perf_counter()
                r = http.post(f"{url}/v1/models/sentiment:predict", json={"instances": [texts[i % len(texts)]]})
                r.raise_for_status()
                with lock:
                    latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return len(latencies) / elapsed, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


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
