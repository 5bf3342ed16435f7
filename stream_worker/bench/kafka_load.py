"""The Kafka side of ``scorer bench``: topics and publishing, a collector of scores, a ``scorer worker`` console
script under test (cold start, RSS, throughput), paced latency, and the per-message peer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from stream_worker.bench.child import peak_rss_mb, spawn
from stream_worker.bench.variants import Options
from stream_worker.tools.broker import free_port


# --- end to end through a broker ---------------------------------------------------------------------------
def new_topics(bootstrap: str, partitions: int = 4) -> tuple[str, str, str]:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    names = tuple(f"bench-{uuid.uuid4().hex[:10]}-{s}" for s in ("in", "out", "dlq"))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result(30)
    return names[0], names[1], names[2]


def _publish(
    bootstrap: str, topic: str, texts: list[str], rate: float = 0.0, prefix: str = "", registry_url: str | None = None
) -> None:
    """Publish texts (Avro; registry-framed with a registry URL) as fast as possible, or paced at ``rate``
    messages/s (open loop)."""
    from confluent_kafka import Producer

    from stream_worker.common.registry_settings import RegistrySettings
    from stream_worker.tools.client import input_encoder

    given: dict[str, Any] = {"schema_registry_url": registry_url}
    registry = RegistrySettings(**given) if registry_url else None
    encode = input_encoder(topic, registry)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2 if rate else 20, "compression.type": "lz4"})
    started = time.perf_counter()
    for i, text in enumerate(texts):
        if rate:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        key = f"{prefix}{i}".encode()
        producer.produce(
            topic, key=key, value=encode({"id": str(i), "text": text, "produced_at": int(time.time() * 1000)})
        )
        producer.poll(0)
    producer.flush(60)


class Collector:
    """A reader of the output topic in a thread: key -> receive time.  It starts once it owns partitions (a first
    group join can take seconds, which must not count as the worker's time)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        import threading

        self.received: dict[bytes, float] = {}
        self.assigned = threading.Event()
        self._stop = threading.Event()
        self._args = (bootstrap, topic)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.assigned.wait(60):
            raise RuntimeError("the benchmark's reader got no partitions in 60 s")

    def _run(self) -> None:
        from confluent_kafka import Consumer

        from stream_worker.pipeline.consume import fetch

        bootstrap, topic = self._args
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "fetch.wait.max.ms": 10,  # the measuring reader must not add its own fetch wait to latencies
            }
        )
        consumer.subscribe([topic], on_assign=lambda _c, parts: self.assigned.set() if parts else None)
        try:
            while not self._stop.is_set():
                # The worker's own fetch: returns with the first message (a consume(N, t) call would hold what
                # arrived until N messages or t passed, and add that to every latency).
                for msg in fetch(consumer, 500, 0.05):
                    key = msg.key() or b""
                    if not msg.error() and key not in self.received:
                        self.received[key] = time.time()
        finally:
            consumer.close()

    def wait_for(self, keys: list[bytes], timeout_s: float) -> int:
        """Wait until every key was received (or the timeout); returns how many were."""
        deadline = time.monotonic() + timeout_s
        missing = [k for k in keys if k not in self.received]
        while missing and time.monotonic() < deadline:
            time.sleep(0.005)
            missing = [k for k in missing if k not in self.received]
        return len(keys) - len(missing)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)


