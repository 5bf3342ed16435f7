"""The worker: a flat loop over the named stages.

    consume → decode → guard → batch → score → encode → produce → commit

``run`` owns the loop; every stage lives in its own module.  Bad messages become dead-letter records
(``deadletter``); only infrastructure errors end the loop.  SIGTERM/SIGINT set ``stop``: the loop ends, the
in-flight batch is finished, the producer flushed and acknowledged offsets committed in ``finally``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, TopicPartition

from . import connect, consume
from .batch import Batcher, Pending
from .commit import Committer, OffsetTracker
from .consume import Incoming
from .deadletter import dead_letter_headers
from .decode import Decoder
from .encode import CONTENT_TYPE_HEADER, ScoreEncoder
from .errors import BadMessage, ConfigError, InfrastructureError
from .guard import Guard
from .metrics import HealthServer, Metrics
from .model_repo import ModelRepository, ModelWatcher, Version, initial_model, require_servable
from .produce import Publisher
from .score import Scorer, configure_threads, score_or_isolate
from .settings import Settings

log = logging.getLogger(__name__)


class Worker:
    """Holds the stages; ``run`` is the loop.  Construct, then call ``run(stop)`` once."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.decode = Decoder(settings.input_format, settings.schema_dir)
        self.guard = Guard(settings.max_text_bytes, settings.max_sequence_tokens)
        self.batcher = Batcher(
            settings.max_batch_size, settings.max_wait_ms, settings.token_budget, settings.sort_window
        )
        self.tracker = OffsetTracker()
        self.scorer: Scorer | None = None
        self.watcher: ModelWatcher | None = None
        self.encode: ScoreEncoder | None = None
        self.publisher: Publisher | None = None
        self.consumer: Consumer | None = None
        self.committer: Committer | None = None

    # --- the loop -------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        s = self.settings
        server = HealthServer(self.metrics, s.metrics_host, s.metrics_port).start() if s.metrics_port else None
        try:
            require_servable(s.model_dir, s.model_version)
            connect.check_cluster(s.consumer_config(), s.broker_timeout_s, s.input_topic)
            self._load_model()
            if stop.is_set():
                return
            self.publisher = Publisher(s.producer_config(), self.tracker)
            self.consumer = consume.open_consumer(s, self._on_assign, self._on_revoke, self._on_lost, self._on_lag)
            self.committer = Committer(self.consumer, self.tracker, s.commit_interval_ms)
            self.metrics.ready = True
            log.info("worker ready", extra={"group_id": s.group_id, "input_topic": s.input_topic})
            while not stop.is_set():
                for incoming in consume.poll(self.consumer, self.batcher.room(), self.batcher.seconds_until_due()):
                    self._admit(incoming)
                for batch in self.batcher.drain_due():
                    self._score_and_publish(batch)
                self._maybe_swap_model()
                self.publisher.poll(0)
                self.committer.maybe_commit()
                self.metrics.tick()
        except InfrastructureError as exc:
            self.metrics.failures.labels(kind=type(exc).__name__).inc()
            raise
        finally:
            self.metrics.ready = False
            if self.watcher is not None:
                self.watcher.stop()
            self._shutdown()
            if server is not None:
                server.stop()

    # --- stages ---------------------------------------------------------------------------------------------
    def _load_model(self) -> None:
        s = self.settings
        configure_threads(s.inference_threads)
        repo = ModelRepository(s.model_dir, s.model_version, s.model_settle_s)
        number, scorer = initial_model(repo, self._load_version)
        seconds = scorer.last_warmup_s
        self._serve(scorer)
        self.metrics.warmup_seconds.set(seconds)
        # A full window of worst-case batches must fit well inside max.poll.interval.ms.
        worst_window_s = seconds * s.sort_window * 4
        if worst_window_s * 1000 > s.max_poll_interval_ms:
            raise ConfigError(
                f"a maximum-size batch took {seconds:.1f}s; raise max_poll_interval_ms above "
                f"{int(worst_window_s * 1000)} or lower max_batch_size/max_sequence_tokens"
            )
        log.info("model warmed up", extra={"seconds": round(seconds, 3), "batch": s.max_batch_size})
        self.watcher = ModelWatcher(repo, self._load_version, number, s.model_poll_interval_s, self._refused).start()

    def _load_version(self, version: Version) -> Scorer:
        """Load, contract-check and warm up one version (runs in the watcher thread for rollouts)."""
        scorer = Scorer.load_version(version.number, version.path)
        scorer.last_warmup_s = scorer.warm_up(self.settings.max_batch_size, self.settings.max_sequence_tokens)
        return scorer

    def _refused(self, version: Version, reason: str) -> None:
        kind = "warmup" if "warm-up" in reason else "contract" if "serving_default" in reason else "load"
        self.metrics.model_load_failures.labels(reason=kind).inc()
        log.error(
            "model version refused; serving on with the current one",
            extra={
                "model_version": version.number,
                "reason": reason,
                "serving": self.scorer.version if self.scorer else None,
            },
        )

    def _serve(self, scorer: Scorer) -> None:
        previous = self.scorer.version if self.scorer is not None else None
        self.scorer = scorer
        self.encode = ScoreEncoder(scorer.version, self.settings.schema_dir)
        self.metrics.serve_version(scorer.version, previous)

    def _maybe_swap_model(self) -> None:
        """Between two batches: serve a version the watcher loaded, if any (model_repo, step 3)."""
        if self.watcher is None:
            return
        ready = self.watcher.take()
        if ready is None:
            return
        _, scorer = ready
        previous = self.scorer.version if self.scorer else None
        assert isinstance(scorer, Scorer)
        self._serve(scorer)
        self.metrics.model_swaps.inc()
        log.info("model version swapped", extra={"model_version": scorer.version, "previous": previous})

    def _admit(self, incoming: Incoming) -> None:
        """Track, decode, guard; a good message joins the batcher, a bad one goes to the dead-letter topic."""
        self.metrics.messages_in.inc()
        self.tracker.track(incoming.topic, incoming.partition, incoming.offset)
        if incoming.value is None:  # tombstone: nothing to score, documented skip
            self.metrics.skipped.labels(reason="tombstone").inc()
            self.tracker.done(incoming.topic, incoming.partition, incoming.offset)
            return
        try:
            content_type = incoming.header(CONTENT_TYPE_HEADER)
            record = self.decode(incoming.value, _header_text(content_type))
            checked = self.guard(record)
        except BadMessage as exc:
            self._dead_letter(incoming, exc)
            return
        self.batcher.add(incoming, checked)

    def _score_and_publish(self, batch: list[Pending]) -> None:
        assert self.scorer is not None and self.encode is not None and self.publisher is not None
        started = time.perf_counter()
        results = score_or_isolate(self.scorer, [p.checked.record.text for p in batch])
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_tokens.observe(len(batch) * max(p.tokens for p in batch))
        scored_at_ms = int(time.time() * 1000)
        for pending, result in zip(batch, results, strict=True):
            if isinstance(result, BadMessage):
                self._dead_letter(pending.incoming, result)
                continue
            record = pending.checked.record
            value, headers = self.encode(pending.incoming, record.id, result, scored_at_ms)
            produced_ms = record.produced_at_ms or pending.incoming.timestamp_ms
            self.publisher.publish(
                self.settings.output_topic, pending.incoming, value, headers, self._on_scored(produced_ms)
            )

    def _on_scored(self, produced_ms: int | None) -> _Ack:
        return _Ack(self.metrics, produced_ms)

    def _dead_letter(self, incoming: Incoming, error: BadMessage) -> None:
        assert self.publisher is not None
        log.warning(
            "dead-lettering message",
            extra={
                "reason": error.reason,
                "topic": incoming.topic,
                "partition": incoming.partition,
                "offset": incoming.offset,
            },
        )
        counter = self.metrics.dead_lettered.labels(reason=error.reason)
        self.publisher.publish(
            self.settings.dead_letter_topic,
            incoming,
            incoming.value,
            dead_letter_headers(incoming, error),
            counter.inc,
        )

    # --- rebalance and stop ---------------------------------------------------------------------------------
    def _finish(self, partitions: Iterable[tuple[str, int]] | None) -> None:
        """Score what waits (for these partitions), wait for every acknowledgement, commit synchronously."""
        parts = None if partitions is None else list(partitions)
        for batch in self.batcher.drain(parts):
            self._score_and_publish(batch)
        if self.publisher is not None:
            self.publisher.flush()
        if self.committer is not None:
            self.committer.commit(asynchronous=False, partitions=parts)

    def _on_assign(self, partitions: list[TopicPartition]) -> None:
        self.metrics.assigned_partitions.inc(len(partitions))
        log.info("partitions assigned", extra={"partitions": _names(partitions)})

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        log.info("partitions revoked: finishing in-flight work", extra={"partitions": _names(partitions)})
        self._finish(keys)
        self.tracker.forget(keys)
        self.metrics.assigned_partitions.dec(len(keys))
        for topic, partition in keys:
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(topic, str(partition))

    def _on_lost(self, partitions: list[TopicPartition]) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        log.warning("partitions lost: their uncommitted work will be redone", extra={"partitions": _names(partitions)})
        self.batcher.drain(keys)  # another worker owns them now; drop what waits
        self.tracker.forget(keys)
        self.metrics.assigned_partitions.dec(len(keys))

    def _on_lag(self, topic: str, partition: int, lag: int) -> None:
        self.metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)

    def _shutdown(self) -> None:
        """Final flush and commit, then leave the group (each step runs even if an earlier one failed)."""
        try:
            if self.consumer is not None:
                self._finish(None)
        except Exception:
            log.exception("final flush/commit failed; uncommitted messages will be read again")
            raise
        finally:
            if self.consumer is not None:
                self.consumer.close()
                self.consumer = None
            log.info("worker stopped", extra={"in_flight": self.tracker.in_flight()})


class _Ack:
    """Delivery hook of a score record: count it and observe its end-to-end latency."""

    __slots__ = ("_metrics", "_produced_ms")

    def __init__(self, metrics: Metrics, produced_ms: int | None) -> None:
        self._metrics = metrics
        self._produced_ms = produced_ms

    def __call__(self) -> None:
        self._metrics.messages_out.inc()
        if self._produced_ms is not None:
            self._metrics.end_to_end_seconds.observe(max(0.0, time.time() - self._produced_ms / 1000.0))


def _header_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="replace")


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]
