"""Hold stage: messages that wait while the Schema Registry does not answer.

A registry outage is infrastructure, not bad input: nothing is dead-lettered and nothing is lost.  The rules:

1. The first message whose writer schema cannot be fetched (``RegistryUnavailable``) is held, with every message
   consumed after it (consume order is kept: exactly-once publishes in that order), and consumption of every
   assigned partition is paused.  Pausing drops librdkafka's prefetched messages; on resume it fetches again
   from the position after the last message handed to the worker, so nothing between is skipped.  The loop
   keeps polling (group membership, rebalances) but receives nothing from paused partitions; a partition
   assigned during the outage is paused at its first message.
2. Held messages are tracked but not done, so offsets are never committed past them: a crash or a rebalance
   loses nothing; the next owner reads them again.  Held messages of revoked or lost partitions are dropped.
3. Retries back off: 0.5 s, doubling, at most 30 s between attempts.  Each failed attempt logs one line and
   counts a failure; ``scorer_schema_registry_unreachable`` is 1 and ``/readyz``'s body says so meanwhile.
4. When an attempt gets through, the held messages go on in order; partitions resume once none is held.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, TopicPartition

from stream_worker.common.errors import RegistryUnavailable
from stream_worker.common.metrics import Metrics
from stream_worker.pipeline.consume import Incoming

log = logging.getLogger(__name__)

FIRST_RETRY_S = 0.5
MAX_RETRY_S = 30.0


class Hold:
    """The held messages, the paused partitions and the retry schedule of one worker."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.items: deque[Incoming] = deque()
        self._metrics = metrics
        self._clock = clock
        self._paused: set[tuple[str, int]] = set()
        self._delay_s = FIRST_RETRY_S
        self._next_try = 0.0

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def start(self, consumer: Consumer, incoming: Incoming, exc: RegistryUnavailable) -> None:
        """Rule 1: hold the first message the registry could not serve; pause every assigned partition."""
        self._delay_s = FIRST_RETRY_S
        self._failed(exc, first=True)
        self.add(consumer, incoming)
        self._pause(consumer, [(tp.topic, tp.partition) for tp in consumer.assignment()])

    def add(self, consumer: Consumer, incoming: Incoming) -> None:
        """Hold a message consumed behind held ones (its partition is paused if it was not yet)."""
        self.items.append(incoming)
        self._metrics.held_messages.set(len(self.items))
        self._pause(consumer, [(incoming.topic, incoming.partition)])

    def due(self) -> bool:
        return bool(self.items) and self._clock() >= self._next_try

    def take(self) -> list[Incoming]:
        """Every held message, for a retry in order (``again`` puts back what still cannot go)."""
        taken = list(self.items)
        self.items.clear()
        return taken

    def again(self, remaining: Iterable[Incoming], exc: RegistryUnavailable) -> None:
        """Rule 3: the retry failed at the first of ``remaining``; hold them again and back off."""
        self.items.extendleft(reversed(list(remaining)))
        self._metrics.held_messages.set(len(self.items))
        self._delay_s = min(MAX_RETRY_S, self._delay_s * 2)
        self._failed(exc, first=False)

    def recovered(self, consumer: Consumer) -> None:
        """Rule 4: nothing held any more; resume the paused partitions still assigned."""
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        resume = [TopicPartition(t, p) for t, p in sorted(self._paused & assigned)]
        if resume:
            consumer.resume(resume)
        self._paused.clear()
        self._metrics.held_messages.set(0)
        self._metrics.registry_unreachable.set(0)
        log.info("schema registry reachable again: consumption resumed", extra={"partitions": len(resume)})

    def drop(self, keys: Iterable[tuple[str, int]]) -> None:
        """Rule 2: partitions revoked or lost; their held messages are the next owner's."""
        gone = set(keys)
        self.items = deque(i for i in self.items if (i.topic, i.partition) not in gone)
        self._paused -= gone
        self._metrics.held_messages.set(len(self.items))

    def clear(self, consumer: Consumer) -> None:
        """Exactly-once rewind: every partition is read again from its committed offset."""
        self.items.clear()
        self.recovered(consumer)

    def _pause(self, consumer: Consumer, keys: list[tuple[str, int]]) -> None:
        new = [k for k in keys if k not in self._paused]
        if new:
            consumer.pause([TopicPartition(t, p) for t, p in new])
            self._paused.update(new)

    def _failed(self, exc: RegistryUnavailable, first: bool) -> None:
        self._next_try = self._clock() + self._delay_s
        self._metrics.registry_unreachable.set(1)
        self._metrics.failures.labels(kind=type(exc).__name__).inc()
        log.warning(
            "schema registry unreachable: consumption paused, messages held"
            if first
            else "schema registry still unreachable",
            extra={"error": str(exc), "held": len(self.items) + (1 if first else 0), "retry_in_s": self._delay_s},
        )