class WorkerUnderTest:
    """``scorer worker`` as an operator starts it, on fresh topics; cold start and peak RSS measured."""

    def __init__(self, opts: Options, bootstrap: str, flags: list[str], log_dir: Path) -> None:
        self.bootstrap = bootstrap
        flag = "--schema-registry-url"
        self.registry_url = flags[flags.index(flag) + 1] if flag in flags else None
        self.in_topic, self.out_topic, self.dlq = new_topics(bootstrap)
        self.port = free_port()
        command = [
            str(Path(sys.executable).parent / "scorer"),
            "worker",
            "--bootstrap-servers",
            bootstrap,
            "--input-topic",
            self.in_topic,
            "--output-topic",
            self.out_topic,
            "--dead-letter-topic",
            self.dlq,
            "--group-id",
            f"g-{self.in_topic}",
            "--model-dir",
            str(opts.model_dir),
            "--metrics-port",
            str(self.port),
            "--session-timeout-ms",
            "6000",
            *flags,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            command, env=env, stdout=(log_dir / f"{self.in_topic}.log").open("wb"), stderr=subprocess.STDOUT
        )
        while not self._ready():
            if self.proc.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError(f"worker did not start; see {log_dir}")
            time.sleep(0.1)
        self.cold_start_s = time.perf_counter() - started
        # Ready = warmed up and subscribed; the first group join may take a few seconds more (tansu: about half the
        # session timeout).  Measurements start once every input partition is owned and the reader is assigned.
        while scrape(self.port, "scorer_assigned_partitions") < 4:
            if self.proc.poll() is not None or time.perf_counter() - started > 300:
                raise RuntimeError("the worker got no partitions")
            time.sleep(0.1)
        self.collector = Collector(bootstrap, self.out_topic)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def rss_mb(self) -> list[float]:
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        rss = [peak_rss_mb(p) for p in pids]
        return rss[1:] if len(rss) > 1 else rss

    def throughput(self, texts: list[str], tag: str) -> float:
        """Publish ``texts`` at once and time until the last score is received (texts/s)."""
        started = time.perf_counter()
        _publish(self.bootstrap, self.in_topic, texts, prefix=tag, registry_url=self.registry_url)
        got = self.collector.wait_for([f"{tag}{i}".encode() for i in range(len(texts))], 1800)
        if got < len(texts):
            raise RuntimeError(f"only {got} of {len(texts)} scored")
        return len(texts) / (time.perf_counter() - started)

    def stop(self) -> None:
        self.collector.close()
        self.proc.terminate()
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def latency_at(worker: WorkerUnderTest, texts: list[str], rate: float, seconds: float) -> tuple[float, float]:
    """p50/p99 end-to-end latency (publish → score received) of an open-loop stream paced at ``rate`` msg/s."""
    from confluent_kafka import Producer

    from stream_worker.pipeline.avro import INPUT_SCHEMA, AvroEncoder, load_schema

    count = max(20, int(rate * seconds))
    encode = AvroEncoder(load_schema(INPUT_SCHEMA))
    producer = Producer({"bootstrap.servers": worker.bootstrap, "linger.ms": 0})
    tag = f"lat{uuid.uuid4().hex[:6]}-"
    sent: dict[bytes, float] = {}
    started = time.perf_counter()
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        key = f"{tag}{i}".encode()
        sent[key] = time.time()
        value = encode({"id": key.decode(), "text": texts[i % len(texts)], "produced_at": int(sent[key] * 1000)})
        producer.produce(worker.in_topic, key=key, value=value)
        producer.poll(0)
    producer.flush(60)
    worker.collector.wait_for(list(sent), 600)
    received = worker.collector.received
    latencies = sorted(received[k] - sent[k] for k in sent if k in received)
    if not latencies:
        return float("nan"), float("nan")
    return latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


def per_message_peer(opts: Options, bootstrap: str, texts: list[str]) -> float:
    """Texts/s of the per-message design on the same broker and texts."""
    in_topic, out_topic, _ = new_topics(bootstrap)
    _publish(bootstrap, in_topic, texts)
    proc = spawn(
        [
            "per-message",
            "--model-dir",
            str(opts.model_dir),
            "--bootstrap",
            bootstrap,
            "--input-topic",
            in_topic,
            "--output-topic",
            out_topic,
            "--count",
            str(len(texts)),
        ]
    )
    out, err = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"per-message peer failed: {err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    return float(result["texts"] / result["seconds"])


def scrape(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0
