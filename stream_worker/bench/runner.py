"""``scorer bench``: one command, one run, every variant measured side by side on the same machine and texts.

Variants (each round runs them all, interleaved, so machine noise hits all alike; the median round is reported):

* GEMM ceilings (fp32, bf16) of this machine, measured in the same run;
* the model alone (``serving_default`` on the worker's own length-sorted batches): fp32 and bf16, one process with
  all threads, and N processes with one thread each started together;
* end to end through a broker (embedded tansu, or ``--bootstrap-servers``): ``scorer worker --processes 1
  --precision fp32`` (the baseline), ``scorer worker`` with default settings, a pool of one process per core, and
  the per-message peer (poll one, score one, produce one);
* p50/p99 end-to-end latency of the default settings at 25/50/90% of their measured capacity (open-loop, paced);
* peak RSS per worker process and cold start to ready.

Text mixes: ``short`` (Rotten Tomatoes snippets) and ``long`` (pseudo-documents of 30 snippets, ~600 words).
The report (Markdown + PNG) goes to ``reports/benchmarks/`` with date, commit, CPU model and flags.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from .bench_child import peak_rss_mb
from .broker import TansuBroker, free_port
from .demo import load_reviews
from .settings import Settings

console = Console(stderr=True)


@dataclass
class Options:
    model_dir: Path
    output_dir: Path
    quick: bool = False
    rounds: int = 2
    bootstrap_servers: str | None = None
    short_texts: int = 1024
    long_texts: int = 96
    peer_texts: int = 128
    latency_seconds: float = 15.0
    http_requests: int = 1024


@dataclass
class Run:
    variant: str
    mix: str
    texts_per_s: list[float] = field(default_factory=list)
    tokens_per_s: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def median(self) -> float:
        return statistics.median(self.texts_per_s) if self.texts_per_s else 0.0

    def median_tokens(self) -> float:
        return statistics.median(self.tokens_per_s) if self.tokens_per_s else 0.0


def machine() -> dict[str, str]:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    wanted = [f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma")]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "flags": " ".join(sorted(wanted)),
        "commit": commit.stdout.strip() or "?",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def text_mixes(opts: Options) -> dict[str, list[str]]:
    snippets = load_reviews(opts.short_texts + opts.long_texts * 30, seed=11)
    short = snippets[: opts.short_texts]
    rest = snippets[opts.short_texts :]
    long = [" ".join(rest[i * 30 : (i + 1) * 30]) for i in range(opts.long_texts)]
    return {"short": short, "long": long}


def real_tokens(model_dir: Path, texts: list[str]) -> int:
    """WordPiece tokens (+2 per window) of the texts, with the model's own vocabulary when it ships one."""
    from .model_repo import versions

    vocab = next((p for v in versions(model_dir) for p in v.path.glob("assets/*vocab*.txt")), None)
    if vocab is None:
        return sum(len(t.encode()) // 4 + 3 for t in texts)
    import tensorflow_text as tf_text

    tokenizer = tf_text.BertTokenizer(str(vocab), lower_case=True)
    counts = tokenizer.tokenize(texts).merge_dims(-2, -1).row_lengths().numpy()
    return int(sum(int(c) + 2 for c in counts))


def model_cost(model_dir: Path) -> dict[str, Any]:
    """Forward-pass cost per real token, read from the served model's own weights (not assumed).

    Each weight matrix of a layer that every token passes through costs one multiply-add (2 FLOP) per token, so
    the cost is 2 x the number of such weights.  Lookup tables are not layers: a variable named like an
    embedding, or a matrix with far more rows than columns (a vocabulary), is left out.  Attention's own score and
    context products (4 x window x hidden per layer) add a few per cent at 64-token windows and are not counted.
    Returns ``{"mflop_per_token", "matrices", "hidden_sizes"}``.
    """
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    from .model_repo import is_complete, versions

    served = next((v for v in versions(model_dir) if is_complete(v.path)), None)  # the newest, as the worker does
    if served is None:
        return {"mflop_per_token": 0.0, "matrices": 0, "hidden_sizes": []}
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((served.path / "saved_model.pb").read_bytes())
    floats = {types_pb2.DT_FLOAT, types_pb2.DT_HALF, types_pb2.DT_BFLOAT16, types_pb2.DT_DOUBLE}
    weights, matrices, widths = 0, 0, set()
    for node in proto.meta_graphs[0].object_graph_def.nodes:  # every variable the SavedModel holds, by name
        if node.WhichOneof("kind") != "variable":
            continue
        var = node.variable
        shape = [d.size for d in var.shape.dim]
        if len(shape) != 2 or var.dtype not in floats or "embedding" in var.name.lower():
            continue
        rows, cols = shape
        if rows > 8 * cols:
            continue
        weights += rows * cols
        matrices += 1
        widths.add(rows)
    return {"mflop_per_token": 2 * weights / 1e6, "matrices": matrices, "hidden_sizes": sorted(widths)}


# --- model alone -------------------------------------------------------------------------------------------
def _child(args: list[str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stream_worker.bench_child", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def model_alone(opts: Options, texts: list[str], precision: str, processes: int, threads: int) -> dict[str, Any]:
    cfg = _settings(opts.model_dir)
    config = json.dumps(
        {
            "max_batch_size": cfg.max_batch_size,
            "token_budget": cfg.token_budget,
            "sort_window": cfg.sort_window,
            "max_sequence_tokens": cfg.max_sequence_tokens,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        parts = [texts[i::processes] for i in range(processes)]
        procs = []
        for n, part in enumerate(parts):
            path = Path(tmp) / f"texts-{n}.json"
            path.write_text(json.dumps(part))
            procs.append(
                _child(
                    [
                        "model",
                        "--model-dir",
                        str(opts.model_dir),
                        "--texts",
                        str(path),
                        "--precision",
                        precision,
                        "--threads",
                        str(threads),
                        "--config",
                        config,
                    ]
                )
            )
        for proc in procs:  # wait until every process is loaded and warm, then start them together
            assert proc.stderr is not None
            while (line := proc.stderr.readline()) and line.strip() != "ready":
                pass
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=1800)
            if proc.returncode != 0:
                raise RuntimeError(f"bench child failed: {err[-2000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    seconds = max(r["seconds"] for r in results)
    return {
        "texts_per_s": len(texts) / seconds,
        "max_batch_s": max(r["max_batch_s"] for r in results),
        "precision": results[0]["precision"],
        "rss_mb": max(r["rss_mb"] for r in results),
    }


# --- end to end through a broker ---------------------------------------------------------------------------
def _topics(bootstrap: str, partitions: int = 4) -> tuple[str, str, str]:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    names = tuple(f"bench-{uuid.uuid4().hex[:10]}-{s}" for s in ("in", "out", "dlq"))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result(30)
    return names[0], names[1], names[2]


def _publish(bootstrap: str, topic: str, texts: list[str], rate: float = 0.0, prefix: str = "") -> None:
    """Publish texts (Avro) as fast as possible, or paced at ``rate`` messages/s (open loop)."""
    from confluent_kafka import Producer

    from .avro import INPUT_SCHEMA, AvroEncoder, load_schema

    encode = AvroEncoder(load_schema(INPUT_SCHEMA))
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
                for msg in consumer.consume(500, 0.02):
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
        self.in_topic, self.out_topic, self.dlq = _topics(bootstrap)
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
        while _scrape(self.port, "scorer_assigned_partitions") < 4:
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
        _publish(self.bootstrap, self.in_topic, texts, prefix=tag)
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

    from .avro import INPUT_SCHEMA, AvroEncoder, load_schema

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
    in_topic, out_topic, _ = _topics(bootstrap)
    _publish(bootstrap, in_topic, texts)
    proc = _child(
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
                "stream_worker.bench_child",
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


def _scrape(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def pii_cost_us(texts: list[str], policy: str = "flag") -> float:
    """Mean microseconds per text of the anonymization guard (default policy) on the benchmark's texts."""
    from .pii import PiiScanner, apply_policy

    scanner = PiiScanner()
    apply_policy(texts[0], "flag", scanner)  # first call loads lazy data
    started = time.perf_counter()
    for _ in range(3):
        for text in texts:
            apply_policy(text, policy, scanner)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / (3 * len(texts)) * 1e6


def run_bench(opts: Options) -> Path:
    """Run every variant, write the report, return its path."""
    from .bench_report import write_report

    info = machine()
    console.print(f"[bold]scorer bench[/] on {info['cpu']} ({info['cores']} cores; {info['flags']})")
    mixes = text_mixes(opts)
    tokens = {mix: real_tokens(opts.model_dir, texts) for mix, texts in mixes.items()}
    cores = os.cpu_count() or 1
    model_variants = [
        (f"model alone, fp32, 1 process x {cores} threads", "fp32", 1, cores),
        (f"model alone, bf16, 1 process x {cores} threads", "bf16", 1, cores),
        (f"model alone, fp32, {cores} processes x 1 thread", "fp32", cores, 1),
        (f"model alone, bf16, {cores} processes x 1 thread", "bf16", cores, 1),
    ]
    e2e_variants = [
        (BASELINE, ["--processes", "1", "--precision", "fp32"]),
        (DEFAULT, []),
        ("scorer worker --processes 1, precision auto", ["--processes", "1"]),
    ]
    if opts.quick:  # the smoke run: every code path once (both precisions, both layouts), not every combination
        model_variants = [model_variants[0], model_variants[3]]
        e2e_variants = e2e_variants[:2]
    runs: dict[tuple[str, str], Run] = {}
    extra: dict[str, Any] = {"cold_start_s": {}, "rss_mb": {}, "max_batch_s": {}, "gemm": [], "latency": {}, "http": {}}
    extra["cost"] = model_cost(opts.model_dir)

    def record(variant: str, mix: str, texts_per_s: float) -> None:
        run = runs.setdefault((variant, mix), Run(variant, mix))
        run.texts_per_s.append(texts_per_s)
        run.tokens_per_s.append(texts_per_s * tokens[mix] / len(mixes[mix]))

    total = opts.rounds * (len(model_variants) * len(mixes) + len(e2e_variants) + 1) + 2 + 3 + 2
    log_dir = Path(tempfile.mkdtemp(prefix="scorer-bench-"))
    broker: Any = TansuBroker() if opts.bootstrap_servers is None else _External(opts.bootstrap_servers)
    with broker, Progress(console=console) as progress:
        bootstrap = broker.bootstrap_servers
        task = progress.add_task("measuring", total=total)

        def step(what: str) -> None:
            progress.update(task, advance=1, description=what)

        extra["gemm"].append(_gemm(cores))
        step("GEMM ceilings")
        for round_no in range(opts.rounds):
            for name, precision, procs, threads in model_variants:
                for mix, texts in mixes.items():
                    result = model_alone(opts, texts, precision, procs, threads)
                    record(name, mix, result["texts_per_s"])
                    extra["max_batch_s"][name] = result["max_batch_s"]
                    step(f"round {round_no + 1}: {name} [{mix}]")
            for name, flags in e2e_variants:
                worker = WorkerUnderTest(opts, bootstrap, flags, log_dir)
                try:
                    for mix, texts in mixes.items():
                        record(name, mix, worker.throughput(texts, f"{mix}{round_no}-"))
                    extra["cold_start_s"].setdefault(name, []).append(worker.cold_start_s)
                    extra["rss_mb"][name] = worker.rss_mb()
                    extra["max_batch_s"][name] = _scrape(worker.port, "scorer_warmup_seconds")
                finally:
                    worker.stop()
                step(f"round {round_no + 1}: {name}")
            record(PEER, "short", per_message_peer(opts, bootstrap, mixes["short"][: opts.peer_texts]))
            step(f"round {round_no + 1}: per-message peer")
        for naive in (False, True):
            name = NAIVE if naive else SERVE
            http = HttpUnderTest(opts, naive)
            try:
                for concurrency in (1, 8, 64):
                    count = max(concurrency * 4, opts.http_requests // (4 if concurrency == 1 else 1))
                    extra["http"][(name, concurrency)] = closed_loop(http.url, mixes["short"], concurrency, count)
            finally:
                http.stop()
            step(f"{name}: closed-loop clients 1/8/64")
        capacity = runs[(DEFAULT, "short")].median()
        worker = WorkerUnderTest(opts, bootstrap, [], log_dir)
        try:
            for fraction in (0.25, 0.5, 0.9):
                p50, p99 = latency_at(worker, mixes["short"], capacity * fraction, opts.latency_seconds)
                extra["latency"][fraction] = (capacity * fraction, p50, p99)
                step(f"latency at {fraction:.0%} of capacity")
        finally:
            worker.stop()
        if not opts.quick:  # the ceilings drift with the machine's other load: measured at both ends
            extra["gemm"].append(_gemm(cores))
        step("GEMM ceilings again")
        extra["pii_us"] = {mix: pii_cost_us(texts) for mix, texts in mixes.items()}
    settings = _settings(opts.model_dir)
    return write_report(opts, info, runs, extra, tokens, {m: len(t) for m, t in mixes.items()}, settings)


BASELINE = "scorer worker x1 fp32 (baseline)"
DEFAULT = "scorer worker, default settings"
PEER = "per-message scorer (poll one, score one, produce one)"
SERVE = "scorer serve (default settings)"
NAIVE = "naive HTTP server (one model call per request)"


def _gemm(threads: int) -> dict[str, float]:
    proc = _child(["gemm", "--threads", str(threads)])
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"gemm child failed: {err[-2000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


class _External:
    """A cluster given by --bootstrap-servers (nothing to start or stop)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap_servers = bootstrap

    def __enter__(self) -> _External:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _settings(model_dir: Path) -> Settings:
    """The worker's defaults (the batching the model-alone variants copy)."""
    given: dict[str, Any] = {"model_dir": model_dir}
    return Settings(**given)
