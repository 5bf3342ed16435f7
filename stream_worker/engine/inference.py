"""The batching + scoring engine: one home for the Kafka worker and the HTTP server.

Split as queue / batcher / backend (the layout of HF text-embeddings-inference): callers ``submit`` texts and get
futures; one inference thread owns the model, cuts what waits into length-sorted batches (``batch.Batcher``: max
count, max wait, padded-token budget, sort window) and resolves each future with its own score.  The caller's
thread (the Kafka loop, the HTTP event loop) keeps polling, decoding and producing while a batch runs:
TensorFlow releases the GIL inside its kernels.

Rules, in steps:

1. ``submit(text, tokens)`` returns a ``Future``; when ``max_queue`` texts already wait, it raises ``Overloaded``
   at once (the server answers 429; the Kafka loop never gets there because it polls only for free room).
2. The inference thread scores when it is free and the pool is due (``batch.Batcher``): by default (continuous
   batching, ``max_wait_ms`` = 0) as soon as anything waits, so a lone text is scored at once and, under load,
   the next batch is whatever gathered while the last one ran (no fixed wait: TEI and Triton's dynamic batcher
   work this way); with ``max_wait_ms`` > 0 when ``sort_window x max_batch_size`` texts wait or the oldest waited
   ``max_wait_ms``; always when ``flush()`` asks.  A caller that submits several texts at once (the Kafka loop,
   one poll's messages) does so inside ``submitting()``, so they start in the same batch instead of the first
   one being taken alone.
3. Between two batches it takes a newly loaded model version from the ``ModelWatcher`` (hot reload), so each batch
   is scored by exactly one version, which its results name (``Scored.version``).
4. A batch the model rejects is bisected (``score.score_or_isolate``); only the texts the model rejects resolve to
   ``ScoringFailed``.  Any other error fails the futures of that batch with the exception (infrastructure).
5. ``flush()`` scores everything that waits and returns when it is done (rebalance, stop); ``stop()`` ends the
   thread after a final flush.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

from stream_worker.common.errors import ModelError, ScorerError, ScoringFailed
from stream_worker.common.metrics import Metrics
from stream_worker.common.settings import EngineSettings
from stream_worker.engine.batch import Batcher
from stream_worker.engine.model_repo import ModelRepository, ModelWatcher, Version, initial_model
from stream_worker.engine.score import Scorer, configure_precision, configure_threads, score_or_isolate

log = logging.getLogger(__name__)


class Overloaded(ScorerError):
    """The engine's queue is full; the caller should shed load (HTTP 429) and retry later."""


@dataclass(frozen=True, slots=True)
class Scored:
    """One text's result: probability of POSITIVE and the model version that computed it; how long it waited in
    the queue and how long its batch's model call took (seconds)."""

    score: float
    version: str
    queue_s: float = field(default=0.0, compare=False)
    inference_s: float = field(default=0.0, compare=False)


Result = Scored | ScoringFailed


@dataclass(slots=True)
class _Job:
    text: str
    tokens: int
    future: Future[Result] = field(default_factory=Future)
    submitted: float = field(default_factory=time.perf_counter)


