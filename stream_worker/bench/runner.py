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
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from stream_worker.bench.child import spawn
from stream_worker.bench.http_load import HttpUnderTest, closed_loop, paced
from stream_worker.bench.kafka_load import WorkerUnderTest, latency_at, per_message_peer, scrape
from stream_worker.bench.variants import BASELINE, DEFAULT, FIXED_WINDOW, NAIVE, PEER, REGISTRY, SERVE, Options, Run
from stream_worker.common.settings import Settings
from stream_worker.tools.broker import TansuBroker
from stream_worker.tools.demo import load_reviews

console = Console(stderr=True)


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
    from stream_worker.engine.model_repo import versions

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

    from stream_worker.engine.model_repo import is_complete, versions

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
                spawn(
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
        "one_text_s": min(r["one_text_s"] for r in results),
    }


def pii_cost_us(texts: list[str], policy: str = "flag") -> float:
    """Mean microseconds per text of the anonymization guard (default policy) on the benchmark's texts."""
    from stream_worker.pipeline.pii import PiiScanner, apply_policy

    scanner = PiiScanner()
    apply_policy(texts[0], "flag", scanner)  # first call loads lazy data
    started = time.perf_counter()
    for _ in range(3):
        for text in texts:
            apply_policy(text, policy, scanner)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / (3 * len(texts)) * 1e6


def run_bench(opts: Options) -> Path:
    """Run every variant, write the report, return its path."""
    from stream_worker.bench.report import write_report

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
        (FIXED_WINDOW, ["--max-wait-ms", "25"]),
        ("scorer worker --processes 1, precision auto", ["--processes", "1"]),
    ]
    if opts.schema_registry_url:
        e2e_variants.append((REGISTRY, ["--schema-registry-url", opts.schema_registry_url]))
    fractions: tuple[float, ...] = (0.25, 0.5, 0.9)  # paced loads, as fractions of the measured capacity
    if opts.quick:  # the smoke run: every code path once (both precisions, both layouts), not every combination;
        # the baseline worker differs from the default only in flags
        model_variants = [model_variants[0], model_variants[3]]
        e2e_variants = [v for v in e2e_variants if v[0] in (DEFAULT, REGISTRY)]  # one worker code path each
        fractions = (0.5,)
    runs: dict[tuple[str, str], Run] = {}
    extra: dict[str, Any] = {"cold_start_s": {}, "rss_mb": {}, "max_batch_s": {}, "gemm": [], "latency": {}, "http": {}}
    extra["one_text_s"] = []
    extra["http_paced"] = {}
    extra["broker"] = "Apache Kafka (--bootstrap-servers)" if opts.bootstrap_servers else "embedded tansu"
    extra["cost"] = model_cost(opts.model_dir)

    def record(variant: str, mix: str, texts_per_s: float) -> None:
        run = runs.setdefault((variant, mix), Run(variant, mix))
        run.texts_per_s.append(texts_per_s)
        run.tokens_per_s.append(texts_per_s * tokens[mix] / len(mixes[mix]))

    # The model-alone cells of a round; the smoke run measures the N-process layout on the short mix only.
    model_cells = [
        (variant, mix)
        for variant in model_variants
        for mix in mixes
        if not (opts.quick and variant[2] > 1 and mix == "long")
    ]
    total = opts.rounds * (len(model_cells) + len(e2e_variants) + 1) + 2 + len(fractions) + 2
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
            for (name, precision, procs, threads), mix in model_cells:
                result = model_alone(opts, mixes[mix], precision, procs, threads)
                record(name, mix, result["texts_per_s"])
                if mix == "short":
                    extra["one_text_s"].append(result["one_text_s"])
                extra["max_batch_s"][name] = result["max_batch_s"]
                step(f"round {round_no + 1}: {name} [{mix}]")
            for name, flags in e2e_variants:
                worker = WorkerUnderTest(opts, bootstrap, flags, log_dir)
                try:
                    for mix, texts in mixes.items():
                        record(name, mix, worker.throughput(texts, f"{mix}{round_no}-"))
                    extra["cold_start_s"].setdefault(name, []).append(worker.cold_start_s)
                    extra["rss_mb"][name] = worker.rss_mb()
                    extra["max_batch_s"][name] = scrape(worker.port, "scorer_warmup_seconds")
                    if name == DEFAULT and round_no == opts.rounds - 1:  # warm already: no second cold start
                        capacity = runs[(DEFAULT, "short")].median()
                        extra["latency"] = _latencies(worker, mixes["short"], capacity, fractions, opts, step)
                finally:
                    worker.stop()
                step(f"round {round_no + 1}: {name}")
            record(PEER, "short", per_message_peer(opts, bootstrap, mixes["short"][: opts.peer_texts]))
            step(f"round {round_no + 1}: per-message peer")
        one_text = sorted(mixes["short"], key=len)[len(mixes["short"]) // 2]  # a median-length snippet
        for naive in (False, True):
            name = NAIVE if naive else SERVE
            http = HttpUnderTest(opts, naive)
            try:
                for concurrency in (1, 8, 64):
                    count = max(concurrency * 4, opts.http_requests // (4 if concurrency == 1 else 1))
                    extra["http"][(name, concurrency)] = closed_loop(http.url, one_text, concurrency, count)
                capacity_http = extra["http"][(name, 64)][0]
                for fraction in fractions:
                    rate = capacity_http * fraction
                    measured = paced(http.url, one_text, rate, opts.latency_seconds)
                    extra["http_paced"][(name, fraction)] = (rate, *measured)
            finally:
                http.stop()
            step(f"{name}: closed-loop clients 1/8/64")
        if not opts.quick:  # the ceilings drift with the machine's other load: measured at both ends
            extra["gemm"].append(_gemm(cores))
        step("GEMM ceilings again")
        extra["pii_us"] = {mix: pii_cost_us(texts) for mix, texts in mixes.items()}
    settings = _settings(opts.model_dir)
    return write_report(opts, info, runs, extra, tokens, {m: len(t) for m, t in mixes.items()}, settings)


def _latencies(
    worker: WorkerUnderTest, texts: list[str], capacity: float, fractions: tuple[float, ...], opts: Options, step: Any
) -> dict[float, tuple[float, float, float]]:
    """Paced end-to-end latency of a running worker: one message at a time at 5/s (far below capacity, the
    one-client figure, keyed 0.0), then each fraction of the measured capacity.  Values: (rate, p50, p99)."""
    found: dict[float, tuple[float, float, float]] = {}
    p50, p99 = latency_at(worker, texts, 5.0, opts.latency_seconds)
    found[0.0] = (5.0, p50, p99)
    for fraction in fractions:
        p50, p99 = latency_at(worker, texts, capacity * fraction, opts.latency_seconds)
        found[fraction] = (capacity * fraction, p50, p99)
        step(f"latency at {fraction:.0%} of capacity")
    return found


def _gemm(threads: int) -> dict[str, float]:
    proc = spawn(["gemm", "--threads", str(threads)])
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
