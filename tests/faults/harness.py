"""Moving parts of the fault suite: a steady publisher, a fleet of ``scorer worker`` processes, an RSS sampler,
an independent ``read_committed`` reader, and the result row each scenario leaves behind.

Everything is real: the console script in subprocesses, a three-node Apache Kafka cluster, librdkafka clients.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from stream_worker.pipeline.avro import INPUT_SCHEMA, OUTPUT_SCHEMA, AvroDecoder, AvroEncoder, load_schema
from tests.faults.verify import BadInput, DeadLetter, Tally
from tests.harness import SCORER, _free_port, http_status, kill_group, user_env, wait_for
from tests.toy_model import NEGATIVE, POISON, POSITIVE

MODES = ("at-least-once", "exactly-once")
WORDS = [*POSITIVE, *NEGATIVE, "plot", "scene", "the", "movie", "actor", "ending"]
_QUIET = {"log_level": 3}  # librdkafka: errors only (a bounced broker makes warnings by design)


def text_for(i: int) -> str:
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 23))


# --- publisher -------------------------------------------------------------------------------------------------
class SteadyPublisher(threading.Thread):
    """Publishes Avro messages with unique ids at ``rate`` per second (acks=all, idempotent) until at least
    ``min_count`` were sent *and* ``keep_going`` is cleared (or ``max_count`` were sent, when one is given: the
    flood); ``bad`` maps a message index to a bad payload kind.  No cap derives from a wall clock: the scenario
    clears ``keep_going`` once its last fault has landed and the stream has moved on past it.

    ``acked`` holds the ids the cluster acknowledged; ``coordinates`` the (partition, offset) of the bad ones.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        prefix: str,
        rate: float,
        min_count: int,
        bad: dict[int, str],
        max_count: int | None = None,
        markers: dict[int, str] | None = None,
    ) -> None:
        super().__init__(daemon=True, name=f"publisher-{prefix}")
        self.topic, self.prefix, self.rate = topic, prefix, rate
        self.min_count = min_count
        self.max_count = max_count
        self.bad = bad
        self.markers = markers or {}
        self.keep_going = threading.Event()
        self.keep_going.set()
        self.sent = 0
        self.acked: set[str] = set()
        self.failed: list[str] = []
        self.coordinates: dict[str, tuple[int, int]] = {}
        self.started_at = 0.0
        self.finished_at = 0.0
        self.error: BaseException | None = None
        self._encode = AvroEncoder(load_schema(INPUT_SCHEMA))
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                "message.timeout.ms": 300_000,
                **_QUIET,
            }
        )

    def id_of(self, i: int) -> str:
        return f"{self.prefix}-{i:06d}"

    def payload(self, i: int) -> bytes:
        key = self.id_of(i)
        kind = self.bad.get(i)
        if kind == "schema_mismatch":
            return b"\x8f\x13 not avro " + key.encode()
        if kind == "empty_text":
            return self._encode({"id": key, "text": ""})
        if kind == "scoring_failed":
            return self._encode({"id": key, "text": f"good {POISON} film"})
        return self._encode({"id": key, "text": text_for(i) + self.markers.get(i, "")})

    def bad_inputs(self) -> dict[str, BadInput]:
        """Expected dead letters of the bad messages that were acknowledged."""
        out = {}
        for i, reason in self.bad.items():
            key = self.id_of(i)
            if key in self.acked:
                partition, offset = self.coordinates[key]
                out[key] = BadInput(reason, partition, offset)
        return out

    def good_ids(self) -> set[str]:
        bad = {self.id_of(i) for i in self.bad}
        return self.acked - bad

    def _delivered(self, err: Any, msg: Any) -> None:
        key = msg.key().decode()
        if err is not None:
            self.failed.append(f"{key}: {err}")
            return
        self.acked.add(key)
        if key in self._bad_keys:
            self.coordinates[key] = (msg.partition(), msg.offset())

    def run(self) -> None:
        self._bad_keys = {self.id_of(i) for i in self.bad}
        self.started_at = time.monotonic()
        try:
            cap = self.max_count if self.max_count is not None else float("inf")
            while self.sent < cap and (self.sent < self.min_count or self.keep_going.is_set()):
                due = min(cap, int((time.monotonic() - self.started_at) * self.rate) + 1)
                while self.sent < due:
                    key = self.id_of(self.sent)
                    try:
                        self._producer.produce(
                            self.topic, key=key.encode(), value=self.payload(self.sent), on_delivery=self._delivered
                        )
                    except BufferError:
                        self._producer.poll(0.05)
                        continue
                    self.sent += 1
                self._producer.poll(0.005)
            remaining = self._producer.flush(300)
            if remaining:
                self.failed.append(f"{remaining} messages unacknowledged after flush")
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished_at = time.monotonic()
            self._producer = None  # type: ignore[assignment]  # destroyed now, not after the cluster is gone

    def wait_progress(self, fraction: float, timeout_s: float = 600.0) -> None:
        self.wait_sent(int(fraction * self.min_count), timeout_s)

    def wait_sent(self, count: int, timeout_s: float = 600.0) -> None:
        wait_for(lambda: self.sent >= count or not self.is_alive(), timeout_s, f"{count} messages published")