class Engine:
    def __init__(
        self,
        scorer: Scorer,
        *,
        max_batch_size: int,
        max_wait_ms: int,
        token_budget: int,
        sort_window: int = 1,
        max_queue: int = 4096,
        metrics: Metrics | None = None,
        watcher: ModelWatcher | None = None,
        on_swap: Callable[[Scorer, Scorer], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scorer = scorer
        self._batcher: Batcher[_Job] = Batcher(max_batch_size, max_wait_ms, token_budget, sort_window, clock)
        self._max_queue = max_queue
        self._metrics = metrics
        self._watcher = watcher
        self._on_swap = on_swap
        self._cond = threading.Condition()
        self._force = False
        self._busy = False
        self._holds = 0  # callers inside submitting()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    # --- callers ---------------------------------------------------------------------------------------------
    def start(self) -> Engine:
        self._thread.start()
        return self

    def submit(self, text: str, tokens: int) -> Future[Result]:
        job = _Job(text, tokens)
        with self._cond:
            if self._stopping:
                raise Overloaded("the engine is stopping")
            if len(self._batcher) >= self._max_queue:
                raise Overloaded(f"{len(self._batcher)} texts are waiting (max_queue={self._max_queue})")
            self._batcher.add(job)
            if self._metrics is not None:
                self._metrics.queue_depth.set(len(self._batcher))
            self._cond.notify()
        return job.future

    @contextlib.contextmanager
    def submitting(self) -> Iterator[None]:
        """Submit several texts as one arrival: the inference thread does not start a batch until the block ends
        (a flush still does).  Keep the block short: it only spans the caller's own submits."""
        with self._cond:
            self._holds += 1
        try:
            yield
        finally:
            with self._cond:
                self._holds -= 1
                self._cond.notify()

    def waiting(self) -> int:
        with self._cond:
            return len(self._batcher)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Score everything that waits now; True when done within ``timeout_s``."""
        with self._cond:
            self._force = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: not len(self._batcher) and not self._busy, timeout_s)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    # --- the inference thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._force or self._stopping or (not self._holds and self._batcher.due())):
                    self._cond.wait(self._batcher.seconds_until_due() if len(self._batcher) else None)
                if self._stopping and not len(self._batcher):
                    self._cond.notify_all()
                    return
                batches = self._batcher.drain()
                self._force = False
                self._busy = True
                if self._metrics is not None:
                    self._metrics.queue_depth.set(0)
            try:
                for batch in batches:
                    self._maybe_swap()
                    self._score(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _maybe_swap(self) -> None:
        if self._watcher is None:
            return
        ready = self._watcher.take()
        if ready is None:
            return
        new = ready[1]
        assert isinstance(new, Scorer)
        old, self.scorer = self.scorer, new
        if self._on_swap is not None:
            self._on_swap(old, new)

    def _score(self, batch: list[_Job]) -> None:
        batch = [job for job in batch if not job.future.cancelled()]  # a caller gave up (HTTP deadline)
        if not batch:
            return
        scorer = self.scorer
        started = time.perf_counter()
        if self._metrics is not None:
            for job in batch:
                self._metrics.queue_wait_seconds.observe(started - job.submitted)
        try:
            results = score_or_isolate(scorer, [job.text for job in batch])
        except Exception as exc:  # not the texts' fault: every caller of this batch gets the error
            log.error("batch failed", extra={"error": type(exc).__name__, "size": len(batch)})
            for job in batch:
                with contextlib.suppress(InvalidStateError):
                    job.future.set_exception(exc)
            return
        inference_s = time.perf_counter() - started
        if self._metrics is not None:
            self._metrics.inference_seconds.observe(inference_s)
            self._metrics.batch_size.observe(len(batch))
            self._metrics.batch_tokens.observe(len(batch) * max(job.tokens for job in batch))
        for job, raw in zip(batch, results, strict=True):
            waited = started - job.submitted
            result: Result = raw if isinstance(raw, ScoringFailed) else Scored(raw, scorer.version, waited, inference_s)
            with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
                job.future.set_result(result)


def open_engine(
    settings: EngineSettings,
    metrics: Metrics,
    on_swap: Callable[[Scorer, Scorer], None] | None = None,
    max_queue: int = 4096,
) -> tuple[Engine, ModelWatcher, str]:
    """Set threads and precision, load and warm up the version the policy names, start the watcher and the
    engine (what both doors do at start).  Returns (engine, watcher, effective precision)."""
    configure_threads(settings.inference_threads)
    precision = configure_precision(settings.precision)

    def load(version: Version) -> Scorer:
        scorer = Scorer.load_version(version.number, version.path)
        scorer.last_warmup_s = scorer.warm_up(settings.max_batch_size, scorer.shape(settings.max_sequence_tokens)[0])
        return scorer

    def refused(version: Version, error: ModelError) -> None:
        metrics.model_load_failures.labels(reason=error.reason).inc()
        log.error(
            "model version refused; serving on with the current one",
            extra={"model_version": version.number, "reason": str(error)},
        )

    def swapped(old: Scorer, new: Scorer) -> None:
        metrics.serve_version(new.version, old.version)
        metrics.model_swaps.inc()
        log.info("model version swapped", extra={"model_version": new.version, "previous": old.version})
        if on_swap is not None:
            on_swap(old, new)

    repo = ModelRepository(settings.model_dir, settings.model_version, settings.model_settle_s)
    number, scorer = initial_model(repo, load)
    metrics.serve_version(scorer.version)
    metrics.warmup_seconds.set(scorer.last_warmup_s)
    watcher = ModelWatcher(repo, load, number, settings.model_poll_interval_s, refused).start()
    engine = Engine(
        scorer,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        token_budget=settings.token_budget,
        sort_window=settings.sort_window,
        max_queue=max_queue,
        metrics=metrics,
        watcher=watcher,
        on_swap=swapped,
    ).start()
    return engine, watcher, precision
