"""Encode stage: scored record → output value bytes and headers.

The output record (``schemas/sentiment_score.avsc``) never echoes the text.  The output message keeps the input
key (same partitioning downstream) and carries the model version and, when present, the W3C ``traceparent``
header of the input (passed through only when it is well formed).  With a Schema Registry the value is framed
with the registered ``SentimentScore`` schema id (``registry.RegistryFramer``); without one it is plain Avro.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from stream_worker.pipeline.avro import OUTPUT_SCHEMA, AvroEncoder, load_schema
from stream_worker.pipeline.consume import Headers, Incoming

if TYPE_CHECKING:  # imported only when a registry is configured
    from stream_worker.pipeline.registry import RegistryFramer

MODEL_VERSION_HEADER = "scorer.model.version"
PRECISION_HEADER = "scorer.model.precision"
CONTENT_TYPE_HEADER = "content-type"
TRACE_HEADERS = ("traceparent", "tracestate")
_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


class ScoreEncoder:
    """``encoder(incoming, record_id, score, model_version, scored_at_ms) -> (value, headers)``.

    The model version comes with each score (the engine may swap versions between batches); ``precision`` is the
    process's inference precision (fp32 or bf16), sent as the ``scorer.model.precision`` header.
    """

    def __init__(
        self,
        schema_dir: Path | None = None,
        threshold: float = 0.5,
        precision: str = "fp32",
        framer: RegistryFramer | None = None,
        output_topic: str = "",
    ) -> None:
        self._avro = AvroEncoder(load_schema(OUTPUT_SCHEMA, schema_dir))
        self._threshold = threshold
        self.precision = precision
        self._framer = framer
        self._topic = output_topic

    def __call__(
        self, incoming: Incoming, record_id: str, score: float, model_version: str, scored_at_ms: int
    ) -> tuple[bytes, Headers]:
        record = {
            "id": record_id,
            "label": "POSITIVE" if score >= self._threshold else "NEGATIVE",
            "score": min(1.0, max(0.0, score)),
            "model_version": model_version,
            "scored_at": scored_at_ms,
            "source_topic": incoming.topic,
            "source_partition": incoming.partition,
            "source_offset": incoming.offset,
        }
        value = self._avro(record) if self._framer is None else self._framer(record, self._topic)
        headers: Headers = [
            (CONTENT_TYPE_HEADER, b"avro/binary"),
            (MODEL_VERSION_HEADER, model_version.encode()),
            (PRECISION_HEADER, self.precision.encode()),
        ]
        headers.extend(trace_headers(incoming))
        return value, headers


def trace_headers(incoming: Incoming) -> Headers:
    """The input's trace context, if its ``traceparent`` is well formed (W3C Trace Context)."""
    parent = incoming.header("traceparent")
    if parent is None or not _TRACEPARENT.match(parent.strip()):
        return []
    out: Headers = [("traceparent", parent.strip())]
    state = incoming.header("tracestate")
    if state is not None and len(state) <= 512:
        out.append(("tracestate", state))
    return out