# --- workers ---------------------------------------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass
class WorkerHandle:
    slot: int
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    stopped_on_purpose: bool = False


class Fleet:
    """``scorer worker --processes 1 --delivery <mode>`` processes of one consumer group.

    A worker occupies a *slot* (think: a host or a pod); a replacement started in the same slot reuses its
    ``--transactional-id`` in exactly-once mode, as a restarted pod keeps its identity.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: tuple[str, str, str],
        model_dir: Path,
        mode: str,
        logdir: Path,
        extra_flags: tuple[str, ...] = (),
    ) -> None:
        self.bootstrap, self.topics, self.model_dir, self.mode = bootstrap, topics, model_dir, mode
        self.logdir = logdir
        self.extra_flags = extra_flags
        self.group = f"g-{topics[0]}"
        self.workers: list[WorkerHandle] = []
        self.peak_rss_kib = 0
        self.unexpected_exits: list[str] = []
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self._lock = threading.Lock()

    def flags(self, slot: int) -> list[str]:
        in_topic, out_topic, dlq_topic = self.topics
        flags = [
            "--processes", "1",
            "--delivery", self.mode,
            "--bootstrap-servers", self.bootstrap,
            "--input-topic", in_topic,
            "--output-topic", out_topic,
            "--dead-letter-topic", dlq_topic,
            "--group-id", self.group,
            "--model-dir", str(self.model_dir),
            "--session-timeout-ms", "6000",
            "--commit-interval-ms", "1000",
            "--inference-threads", "1",
            "--precision", "fp32",
            "--log-level", "INFO",
        ]  # fmt: skip
        if self.mode == "exactly-once":
            flags += ["--transactional-id", f"{self.group}.slot{slot}"]
        return [*flags, *self.extra_flags]

    def start(self, slot: int, wait_ready: bool = True) -> WorkerHandle:
        port = _free_port()
        log = self.logdir / f"worker-slot{slot}-{uuid.uuid4().hex[:6]}.log"
        proc = subprocess.Popen(
            [SCORER, "worker", *self.flags(slot), "--metrics-port", str(port)],
            env=user_env(),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # kill() takes the supervisor and its worker process down together
        )
        handle = WorkerHandle(slot, proc, port, log)
        with self._lock:
            self.workers.append(handle)
        if wait_ready:
            self.wait_ready(handle)
        return handle

    def wait_ready(self, handle: WorkerHandle, timeout_s: float = 600.0) -> None:
        wait_for(
            lambda: http_status(handle.port, "/readyz") == 200 or handle.proc.poll() is not None, timeout_s, "ready"
        )
        assert handle.proc.poll() is None, f"worker exited at start:\n{tail(handle.log)}"

    def alive(self) -> list[WorkerHandle]:
        with self._lock:
            return [w for w in self.workers if w.proc.poll() is None]

    def kill(self, handle: WorkerHandle) -> None:
        handle.stopped_on_purpose = True
        kill_group(handle.proc)

    def terminate(self, handle: WorkerHandle, timeout_s: float = 150.0) -> int:
        handle.stopped_on_purpose = True
        handle.proc.send_signal(signal.SIGTERM)
        code = handle.proc.wait(timeout_s)
        assert code == 0, f"worker exited {code} after SIGTERM:\n{tail(handle.log)}"
        return code

    def check_unexpected_exits(self) -> None:
        with self._lock:
            for w in self.workers:
                code = w.proc.poll()
                if code is not None and not w.stopped_on_purpose:
                    note = f"slot {w.slot} exited {code} on its own: {tail(w.log, 3)}"
                    if note not in self.unexpected_exits:
                        self.unexpected_exits.append(note)

    # RSS of every live worker process (and any child), sampled twice a second.
    def start_sampling(self) -> None:
        self._sampling.set()
        self._sampler = threading.Thread(target=self._sample, daemon=True, name="rss-sampler")
        self._sampler.start()

    def _sample(self) -> None:
        while self._sampling.is_set():
            for w in self.alive():
                for pid in (w.proc.pid, *_children(w.proc.pid)):
                    self.peak_rss_kib = max(self.peak_rss_kib, rss_kib(pid))
            self.check_unexpected_exits()
            time.sleep(0.5)

    def current_rss_kib(self) -> int:
        return max((rss_kib(w.proc.pid) for w in self.alive()), default=0)

    def stop_all(self) -> None:
        """SIGTERM every live worker (graceful: final commit); SIGKILL what does not stop."""
        self._sampling.clear()
        for w in self.alive():
            w.stopped_on_purpose = True
            w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            try:
                w.proc.wait(150)
            except subprocess.TimeoutExpired:
                kill_group(w.proc)
        if self._sampler is not None:
            self._sampler.join(5)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- the independent reader ------------------------------------------------------------------------------------
class CommittedReader(threading.Thread):
    """A ``read_committed`` consumer, assigned every partition of the output and dead-letter topics from the start
    (no group: nothing it does can move the worker group's offsets)."""

    def __init__(self, bootstrap: str, output_topic: str, dlq_topic: str, partitions: dict[str, int]) -> None:
        super().__init__(daemon=True, name="committed-reader")
        self.output_topic, self.dlq_topic = output_topic, dlq_topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"verifier-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **_QUIET,
            }
        )
        self.tps = [TopicPartition(t, p, OFFSET_BEGINNING) for t, n in partitions.items() for p in range(n)]
        self.consumer.assign(self.tps)
        self.output_keys: Counter[str] = Counter()
        # key -> [(output partition, output offset, source partition, source offset)]: evidence for duplicates
        # (one source offset scored twice is the worker's fault; two source offsets mean the input holds the key twice)
        self.sources: dict[str, list[tuple[int, int, int, int]]] = {}
        self._decode = AvroDecoder(load_schema(OUTPUT_SCHEMA))
        self.dead_letters: list[DeadLetter] = []
        self._running = threading.Event()
        self._running.set()
        self._lock = threading.Lock()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while self._running.is_set():
                self._take(self.consumer.consume(num_messages=2000, timeout=0.2))
        except BaseException as exc:
            self.error = exc

    def _take(self, msgs: list[Any]) -> None:
        with self._lock:
            for msg in msgs:
                if msg.error():
                    continue
                key = (msg.key() or b"").decode(errors="replace")
                if msg.topic() == self.output_topic:
                    self.output_keys[key] += 1
                    score = self._decode(msg.value())
                    self.sources.setdefault(key, []).append(
                        (msg.partition(), msg.offset(), score["source_partition"], score["source_offset"])
                    )
                else:
                    headers = {k: (v or b"").decode(errors="replace") for k, v in msg.headers() or []}
                    self.dead_letters.append(
                        DeadLetter(
                            key,
                            headers.get("scorer.errors.reason", ""),
                            int(headers.get("__connect.errors.partition", "-1") or -1),
                            int(headers.get("__connect.errors.offset", "-1") or -1),
                        )
                    )

    def seen(self) -> set[str]:
        with self._lock:
            return set(self.output_keys) | {d.key for d in self.dead_letters}

    def lagging(self) -> list[str]:
        """Partitions whose position is below the high watermark (read_committed: not yet past the last marker).
        Only from the thread that consumes (librdkafka handles are not shared between threads here)."""
        out = []
        positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(self.tps)}
        for tp in self.tps:
            _low, high = self.consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5.0)
            pos = positions.get((tp.topic, tp.partition), -1)
            if high > 0 and pos < high:
                out.append(f"{tp.topic}[{tp.partition}] at {pos} of {high}")
        return out

    def drain(self, timeout_s: float) -> list[str]:
        """Stop the background thread, then read on here until every partition's end is reached (or the timeout);
        returns the partitions still lagging."""
        self._running.clear()
        self.join(30)
        assert not self.is_alive(), "reader thread did not stop"
        deadline = time.monotonic() + timeout_s
        lagging = self.lagging()
        while lagging and time.monotonic() < deadline:
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                self._take(self.consumer.consume(num_messages=2000, timeout=0.2))
            lagging = self.lagging()
        self._take(self.consumer.consume(num_messages=2000, timeout=1.0))
        self.consumer.close()
        return lagging


