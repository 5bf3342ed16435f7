from __future__ import annotations

from stream_worker.engine.batch import Batcher, cut
from stream_worker.pipeline.commit import OffsetTracker
from stream_worker.pipeline.decode import TextRecord
from stream_worker.pipeline.guard import Checked


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def item(offset: int, tokens: int) -> Checked:
    return Checked(TextRecord(str(offset), "x"), tokens)


def test_batch_closes_at_max_wait() -> None:
    clock = Clock()
    b = Batcher(max_batch_size=4, max_wait_ms=50, token_budget=1000, sort_window=2, clock=clock)
    b.add(item(0, 5))
    assert not b.due() and b.drain_due() == []
    assert abs(b.seconds_until_due() - 0.05) < 1e-9
    clock.now = 0.051
    assert [len(x) for x in b.drain_due()] == [1]
    assert len(b) == 0


def test_batch_closes_at_window_and_max_count_sorted_by_length() -> None:
    b = Batcher(max_batch_size=4, max_wait_ms=10_000, token_budget=10_000, sort_window=2, clock=Clock())
    lengths = [50, 3, 40, 4, 60, 5, 45, 6]
    for offset, tokens in enumerate(lengths):
        b.add(item(offset, tokens))
    assert b.due()
    batches = b.drain_due()
    assert [[p.tokens for p in batch] for batch in batches] == [[3, 4, 5, 6], [40, 45, 50, 60]]


def test_token_budget_caps_padded_cost() -> None:
    items = [item(i, t) for i, t in enumerate([10, 10, 10, 30, 30, 128])]
    batches = cut(items, max_batch_size=32, token_budget=128)
    assert [[p.tokens for p in batch] for batch in batches] == [[10, 10, 10, 30], [30], [128]]
    for batch in batches:
        assert len(batch) * max(p.tokens for p in batch) <= 128


def test_commit_never_passes_an_unacknowledged_offset() -> None:
    tracker = OffsetTracker()
    for offset in range(10, 15):
        tracker.track("t", 0, offset)
    tracker.done("t", 0, 12)
    tracker.done("t", 0, 13)
    assert [tp.offset for tp in tracker.committable()] == [10]
    tracker.done("t", 0, 10)
    assert [tp.offset for tp in tracker.committable()] == [11]
    tracker.done("t", 0, 11)
    tracker.done("t", 0, 14)
    assert [tp.offset for tp in tracker.committable()] == [15]  # last processed + 1
    tracker.mark_committed(tracker.committable())
    assert tracker.committable() == []
    assert [tp.offset for tp in tracker.committable(changed_only=False)] == [15]
    assert tracker.in_flight() == 0


def test_forgotten_partition_ignores_late_acks() -> None:
    tracker = OffsetTracker()
    tracker.track("t", 0, 1)
    tracker.forget([("t", 0)])
    tracker.done("t", 0, 1)
    assert tracker.committable() == []
