"""What ``scorer bench`` measures and keeps: the options of a run, one variant's measurements, the variant names.
Both the runner and the report read these; neither imports the other's module for them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASELINE = "scorer worker x1 fp32 (baseline)"
DEFAULT = "scorer worker, default settings"
FIXED_WINDOW = "scorer worker, fixed 25 ms batching window (the previous default)"
PEER = "per-message scorer (poll one, score one, produce one)"
SERVE = "scorer serve (default settings)"
NAIVE = "naive HTTP server (one model call per request)"
REGISTRY = "scorer worker, registry-framed Avro in and out (Schema Registry)"


@dataclass
class Options:
    model_dir: Path
    output_dir: Path
    quick: bool = False
    schema_registry_url: str | None = None  # set: the registry variant runs (framed input, framed scores)
    rounds: int = 2
    bootstrap_servers: str | None = None
    short_texts: int = 1024
    long_texts: int = 96
    peer_texts: int = 128
    latency_seconds: float = 15.0
    http_requests: int = 1024


@dataclass
class Run:
    variant: str
    mix: str
    texts_per_s: list[float] = field(default_factory=list)
    tokens_per_s: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def median(self) -> float:
        return statistics.median(self.texts_per_s) if self.texts_per_s else 0.0

    def median_tokens(self) -> float:
        return statistics.median(self.tokens_per_s) if self.tokens_per_s else 0.0
