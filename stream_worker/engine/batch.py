"""Batch stage: micro-batches that close at max count, max wait or a padded-token budget.

Items wait in a small pool.  With ``max_wait_ms`` = 0 (continuous batching, the default) the pool is due as soon
as it holds anything: the engine takes it whenever its inference thread is free, so batches are as large as what
gathered while the previous batch ran.  With ``max_wait_ms`` > 0 (a fixed window) the pool is due when it holds
``sort_window`` batches' worth of items (backlog) or its oldest item waited ``max_wait_ms``.  A forced cut
(rebalance, stop) takes the pool in both modes.
Before cutting, the pool is sorted by estimated tokens so that texts of similar length share a batch: the model
pads a batch to its longest text, so sorting removes most padding under backlog.  A batch's cost is
``len(batch) x longest`` estimated tokens and never exceeds ``token_budget`` (a single item larger than the budget
forms a batch of its own).

Sorting reorders messages inside a window only; offsets are committed in order anyway by the commit stage, so
reordering never lets a commit pass an unacknowledged message.  The engine (``inference.py``) owns one batcher
and runs it in its inference thread; items are anything with a ``tokens`` estimate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Costed(Protocol):
    @property
    def tokens(self) -> int: ...


T = TypeVar("T", bound=Costed)


class Batcher(Generic[T]):
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
        self._pool: list[T] = []
        self._oldest = 0.0

    def __len__(self) -> int:
        return len(self._pool)

    def add(self, item: T) -> None:
        if not self._pool:
            self._oldest = self._clock()
        self._pool.append(item)

    def seconds_until_due(self) -> float:
        """How long a caller may wait before the oldest waiting item is due."""
        if not self._pool:
            return self.max_wait_s if self.max_wait_s > 0 else 0.1
        return max(0.0, self._oldest + self.max_wait_s - self._clock())

    def due(self) -> bool:
        if not self._pool:
            return False
        return len(self._pool) >= self.window or self.seconds_until_due() <= 0.0

    def drain_due(self) -> list[list[T]]:
        """Batches to score now (empty when nothing is due yet)."""
        return self.drain() if self.due() else []

    def drain(self) -> list[list[T]]:
        """Cut the whole pool into length-sorted batches."""
        taken, self._pool = self._pool, []
        return cut(sorted(taken, key=lambda p: p.tokens), self.max_batch_size, self.token_budget)


def cut(items: list[T], max_batch_size: int, token_budget: int) -> list[list[T]]:
    """Greedy cut of length-sorted items: a batch grows while count and padded cost stay within limits."""
    batches: list[list[T]] = []
    current: list[T] = []
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
