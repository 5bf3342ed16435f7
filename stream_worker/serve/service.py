"""The service behind both protocols' routes: settings, the shared engine, the guard and the anonymization guard,
request metrics; ``score`` guards every input, submits all to the engine and awaits them within the deadline.
``ApiError`` is an HTTP answer (status + message) the app renders as ``{"error": "..."}``."""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from typing import Any

from prometheus_client import Counter, Histogram

from stream_worker.common.errors import BadMessage, ScoringFailed
from stream_worker.common.metrics import Metrics
from stream_worker.common.settings import ServeSettings
from stream_worker.engine.inference import Engine, Overloaded, Scored
from stream_worker.pipeline.decode import TextRecord
from stream_worker.pipeline.guard import Checked, Guard
from stream_worker.pipeline.pii import PiiScanner, apply_policy

log = logging.getLogger(__name__)


# Per request: where its milliseconds went (the slowest input's queue wait and its batch's model time).  The app's
# middleware puts a fresh dict here before the route runs and turns it into X-Queue-Time / X-Inference-Time headers.
_TIMING: ContextVar[dict[str, float] | None] = ContextVar("scorer_request_timing", default=None)


def timing_for_this_request() -> dict[str, float]:
    holder: dict[str, float] = {}
    _TIMING.set(holder)
    return holder


def label_of(score: float) -> str:
    return "POSITIVE" if score >= 0.5 else "NEGATIVE"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Service:
    """The state behind the routes: settings, engine, guard, metrics."""

    def __init__(self, settings: ServeSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine: Engine | None = None
        self.guard = Guard(settings.max_text_bytes, settings.max_sequence_tokens)
        self.pii = PiiScanner() if settings.pii_policy != "off" else None
        r = metrics.registry
        self.requests = Counter(
            "scorer_http_requests", "HTTP requests by route and status.", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "scorer_http_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    @property
    def version(self) -> str:
        return self.engine.scorer.version if self.engine is not None else ""

    def check_model(self, name: str, version: str | None = None) -> None:
        if name != self.settings.model_name:
            raise ApiError(404, f"Servable not found for request: Latest({name})")
        if version is not None and version != self.version:
            raise ApiError(404, f"Servable not found for request: Specific({name}, {version})")

    async def score(self, texts: list[Any]) -> list[Scored]:
        """Guard every input (400 naming the index), submit all, await all within the request deadline."""
        if not texts:
            raise ApiError(400, "no inputs")
        if len(texts) > self.settings.max_texts_per_request:
            raise ApiError(400, f"{len(texts)} inputs; at most {self.settings.max_texts_per_request} per request")
        checked = []
        found: list[str] = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise ApiError(400, f"input {index}: not a string")
            try:
                ok = self.guard(TextRecord(str(index), text))
            except BadMessage as exc:
                raise ApiError(400, f"input {index}: {exc.reason}: {exc}") from None
            if self.pii is not None:
                policy = self.settings.pii_policy
                pii = apply_policy(text, policy, self.pii)
                self.metrics.count_pii(policy, pii.counts)
                if pii.rejected:
                    found.append(f"input {index}: {pii.header}")
                ok = Checked(TextRecord(ok.record.id, pii.text), ok.tokens)
            checked.append(ok)
        if found:
            raise ApiError(422, "pii_detected: personal data found (kinds per input): " + "; ".join(found))
        if self.engine is None:
            raise ApiError(503, "model not loaded yet")
        try:
            futures = [asyncio.wrap_future(self.engine.submit(c.record.text, c.tokens)) for c in checked]
        except Overloaded as exc:
            raise ApiError(429, f"overloaded: {exc}") from None
        try:
            results = await asyncio.wait_for(asyncio.gather(*futures), self.settings.request_timeout_ms / 1000)
        except TimeoutError:
            raise ApiError(504, f"no answer within request_timeout_ms={self.settings.request_timeout_ms}") from None
        out = []
        for index, result in enumerate(results):
            if isinstance(result, ScoringFailed):
                raise ApiError(400, f"input {index}: {result.reason}: {result}")
            out.append(result)
        timing = _TIMING.get()
        if timing is not None and out:
            timing["queue_ms"] = 1000 * max(r.queue_s for r in out)
            timing["inference_ms"] = 1000 * max(r.inference_s for r in out)
        return out
