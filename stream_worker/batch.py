"""Batch stage: micro-batches that close at max count, max wait or a padded-token budget.

Messages wait in a small pool.  The pool is cut into batches when it holds ``sort_window`` batches' worth of
messages (backlog), when its oldest message waited ``max_wait_ms`` (low traffic), or when it is forced
(rebalance, stop).  Before cutting, the pool is sorted by estimated tokens so that texts of similar length share
a batch: the model pads a batch to its longest text, so sorting removes most padding under backlog.  A batch's
cost is ``len(batch) x longest`` estimated tokens and never exceeds ``token_budget``.

Sorting reorders messages inside a window only; offsets are committed in order anyway by the commit stage, so
reordering never lets a commit pass an unacknowledged message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .consume import Incoming
from .guard import Checked


@dataclass(frozen=True, slots=True)
class Pending:
    """A message that passed the guard and waits to be scored."""

    incoming: Incoming
    checked: Checked
    enqueued_at: float

    @property
    def tokens(self) -> int:
        return self.checked.tokens


class Batcher:
    def __init__(
        self,
        max_batch_size: int,
        max_wait_ms: int,
        token_budget: int,
        sort_window: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.token_budget = token_budget
        self.window = max_batch_size * sort_window
        self._clock = clock
        self._pool: list[Pending] = []

    def __len__(self) -> int:
        return len(self._pool)

    def add(self, incoming: Incoming, checked: Checked) -> None:
        self._pool.append(Pending(incoming, checked, self._clock()))

    def room(self) -> int:
        """How many more messages the pool takes before it is full."""
        return max(1, self.window - len(self._pool))

    def seconds_until_due(self) -> float:
        """How long the consumer may block before the oldest waiting message is due."""
        if not self._pool:
            return self.max_wait_s if self.max_wait_s > 0 else 0.1
        return max(0.0, self._pool[0].enqueued_at + self.max_wait_s - self._clock())

    def due(self) -> bool:
        if not self._pool:
            return False
        return len(self._pool) >= self.window or self.seconds_until_due() <= 0.0

    def drain_due(self) -> list[list[Pending]]:
        """Batches to score now (empty when nothing is due yet)."""
        return self.drain() if self.due() else []

    def drain(self, partitions: Iterable[tuple[str, int]] | None = None) -> list[list[Pending]]:
        """Cut the whole pool (or only the given partitions' messages) into length-sorted batches."""
        if partitions is None:
            taken, self._pool = self._pool, []
        else:
            wanted = set(partitions)
            taken = [p for p in self._pool if (p.incoming.topic, p.incoming.partition) in wanted]
            self._pool = [p for p in self._pool if (p.incoming.topic, p.incoming.partition) not in wanted]
        return cut(sorted(taken, key=lambda p: p.tokens), self.max_batch_size, self.token_budget)


def cut(items: list[Pending], max_batch_size: int, token_budget: int) -> list[list[Pending]]:
    """Greedy cut of length-sorted items: a batch grows while count and padded cost stay within limits."""
    batches: list[list[Pending]] = []
    current: list[Pending] = []
    longest = 0
    for item in items:
        new_longest = max(longest, item.tokens)
        if current and (len(current) >= max_batch_size or (len(current) + 1) * new_longest > token_budget):
            batches.append(current)
            current, new_longest = [], item.tokens
        current.append(item)
        longest = new_longest
    if current:
        batches.append(current)
    return batches
