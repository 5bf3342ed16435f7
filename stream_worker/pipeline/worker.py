"""The worker: a flat loop over the named stages.

    consume → decode → guard → pii → batch → score → encode → produce → commit
                (hold: while the Schema Registry does not answer)

``run`` owns the loop; every stage lives in its own module.  Batching and scoring run in the shared engine
(``engine.py``: one inference thread that owns the model), so this loop polls, decodes and produces while a batch
is being scored.  Bad messages become dead-letter records (``deadletter``); only infrastructure errors end the loop.
SIGTERM/SIGINT set ``stop``: the loop ends, what waits is scored, the producer flushed and acknowledged offsets
committed in ``finally``.

Delivery: at-least-once by default (``commit.py``: offsets follow acknowledged outputs); with
``--delivery exactly-once`` outputs are published in consume order and committed with their input offsets in
one transaction (``transaction.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from stream_worker.common.errors import (
    BadMessage,
    ConfigError,
    InfrastructureError,
    PiiDetected,
    RegistryUnavailable,
)
from stream_worker.common.metrics import Metrics, forget_gauge
from stream_worker.common.settings import Settings
from stream_worker.engine.inference import Engine, Result, Scored, open_engine
from stream_worker.engine.model_repo import ModelWatcher, require_servable
from stream_worker.engine.score import Scorer
from stream_worker.pipeline import connect, consume
from stream_worker.pipeline.avro import INPUT_SCHEMA, OUTPUT_SCHEMA, schema_text
from stream_worker.pipeline.commit import Committer, OffsetTracker
from stream_worker.pipeline.consume import Incoming
from stream_worker.pipeline.deadletter import dead_letter_headers
from stream_worker.pipeline.decode import Decoder
from stream_worker.pipeline.encode import CONTENT_TYPE_HEADER, ScoreEncoder
from stream_worker.pipeline.guard import Checked, Guard
from stream_worker.pipeline.hold import Hold
from stream_worker.pipeline.pii import HEADER as PII_HEADER
from stream_worker.pipeline.pii import PiiScanner, apply_policy
from stream_worker.pipeline.produce import Publisher, ScoreAck
from stream_worker.pipeline.transaction import TransactionCommitter, check_delivery_support

if TYPE_CHECKING:
    from stream_worker.pipeline.registry import RegistryFramer, RegistryReader

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _InFlight:
    """A message handed to the engine, waiting for its score."""

    incoming: Incoming
    checked: Checked | None  # None: refused before scoring (the future holds the BadMessage)
    future: Future[Result] | Future[BadMessage]  # a BadMessage: refused before scoring
    pii_kinds: str = ""


class Worker:
    """Holds the stages; ``run`` is the loop.  Construct, then call ``run(stop)`` once."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        reader: RegistryReader | None = None
        framer: RegistryFramer | None = None
        if settings.schema_registry_url:
            from stream_worker.pipeline import registry  # the serde's import costs ~1 s: only when configured

            client = registry.open_client(settings)
            reader = registry.RegistryReader(client, schema_text(INPUT_SCHEMA, settings.schema_dir))
            framer = registry.RegistryFramer(client, schema_text(OUTPUT_SCHEMA, settings.schema_dir), settings)
        self.framer = framer
        self.decode = Decoder(settings.input_format, settings.schema_dir, reader)
        self.guard = Guard(settings.max_text_bytes, settings.max_sequence_tokens)
        self.pii = PiiScanner() if settings.pii_policy != "off" else None
        self.tracker = OffsetTracker()
        self.hold = Hold(self.metrics)
        self.engine: Engine | None = None
        self.watcher: ModelWatcher | None = None
        self.encode = ScoreEncoder(settings.schema_dir, framer=framer, output_topic=settings.output_topic)
        self.publisher: Publisher | None = None
        self.consumer: Consumer | None = None
        self.committer: Committer | TransactionCommitter | None = None
        self.exactly_once = settings.delivery == "exactly-once"
        self.failed = False  # the loop ended on an infrastructure error
        self.in_flight: deque[_InFlight] = deque()
        # Poll only while this many messages wait for scores: enough to keep the engine's sort window full.
        self.max_in_flight = 2 * settings.max_batch_size * settings.sort_window

    @property
    def scorer(self) -> Scorer | None:
        return self.engine.scorer if self.engine is not None else None

    # --- the loop -------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        s = self.settings
        try:
            require_servable(s.model_dir, s.model_version)
            cluster_id = connect.check_cluster(s.consumer_config(), s.broker_timeout_s, s.input_topic)
            check_delivery_support(s, cluster_id)
            self._load_model()
            if self.framer is not None:  # scores are framed: the output schema's id first (retried, see registry)
                self.framer.register(s.output_topic, stop, self.metrics)
            if stop.is_set():
                return
            self.publisher = Publisher(s.producer_config(), self.tracker)
            if self.exactly_once:
                # The producer's transactional id is registered before the consumer joins the group (step 1).
                self.committer = TransactionCommitter(
                    self.publisher,
                    self.tracker,
                    s.commit_interval_ms,
                    self._rewind,
                    s.broker_timeout_s,
                    on_outcome=lambda outcome: self.metrics.transactions.labels(outcome=outcome).inc(),
                    renew=self._new_publisher,
                )
                self.committer.start()
            self.consumer = consume.open_consumer(s, self._on_assign, self._on_revoke, self._on_lost, self._on_lag)
            if isinstance(self.committer, TransactionCommitter):
                self.committer.consumer = self.consumer
            else:
                self.committer = Committer(self.consumer, self.tracker, s.commit_interval_ms)
            engine = self.engine
            assert engine is not None
            self.metrics.ready = True
            log.info("worker ready", extra={"group_id": s.group_id, "input_topic": s.input_topic})
            while not stop.is_set():
                self._retry_held()
                if self._room() or not self.in_flight:  # nothing in flight: poll anyway (group membership)
                    polled = consume.poll(self.consumer, max(1, self._room()), self._poll_timeout())
                    with engine.submitting():  # one poll's texts start in one batch
                        for incoming in polled:
                            self._admit(incoming)
                else:  # back-pressure: the engine has all it can use; wait for the oldest score, read nothing
                    oldest: Future[Any] = self.in_flight[0].future
                    futures.wait([oldest], timeout=0.05)
                self._publish_scored()
                self.publisher.poll(0)
                self.committer.maybe_commit()
                self.metrics.tick()
        except InfrastructureError as exc:
            self.failed = True
            self.metrics.failures.labels(kind=type(exc).__name__).inc()
            raise
        finally:
            self.metrics.ready = False
            if self.watcher is not None:
                self.watcher.stop()
            self._shutdown()

    # --- stages ---------------------------------------------------------------------------------------------
    def _load_model(self) -> None:
        s = self.settings
        self.engine, self.watcher, precision = open_engine(
            s, self.metrics, on_swap=lambda _old, new: self._set_guard(new), max_queue=max(self.max_in_flight, 1) * 2
        )
        self.encode.precision = precision
        scorer = self.engine.scorer
        self._set_guard(scorer)
        seconds = scorer.last_warmup_s
        # A full window of worst-case batches must fit well inside max.poll.interval.ms.
        worst_window_s = seconds * s.sort_window * 4
        if worst_window_s * 1000 > s.max_poll_interval_ms:
            raise ConfigError(
                f"a maximum-size batch took {seconds:.1f}s; raise max_poll_interval_ms above "
                f"{int(worst_window_s * 1000)} or lower max_batch_size/max_sequence_tokens"
            )
        log.info("model warmed up", extra={"seconds": round(seconds, 3), "batch": s.max_batch_size})

    def _set_guard(self, scorer: Scorer) -> None:
        """The guard estimates cost with the served model's own windowing (read from the model, not configured)."""
        self.guard = Guard(self.settings.max_text_bytes, *scorer.shape(self.settings.max_sequence_tokens))

    def _room(self) -> int:
        return max(0, self.max_in_flight - len(self.in_flight) - len(self.hold))

    def _poll_timeout(self) -> float:
        """Block on Kafka only while nothing waits for a score; else come back soon to publish results."""
        if self.in_flight:
            return 0.005
        return 0.1

    def _admit(self, incoming: Incoming) -> None:
        """Track, then submit; held (hold.py) while the Schema Registry does not answer."""
        self.metrics.messages_in.inc()
        self.tracker.track(incoming.topic, incoming.partition, incoming.offset)
        if incoming.value is None:  # tombstone: nothing to score, documented skip
            self.metrics.skipped.labels(reason="tombstone").inc()
            self.tracker.done(incoming.topic, incoming.partition, incoming.offset)
            return
        assert self.consumer is not None
        if self.hold:  # behind held messages: keep consume order
            self.hold.add(self.consumer, incoming)
            return
        try:
            self._submit(incoming)
        except RegistryUnavailable as exc:
            self.hold.start(self.consumer, incoming, exc)

    def _retry_held(self) -> None:
        """Hold rules 3-4: when a retry is due, submit the held messages in order until one still waits."""
        if not self.hold.due():
            return
        assert self.consumer is not None and self.engine is not None
        pending = self.hold.take()
        with self.engine.submitting():
            for k, incoming in enumerate(pending):
                try:
                    self._submit(incoming)
                except RegistryUnavailable as exc:
                    self.hold.again(pending[k:], exc)
                    return
        self.hold.recovered(self.consumer)

    def _submit(self, incoming: Incoming) -> None:
        """Decode, guard, pii; a good message goes to the engine, a bad one to the dead-letter topic.  Raises
        ``RegistryUnavailable`` (nothing submitted) when its writer schema cannot be fetched."""
        assert incoming.value is not None
        try:
            content_type = incoming.header(CONTENT_TYPE_HEADER)
            record = self.decode(incoming.value, _header_text(content_type))
            checked = self.guard(record)
            text, kinds = self._anonymization_guard(record.text)
        except BadMessage as exc:
            # Through the in-flight queue, so that outputs leave in consume order (exactly-once step 2).
            refused: Future[BadMessage] = Future()
            refused.set_result(exc)
            self.in_flight.append(_InFlight(incoming, None, refused))
            return
        assert self.engine is not None
        self.in_flight.append(_InFlight(incoming, checked, self.engine.submit(text, checked.tokens), kinds))

    def _anonymization_guard(self, text: str) -> tuple[str, str]:
        """The pii stage: (text to score, kinds header); raises ``PiiDetected`` under the reject policy."""
        if self.pii is None:
            return text, ""
        policy = self.settings.pii_policy
        result = apply_policy(text, policy, self.pii)
        self.metrics.count_pii(policy, result.counts)
        if result.rejected:
            raise PiiDetected(result.header)
        return result.text, result.header

    def _publish_scored(self, wait: bool = False) -> None:
        """Encode and produce every message whose score is ready (all of them with ``wait``).

        Exactly-once publishes in consume order: it stops at the first message still being scored, so the
        produced messages of each partition always end at a single offset (transaction step 2)."""
        assert self.publisher is not None
        scored_at_ms = int(time.time() * 1000)
        still: deque[_InFlight] = deque()
        for item in self.in_flight:
            ready = wait or item.future.done()
            if not ready or (self.exactly_once and still):
                still.append(item)
                continue
            try:
                result = item.future.result()
            except Exception as exc:
                raise InfrastructureError(f"scoring failed ({type(exc).__name__})") from exc
            if isinstance(result, BadMessage):
                self._dead_letter(item.incoming, result)
                continue
            assert isinstance(result, Scored) and item.checked is not None
            record = item.checked.record
            value, headers = self.encode(item.incoming, record.id, result.score, result.version, scored_at_ms)
            if item.pii_kinds:
                headers.append((PII_HEADER, item.pii_kinds.encode()))
            produced_ms = record.produced_at_ms or item.incoming.timestamp_ms
            self.publisher.publish(
                self.settings.output_topic, item.incoming, value, headers, ScoreAck(self.metrics, produced_ms)
            )
        self.in_flight = still

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
        headers = dead_letter_headers(incoming, error)
        topic = self.settings.dead_letter_topic
        if isinstance(error, PiiDetected):
            headers.append((PII_HEADER, error.kinds.encode()))
            topic = self.settings.pii_quarantine_topic or topic
        self.publisher.publish(topic, incoming, incoming.value, headers, counter.inc)

    # --- rebalance and stop ---------------------------------------------------------------------------------
    def _finish(self, partitions: list[tuple[str, int]] | None) -> None:
        """Score everything in flight, wait for every acknowledgement, commit (these partitions) synchronously."""
        if self.exactly_once and (self.failed or (self.publisher is not None and self.publisher.fatal)):
            # The open transaction is aborted by the broker (or at once by this slot's next incarnation).
            log.warning("the transaction cannot be committed after this failure; the next owner redoes its work")
            return
        if self.engine is not None and self.in_flight:
            self.engine.flush()
        if self.publisher is not None:
            self._publish_scored(wait=True)
            self.publisher.flush()
        if self.committer is not None:
            self.committer.commit(asynchronous=False, partitions=partitions)

    def _on_assign(self, partitions: list[TopicPartition]) -> None:
        self.metrics.assigned_partitions.inc(len(partitions))
        log.info("partitions assigned", extra={"partitions": _names(partitions)})

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        log.info("partitions revoked: finishing in-flight work", extra={"partitions": _names(partitions)})
        self.hold.drop(keys)
        self._finish(keys)
        self.tracker.forget(keys)
        self.metrics.assigned_partitions.dec(len(keys))
        for topic, partition in keys:
            forget_gauge(self.metrics.consumer_lag, topic, str(partition))

    def _on_lost(self, partitions: list[TopicPartition]) -> None:
        keys = {(p.topic, p.partition) for p in partitions}
        log.warning("partitions lost: their uncommitted work will be redone", extra={"partitions": _names(partitions)})
        self.hold.drop(keys)
        if isinstance(self.committer, TransactionCommitter):  # transaction step 6: abort, rewind the rest
            self.tracker.forget(keys)
            self.committer.abort("partitions lost")
            self.metrics.assigned_partitions.dec(len(keys))
            return
        # Another worker owns them now: drop their results (the engine may still score them; nobody publishes).
        self.in_flight = deque(i for i in self.in_flight if (i.incoming.topic, i.incoming.partition) not in keys)
        self.tracker.forget(keys)
        self.metrics.assigned_partitions.dec(len(keys))

    def _new_publisher(self) -> Publisher:
        """Exactly-once step 7: a fresh producer with the same transactional id replaces a stuck one."""
        self.publisher = Publisher(self.settings.producer_config(), self.tracker)
        return self.publisher

    def _rewind(self) -> None:
        """Exactly-once step 4: drop in-flight work and seek every assigned partition to its committed offset."""
        assert self.consumer is not None
        self.in_flight.clear()  # the engine may still score them; nobody publishes the results
        if self.hold:
            self.hold.clear(self.consumer)
        assigned = self.consumer.assignment()
        self.tracker.forget((tp.topic, tp.partition) for tp in assigned)
        if not assigned:
            return
        try:
            committed = self.consumer.committed(assigned, timeout=self.settings.broker_timeout_s)
        except KafkaException as exc:
            raise InfrastructureError("cannot read committed offsets to rewind after an abort") from exc
        fallback = OFFSET_BEGINNING if self.settings.auto_offset_reset == "earliest" else OFFSET_END
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else fallback
            try:
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            except KafkaException as exc:
                where = f"{tp.topic}[{tp.partition}]"
                log.warning("seek after abort failed", extra={"partition": where, "kafka_error": str(exc)})

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
            if self.engine is not None:
                self.engine.stop()
            if self.consumer is not None:
                self.consumer.close()
                self.consumer = None
            log.info("worker stopped", extra={"in_flight": self.tracker.in_flight()})


def _header_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="replace")


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]
