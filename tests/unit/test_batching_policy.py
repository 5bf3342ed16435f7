"""The engine's batching policy with a fake clock and a fake model (no TensorFlow, no wall-clock waits).

Continuous batching (``max_wait_ms`` = 0, the default): an idle engine scores a lone text at once, even when the
clock never moves; while the model is busy texts gather, and the next batches fill to the count and token limits,
sorted by length; a long text never shares a batch past the token budget.  The fixed window (``max_wait_ms`` > 0)
still holds texts until they are due, and flush/stop keep their meaning.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np
import pytest

from stream_worker.engine.inference import Engine, Overloaded, Scored


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeModel:
    """Scores every text 0.75 and records each batch; ``hold()`` keeps the model busy until ``release()``."""

    version = "1"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()  # set when a batch has begun
        self._gate = threading.Event()
        self._gate.set()
        self._lock = threading.Lock()

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self.batches.append(list(texts))
        self.started.set()
        assert self._gate.wait(600), "the test never released the model"
        return np.full(len(texts), 0.75, dtype=np.float32)


def engine_for(model: FakeModel, clock: FrozenClock, **kw: int) -> Engine:
    settings = {"max_batch_size": 8, "max_wait_ms": 0, "token_budget": 4096, "sort_window": 4, **kw}
    return Engine(model, clock=clock, **settings).start()  # type: ignore[arg-type]


def results(futures: list[Future[object]]) -> list[object]:
    return [f.result(timeout=600) for f in futures]


def test_an_idle_engine_scores_a_lone_text_at_once() -> None:
    model, clock = FakeModel(), FrozenClock()
    engine = engine_for(model, clock)
    try:
        result = engine.submit("a lone review", 4).result(timeout=600)  # the clock never moves: no wait can expire
        assert isinstance(result, Scored) and result.score == pytest.approx(0.75)
        assert model.batches == [["a lone review"]]
    finally:
        engine.stop()


def test_under_backlog_batches_fill_to_the_count_limit_sorted_by_length() -> None:
    model, clock = FakeModel(), FrozenClock()
    engine = engine_for(model, clock, max_batch_size=8)
    try:
        model.hold()
        first = engine.submit("first", 2)
        assert model.started.wait(600)  # the model is busy with the first text
        texts = [("word " * (1 + i % 7)).strip() for i in range(30)]
        futures = [engine.submit(t, 1 + i % 7) for i, t in enumerate(texts)]
        model.release()
        results([first, *futures])
    finally:
        engine.stop()
    assert model.batches[0] == ["first"]
    later = model.batches[1:]
    assert [len(b) for b in later] == [8, 8, 8, 6]  # what gathered during the busy batch, cut at the count
    lengths = [len(t.split()) for b in later for t in b]
    assert lengths == sorted(lengths)  # sorted by length across the batches: similar lengths share a batch


def test_a_long_text_never_shares_a_batch_past_the_token_budget() -> None:
    model, clock = FakeModel(), FrozenClock()
    engine = engine_for(model, clock, max_batch_size=8, token_budget=1024)
    try:
        model.hold()
        first = engine.submit("first", 2)
        assert model.started.wait(600)
        tokens = {f"short {i}": 16 for i in range(10)} | {"long one": 900, "long two": 600}
        futures = [engine.submit(t, n) for t, n in tokens.items()]
        model.release()
        results([first, *futures])
    finally:
        engine.stop()
    for batch in model.batches[1:]:
        padded = len(batch) * max(tokens[t] for t in batch)
        assert padded <= 1024 or len(batch) == 1, batch
    assert ["long one"] in model.batches and ["long two"] in model.batches


def test_texts_submitted_together_start_in_one_batch() -> None:
    model, clock = FakeModel(), FrozenClock()
    engine = engine_for(model, clock)
    try:
        with engine.submitting():
            futures = [engine.submit(f"text {i}", 3) for i in range(5)]
            assert model.batches == []  # nothing starts while the caller is still submitting
        results(futures)
    finally:
        engine.stop()
    assert model.batches == [[f"text {i}" for i in range(5)]]


def test_fixed_window_holds_texts_until_due_or_flushed_and_stop_refuses_new_ones() -> None:
    model, clock = FakeModel(), FrozenClock()
    engine = engine_for(model, clock, max_batch_size=4, max_wait_ms=25, sort_window=4)
    try:
        futures = [engine.submit(f"text {i}", 3) for i in range(3)]
        assert engine.waiting() == 3 and model.batches == []  # window 16 not full, the clock has not moved
        assert engine.flush(600)  # flush scores what waits, whatever the policy
        assert all(isinstance(r, Scored) for r in results(futures))
        later = engine.submit("later", 3)
        clock.now += 0.030  # past max_wait_ms: due at the next look
        engine.submit("one more", 3)  # wakes the inference thread, which now finds the pool due
        assert isinstance(later.result(timeout=600), Scored)
    finally:
        engine.stop()
    with pytest.raises(Overloaded):
        engine.submit("after stop", 3)
    assert model.batches[0] == ["text 0", "text 1", "text 2"]
