"""Commit stage: offsets become committable only after the broker acknowledged the message's output.

At-least-once, in numbered steps:

1. ``track`` every consumed offset (scored, dead-lettered or skipped alike) in consume order.
2. The produce stage's delivery callback calls ``done`` when the broker acknowledged the output (score or
   dead-letter record) of that offset; a skipped tombstone is ``done`` at once.
3. Per partition, the committable offset is the first offset that is not yet done (or last done + 1): a
   later batch that finishes first never moves the commit past an earlier unacknowledged message.
4. ``Committer.maybe_commit`` commits changed committable offsets every ``commit_interval_ms``
   (asynchronously); on partition revocation and at stop the worker flushes the producer first, then commits
   synchronously.
5. On a lost partition (session timeout) nothing is committed for it: another worker owns it now and will
   redo whatever was not committed (duplicates are possible; loss is not).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from stream_worker.common.errors import InfrastructureError

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class _PartitionOffsets:
    __slots__ = ("done", "last_committed", "next_offset", "pending")

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self.done: set[int] = set()
        self.next_offset = -1
        self.last_committed = -1

    def committable(self) -> int:
        while self.pending and self.pending[0] in self.done:
            offset = self.pending.popleft()
            self.done.discard(offset)
            self.next_offset = offset + 1
        return self.pending[0] if self.pending else self.next_offset


class OffsetTracker:
    def __init__(self) -> None:
        self._parts: dict[Partition, _PartitionOffsets] = {}

    def track(self, topic: str, partition: int, offset: int) -> None:
        self._parts.setdefault((topic, partition), _PartitionOffsets()).pending.append(offset)

    def done(self, topic: str, partition: int, offset: int) -> None:
        part = self._parts.get((topic, partition))
        if part is not None:  # a partition revoked meanwhile is simply forgotten
            part.done.add(offset)

    def in_flight(self) -> int:
        return sum(len(p.pending) - len(p.done) for p in self._parts.values())

    def committable(
        self, partitions: Iterable[Partition] | None = None, changed_only: bool = True
    ) -> list[TopicPartition]:
        """Offsets (next to read) to commit; with ``changed_only`` only those that moved since the last commit."""
        keys = list(self._parts) if partitions is None else [k for k in partitions if k in self._parts]
        out = []
        for key in keys:
            part = self._parts[key]
            offset = part.committable()
            if offset >= 0 and (offset != part.last_committed or not changed_only):
                out.append(TopicPartition(key[0], key[1], offset))
        return out

    def mark_committed(self, offsets: Iterable[TopicPartition]) -> None:
        for tp in offsets:
            part = self._parts.get((tp.topic, tp.partition))
            if part is not None:
                part.last_committed = tp.offset

    def forget(self, partitions: Iterable[Partition]) -> None:
        for key in partitions:
            self._parts.pop(key, None)


class Committer:
    def __init__(self, consumer: Consumer, tracker: OffsetTracker, interval_ms: int) -> None:
        self._consumer = consumer
        self._tracker = tracker
        self._interval_s = interval_ms / 1000.0
        self._last = time.monotonic()
        self.commits = 0

    def maybe_commit(self) -> None:
        if time.monotonic() - self._last >= self._interval_s:
            self.commit(asynchronous=True)

    def commit(self, asynchronous: bool = False, partitions: Iterable[Partition] | None = None) -> None:
        self._last = time.monotonic()
        offsets = self._tracker.committable(partitions, changed_only=asynchronous)
        if not offsets:
            return
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if asynchronous or (err is not None and not getattr(err, "fatal", lambda: False)()):
                # Not committed now: the same (or a later) offset is committed next time; at worst duplicates.
                log.warning("offset commit failed", extra={"kafka_error": str(err)})
                return
            raise InfrastructureError("offset commit failed") from exc
        self._tracker.mark_committed(offsets)
        self.commits += 1
