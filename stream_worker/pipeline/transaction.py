"""Commit stage for ``--delivery exactly-once``: outputs and input offsets commit in one Kafka transaction.

Exactly-once (consume-transform-produce, KIP-98 transactions with KIP-447 group fencing), in numbered steps:

1. At start the producer calls ``init_transactions`` with a stable ``transactional.id`` per worker slot: a
   previous incarnation of the same slot (a zombie, or the process the supervisor just restarted) is fenced and
   its open transaction aborted before this one writes anything.
2. The worker publishes outputs (scores and dead-letter records) in consume order: per partition, a record is
   produced only when every earlier message of that partition has been produced (or was a skipped tombstone).
   The first record after a commit opens a transaction (``Publisher.begin``).
3. Every ``commit_interval_ms`` (and on revocation and at stop): flush the producer, take the offsets after the
   last produced message of every partition (``OffsetTracker``: last processed + 1), add them to the transaction
   with the consumer's group metadata (``send_offsets_to_transaction``) and ``commit_transaction``.  Outputs and
   offsets become visible together: a ``read_committed`` reader sees each input's output exactly once.
4. A retriable error repeats the same call (at most ``_RETRIES`` times).  An abortable error (a refused record,
   a stale group generation after a rebalance, a timed-out transaction) aborts the transaction and rewinds: the
   worker drops what it has in flight and seeks every assigned partition back to its committed offset, so the
   aborted work is redone in the next transaction.
5. A fatal error (this producer was fenced by a newer one with the same ``transactional.id``, or the broker
   refused the id) raises ``InfrastructureError``: the process exits with one log line; the pool supervisor
   restarts it, and step 1 fences whatever was left.
6. On revocation the open transaction is committed (step 3) before the partitions go; on a lost partition (the
   group moved on without us) it is aborted and the remaining partitions rewound (step 4).
7. Every transactional call runs under a watchdog (its timeout plus a grace period): librdkafka's
   ``send_offsets_to_transaction`` can block past its timeout when the group coordinator moves (librdkafka issues
   #5456 and #5511; seen here in the broker-bounce fault scenario).  A call that does not return is abandoned with
   its producer; a new producer with the same ``transactional.id`` runs step 1, which fences the stuck one and
   aborts its transaction, and the worker rewinds (step 4).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException

from stream_worker.common.errors import ConfigError, DeliveryError, InfrastructureError
from stream_worker.common.settings import Settings
from stream_worker.pipeline.commit import OffsetTracker, Partition
from stream_worker.pipeline.produce import Publisher

log = logging.getLogger(__name__)

_RETRIES = 5


class TransactionCommitter:
    """Same interface as ``commit.Committer`` (``maybe_commit``, ``commit``), for exactly-once delivery."""

    def __init__(
        self,
        publisher: Publisher,
        tracker: OffsetTracker,
        interval_ms: int,
        rewind: Callable[[], None],
        timeout_s: float = 30.0,
        on_outcome: Callable[[str], None] | None = None,
        renew: Callable[[], Publisher] | None = None,
    ) -> None:
        self.consumer: Consumer | None = None  # set once the consumer exists (after step 1)
        self._publisher = publisher
        self._tracker = tracker
        self._interval_s = interval_ms / 1000.0
        self._rewind = rewind
        self._timeout_s = timeout_s
        self._on_outcome = on_outcome or (lambda _outcome: None)
        self._renew = renew
        self._abandoned: list[Publisher] = []  # stuck producers: kept, never destroyed while a call may block
        self._last = time.monotonic()
        self.commits = 0
        self.aborts = 0

    def start(self) -> None:
        """Step 1: register the transactional id (fences and aborts a previous incarnation)."""
        producer = self._publisher.producer
        try:
            self._call(lambda: producer.init_transactions(self._timeout_s), "init_transactions")
        except _Stuck as exc:
            raise InfrastructureError(f"{exc}; cannot register the transactional id") from None

    def maybe_commit(self) -> None:
        if time.monotonic() - self._last >= self._interval_s:
            self.commit()

    def commit(self, asynchronous: bool = False, partitions: Iterable[Partition] | None = None) -> None:
        """Step 3.  ``asynchronous`` and ``partitions`` are ignored: one transaction holds every partition's
        outputs, so it commits all their offsets together (the worker drains in-flight work before revocation)."""
        del asynchronous, partitions
        self._last = time.monotonic()
        try:
            self._publisher.flush(self._timeout_s)
            refused = self._publisher.take_failures()
            if refused:
                raise DeliveryError(refused)
            offsets = self._tracker.committable(changed_only=True)
            if not offsets and not self._publisher.in_transaction:
                return
            self._publisher.begin()
            if offsets:
                assert self.consumer is not None
                metadata = self.consumer.consumer_group_metadata()
                producer = self._publisher.producer
                self._call(
                    lambda: producer.send_offsets_to_transaction(offsets, metadata, self._timeout_s),
                    "send_offsets_to_transaction",
                )
            self._call(lambda: self._publisher.producer.commit_transaction(self._timeout_s), "commit_transaction")
        except _Abortable as exc:
            self.abort(str(exc))
            return
        except DeliveryError as exc:  # a record of this transaction was refused: the transaction must go
            self.abort(str(exc))
            return
        except _Stuck as exc:
            self._replace_producer(str(exc))
            return
        self._publisher.transaction_ended()
        self._tracker.mark_committed(offsets)
        self.commits += 1
        self._on_outcome("committed")

    def abort(self, why: str) -> None:
        """Step 4: abort the open transaction (if any) and rewind to the committed offsets."""
        log.warning("aborting the transaction and rewinding to committed offsets", extra={"reason": why})
        if self._publisher.in_transaction:
            producer = self._publisher.producer
            try:
                self._call(lambda: producer.abort_transaction(self._timeout_s), "abort_transaction")
            except _Abortable as exc:  # abort itself cannot be abortable; treat as fatal
                raise InfrastructureError(f"abort_transaction failed: {exc}") from None
            except _Stuck as exc:
                self._replace_producer(str(exc))
                return
        self._publisher.transaction_ended()
        self.aborts += 1
        self._on_outcome("aborted")
        self._rewind()

    def _replace_producer(self, why: str) -> None:
        """Step 7: abandon the stuck producer; a new one fences it (step 1); rewind (step 4)."""
        if self._renew is None:
            raise InfrastructureError(why)
        log.warning("replacing the transactional producer; the new one fences the stuck one", extra={"reason": why})
        self._abandoned.append(self._publisher)
        self._publisher = self._renew()
        self.start()
        self.aborts += 1
        self._on_outcome("producer_replaced")
        self._rewind()

    def _bounded(self, call: Callable[[], object], what: str) -> None:
        """Run ``call`` on a helper thread; raise ``_Stuck`` if it has not returned after its timeout + grace."""
        outcome: list[BaseException | None] = []

        def run() -> None:
            try:
                call()
                outcome.append(None)
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)

        thread = threading.Thread(target=run, name=f"txn-{what}", daemon=True)
        thread.start()
        thread.join(self._timeout_s + min(10.0, self._timeout_s))
        if not outcome:
            raise _Stuck(f"{what} did not return within {self._timeout_s:g} s (librdkafka)")
        if outcome[0] is not None:
            raise outcome[0]

    def _call(self, call: Callable[[], object], what: str) -> None:
        """Run a transactional call: retry retriable errors, raise ``_Abortable``, ``_Stuck`` or
        ``InfrastructureError``."""
        for attempt in range(1, _RETRIES + 1):
            try:
                self._bounded(call, what)
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                text = err.str() if err is not None else str(exc)
                if err is None or err.fatal():
                    self._publisher.mark_fatal(text)
                    raise InfrastructureError(
                        f"exactly-once producer stopped by a fatal error in {what} ({text}); another worker with "
                        "the same transactional id may have taken over"
                    ) from None
                if err.txn_requires_abort():
                    raise _Abortable(f"{what}: {text}") from None
                if err.retriable() and attempt < _RETRIES:
                    log.warning("transactional call failed; retrying", extra={"call": what, "kafka_error": text})
                    continue
                if what in ("init_transactions", "abort_transaction"):
                    raise InfrastructureError(f"{what} failed: {text}") from None
                raise _Abortable(f"{what}: {text}") from None


class _Abortable(Exception):
    """Internal: the transaction must be aborted (step 4)."""


class _Stuck(Exception):
    """Internal: a transactional call did not return (step 7)."""


def check_delivery_support(settings: Settings, cluster_id: str) -> None:
    """Refuse exactly-once on the embedded tansu broker (its cluster id is ``tansu_cluster``): its
    read_committed readers also see aborted records, so the guarantee would not hold."""
    if settings.delivery == "exactly-once" and cluster_id.startswith("tansu"):
        raise ConfigError(
            f"--delivery exactly-once needs Apache Kafka: the cluster at {settings.bootstrap_servers} is the "
            "embedded tansu broker, whose read_committed readers also see aborted records; use "
            "--delivery at-least-once with it"
        )
