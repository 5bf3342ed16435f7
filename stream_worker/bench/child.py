"""Measurement processes for ``scorer bench`` (tooling; one process per variant, since TensorFlow's thread count
and precision are set once per process).

Modes (``python -m stream_worker.bench.child MODE ...``; a JSON line with the result goes to stdout):

* ``gemm``: GEMM ceilings, 2048x2048 matrix multiply in fp32 and bf16 (GFLOP/s).
* ``model``: the model alone on the texts in a JSON file, cut into batches exactly as the worker's guard and
  batcher cut them (length-sorted windows); waits for a line on stdin before it starts the clock, so several
  processes can start together.
* ``per-message``: the peer design (Kafka-ML style): poll one message, score it alone, produce its score.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from stream_worker.engine.batch import Batcher
from stream_worker.engine.tf_runtime import tensorflow
from stream_worker.pipeline.decode import TextRecord
from stream_worker.pipeline.guard import Checked, Guard


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def gemm(threads: int) -> dict[str, Any]:
    tf = tensorflow()

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    n = 2048
    out: dict[str, Any] = {}
    for name, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
        a = tf.random.uniform((n, n), dtype=tf.float32)
        a = tf.cast(a, dtype)
        b = tf.cast(tf.random.uniform((n, n), dtype=tf.float32), dtype)
        matmul = tf.function(lambda x, y: tf.matmul(x, y))
        matmul(a, b).numpy()
        reps, started = 0, time.perf_counter()
        while time.perf_counter() - started < 1.5 or reps < 3:
            matmul(a, b).numpy()
            reps += 1
        out[name] = 2 * n**3 * reps / (time.perf_counter() - started) / 1e9
    return out


def plan_batches(
    texts: list[str], guard: Guard, max_batch_size: int, token_budget: int, sort_window: int
) -> list[list[str]]:
    """The batches the worker's own guard and batcher cut from a backlog of ``texts`` (full sort windows)."""
    batcher: Batcher[Checked] = Batcher(max_batch_size, 0, token_budget, sort_window)
    batches: list[list[str]] = []
    for i, text in enumerate(texts):
        batcher.add(guard(TextRecord(str(i), text)))
        if len(batcher) >= batcher.window or i == len(texts) - 1:
            batches += [[c.record.text for c in b] for b in batcher.drain()]
    return batches


def model(model_dir: Path, texts_file: Path, precision: str, threads: int, cfg: dict[str, int]) -> dict[str, Any]:
    from stream_worker.engine.score import Scorer, configure_precision, configure_threads

    configure_threads(threads)
    effective = configure_precision(precision)
    texts = json.loads(texts_file.read_text())
    started = time.perf_counter()
    scorer = Scorer.load(model_dir)
    guard = Guard(1 << 20, *scorer.shape(cfg["max_sequence_tokens"]))
    batches = plan_batches(texts, guard, cfg["max_batch_size"], cfg["token_budget"], cfg["sort_window"])
    for batch in batches[:2]:  # warm up the shapes
        scorer(batch)
    scorer.warm_up(cfg["max_batch_size"], scorer.shape(cfg["max_sequence_tokens"])[0])
    load_s = time.perf_counter() - started
    print("ready", file=sys.stderr, flush=True)
    sys.stdin.readline()  # the parent starts every process of a variant at once
    longest = 0.0
    started = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        scorer(batch)
        longest = max(longest, time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    # The model's own latency for one text (the yardstick of the latency targets): a median-length text alone.
    one = sorted(texts, key=len)[len(texts) // 2]
    times = []
    for _ in range(25):
        t0 = time.perf_counter()
        scorer([one])
        times.append(time.perf_counter() - t0)
    return {
        "one_text_s": sorted(times)[len(times) // 2],
        "texts": len(texts),
        "seconds": elapsed,
        "batches": len(batches),
        "max_batch_s": longest,
        "precision": effective,
        "load_s": load_s,
        "rss_mb": peak_rss_mb(os.getpid()),
    }


def per_message(model_dir: Path, bootstrap: str, in_topic: str, out_topic: str, count: int) -> dict[str, Any]:
    """Poll one, score one, produce one: no batching (the design we compare with)."""
    import fastavro
    from confluent_kafka import Consumer, Producer

    from stream_worker.engine.score import Scorer, configure_precision
    from stream_worker.pipeline.avro import INPUT_SCHEMA, load_schema

    configure_precision("fp32")
    scorer = Scorer.load(model_dir)
    scorer(["warm up"])
    schema = load_schema(INPUT_SCHEMA)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"peer-{in_topic}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    consumer.subscribe([in_topic])
    print("ready", file=sys.stderr, flush=True)
    done, started = 0, None
    deadline = time.monotonic() + 600
    while done < count and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        started = started or time.perf_counter()
        record: Any = fastavro.schemaless_reader(io.BytesIO(msg.value() or b""), schema, None)
        score = float(scorer([record["text"]])[0])
        producer.produce(out_topic, key=msg.key(), value=json.dumps({"id": record["id"], "score": score}).encode())
        producer.poll(0)
        done += 1
    producer.flush(30)
    consumer.close()
    return {"texts": done, "seconds": time.perf_counter() - (started or time.perf_counter())}


def naive_serve(model_dir: Path, port: int) -> None:
    """The design we compare ``scorer serve`` with: a threaded HTTP server that calls the model once per request
    (no batching across requests), answering TF Serving's predict format."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from stream_worker.engine.score import Scorer, configure_precision

    configure_precision("fp32")
    scorer = Scorer.load(model_dir)
    scorer(["warm up"])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the load generator's clients use it
        disable_nagle_algorithm = True  # headers and body are separate writes: Nagle + delayed ACK would add ~40 ms

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            scores = scorer(list(body["instances"]))
            out = json.dumps({"predictions": [{"score": float(s)} for s in scores]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # 64 clients connect at once: the default backlog of 5 would reset some of them
        daemon_threads = True

    server = Server(("127.0.0.1", port), Handler)
    print("ready", file=sys.stderr, flush=True)
    server.serve_forever()


def spawn(args: list[str], **kw: Any) -> subprocess.Popen[str]:
    """Start ``python -m stream_worker.bench.child <args>`` with pipes (the parent talks to it line by line)."""
    return subprocess.Popen(
        [sys.executable, "-m", "stream_worker.bench.child", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process in MiB, 0 when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["gemm", "model", "per-message", "naive-serve"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--texts", type=Path)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--config", default="{}")
    parser.add_argument("--bootstrap")
    parser.add_argument("--input-topic")
    parser.add_argument("--output-topic")
    parser.add_argument("--count", type=int, default=0)
    args = parser.parse_args()
    if args.mode == "gemm":
        _emit(gemm(args.threads))
    elif args.mode == "model":
        _emit(model(args.model_dir, args.texts, args.precision, args.threads, json.loads(args.config)))
    elif args.mode == "naive-serve":
        naive_serve(args.model_dir, args.port)
    else:
        _emit(per_message(args.model_dir, args.bootstrap, args.input_topic, args.output_topic, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