# --- results ---------------------------------------------------------------------------------------------------
@dataclass
class Result:
    scenario: str
    mode: str
    published: int
    scored: int
    lost: int
    duplicated: int
    dead_letter_ok: str
    peak_rss_mib: float
    duration_s: float
    faults: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lost_examples: list[str] = field(default_factory=list)
    duplicated_examples: list[str] = field(default_factory=list)
    dead_letter_problems: list[str] = field(default_factory=list)
    passed: bool = False

    @classmethod
    def of(cls, scenario: str, mode: str, t: Tally, peak_rss_kib: int, duration_s: float) -> Result:
        return cls(
            scenario=scenario,
            mode=mode,
            published=t.published,
            scored=t.scored_unique,
            lost=len(t.lost),
            duplicated=t.duplicated,
            dead_letter_ok=f"{t.bad_ok}/{t.bad_total}",
            peak_rss_mib=round(peak_rss_kib / 1024, 1),
            duration_s=round(duration_s, 1),
            lost_examples=t.lost[:10],
            duplicated_examples=t.duplicated_ids[:10],
            dead_letter_problems=t.dead_letter_problems[:10],
        )


def results_file() -> Path:
    return Path(
        os.environ.get("FAULTS_RESULTS", str(Path(__file__).resolve().parents[2] / ".cache/faults/results.jsonl"))
    )


def record(result: Result) -> None:
    path = results_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({**asdict(result), "at": time.time()}) + "\n")


Step = Callable[[], None]
