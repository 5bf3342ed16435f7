"""Score stage: load the newest model version and run its ``serving_default`` on raw strings.

Model contract (shared with ``training/``): ``tf.saved_model.load(dir).signatures["serving_default"]`` takes one
1-D ``tf.string`` tensor of raw texts and returns a dict with ``score`` (float32, probability of POSITIVE).  The
tokenizer lives inside the SavedModel; this module depends on nothing else in it.

The model repository is what TFX Pusher writes: ``<model_dir>/<integer version>/saved_model.pb``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from stream_worker.common.cpus import available_cores
from stream_worker.common.errors import ModelContractError, ModelError, ScoringFailed, WarmupFailed
from stream_worker.engine.model_repo import versions
from stream_worker.engine.tf_runtime import load_text_ops, tensorflow

log = logging.getLogger(__name__)

_SCORE_KEY = "score"


def latest_version(model_dir: Path) -> tuple[int, Path]:
    """The newest ``<integer>/saved_model.pb`` under ``model_dir`` (the repository's rules: ``model_repo``)."""
    for found in versions(model_dir):  # newest first; raises ModelError when the repository does not exist
        if (found.path / "saved_model.pb").is_file():
            return found.number, found.path
    raise ModelError(f"no <integer version>/saved_model.pb under {model_dir}")


_threads_set = False
_precision: str | None = None

Precision = Literal["auto", "fp32", "bf16"]


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of this machine (Linux /proc/cpuinfo)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def choose_precision(requested: str, flags: set[str]) -> tuple[str, str]:
    """(effective precision, why) for a requested one: ``auto`` is bf16 where the CPU computes bf16 natively
    (AVX512_BF16 or AMX), else fp32; an explicit bf16 on a CPU without it falls back to fp32."""
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    if requested == "fp32":
        return "fp32", "requested"
    if native:
        return "bf16", "requested" if requested == "bf16" else "cpu has " + "/".join(
            sorted(flags & {"avx512_bf16", "amx_bf16"})
        )
    return "fp32", "cpu has neither avx512_bf16 nor amx_bf16"


def configure_precision(requested: str, flags: set[str] | None = None) -> str:
    """Set the process's inference precision before any model is loaded; returns the effective precision.

    bf16 uses TensorFlow's grappler pass ``auto_mixed_precision_onednn_bfloat16`` on the loaded ``serving_default``:
    matrix multiplications run in bfloat16 while the SavedModel stays the same (no re-export); the tokenizer and
    the string ops are untouched.  Set once per process.
    """
    global _precision
    if _precision is not None:
        return _precision
    effective, why = choose_precision(requested, cpu_flags() if flags is None else flags)
    if requested == "bf16" and effective != "bf16":
        log.warning("bf16 requested but not supported natively here; scoring in fp32", extra={"reason": why})
    if effective == "bf16":
        tf = tensorflow()

        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    log.info("inference precision", extra={"precision": effective, "requested": requested, "reason": why})
    _precision = effective
    return effective


def configure_threads(inference_threads: int) -> None:
    """TensorFlow intra-op threads for this process, set once.  0: one per core this process may use (TensorFlow's
    own default counts the machine's cores: too many in a container with a CPU limit)."""
    global _threads_set
    if not _threads_set:
        tf = tensorflow()

        try:
            tf.config.threading.set_intra_op_parallelism_threads(inference_threads or available_cores())
        except RuntimeError:  # TensorFlow already initialised its runtime in this process: its setting stays
            if inference_threads:
                raise
        _threads_set = True


@dataclass
class Scorer:
    """``scorer(texts) -> np.ndarray[float32]`` of POSITIVE probabilities."""

    version: str
    path: Path
    _fn: Any
    _input_name: str
    last_warmup_s: float = 0.0
    window: tuple[int, int, int] | None = None  # (max_seq_length, stride, max_windows) from assets.extra/scorer.json

    def shape(self, fallback_max_tokens: int) -> tuple[int, int, int]:
        """(tokens per window, window stride, max windows per text) for the guard's cost estimate: the model's own
        ``assets.extra/scorer.json`` when it has one, else one window of ``fallback_max_tokens`` (the setting)."""
        return self.window or (fallback_max_tokens, 0, 1)

    @classmethod
    def load(cls, model_dir: Path, inference_threads: int = 0) -> Scorer:
        """The newest version of ``model_dir`` (see ``model_repo`` for the rollout rules)."""
        configure_threads(inference_threads)
        version, path = latest_version(model_dir)
        return cls.load_version(version, path)

    @classmethod
    def load_version(cls, version: int, path: Path) -> Scorer:
        """Load one version folder and check the contract; any failure is a ``ModelError``."""
        tf = tensorflow()
        load_text_ops()  # the tokenizer ops the SavedModel uses

        try:
            model = tf.saved_model.load(str(path))
            fn = model.signatures["serving_default"]
        except Exception as exc:  # corrupt files raise protobuf, OS and TF errors alike
            raise ModelError(f"cannot load serving_default of version {version} ({type(exc).__name__})") from exc
        inputs = fn.structured_input_signature[1]
        if len(inputs) != 1:
            raise ModelContractError(f"serving_default must take exactly one input, takes {sorted(inputs)}")
        ((name, spec),) = inputs.items()
        if spec.dtype != tf.string or spec.shape.rank != 1:
            raise ModelContractError(f"serving_default input {name!r} must be a 1-D tf.string tensor, is {spec}")
        if _SCORE_KEY not in fn.structured_outputs:
            outputs = sorted(fn.structured_outputs)
            raise ModelContractError(f"serving_default must return {_SCORE_KEY!r}, returns {outputs}")
        scorer = cls(version=str(version), path=path, _fn=fn, _input_name=name, window=read_window(path))
        scorer._keep = model  # type: ignore[attr-defined]  # the signature needs its model alive
        log.info("model loaded", extra={"model_version": scorer.version, "model_path": str(path)})
        return scorer

    def __call__(self, texts: list[str]) -> np.ndarray:
        tf = tensorflow()

        out = self._fn(**{self._input_name: tf.constant(texts, dtype=tf.string)})
        scores = np.asarray(out[_SCORE_KEY], dtype=np.float64).reshape(-1)
        if scores.shape[0] != len(texts):
            raise ModelError(f"model returned {scores.shape[0]} scores for {len(texts)} texts")
        return scores

    def warm_up(self, batch_size: int, sequence_tokens: int) -> float:
        """Run one maximum-size batch (the longest shape the worker will send); returns its seconds."""
        tf = tensorflow()

        text = " ".join(["warmup"] * sequence_tokens)
        try:
            self(["ok"])
            started = time.perf_counter()
            scores = self([text] * batch_size)
        except tf.errors.OpError as exc:
            raise WarmupFailed(f"warm-up of version {self.version} failed ({type(exc).__name__})") from exc
        seconds = time.perf_counter() - started
        if not np.all(np.isfinite(scores)) or np.any((scores < 0) | (scores > 1)):
            raise WarmupFailed("warm-up scores are not probabilities in [0, 1]")
        return seconds


def read_window(path: Path) -> tuple[int, int, int] | None:
    """The long-text windowing the model does, from ``<version>/assets.extra/scorer.json`` (written by training)."""
    meta = path / "assets.extra" / "scorer.json"
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text())
        return int(data["max_seq_length"]), int(data.get("window_stride", 0)), int(data.get("max_windows", 1))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"unreadable {meta} ({type(exc).__name__})") from exc


def score_or_isolate(scorer: Scorer, texts: list[str]) -> list[float | ScoringFailed]:
    """Score a batch; if the model rejects it, bisect to find the texts it rejects and fail only those."""
    tf = tensorflow()

    try:
        scores = scorer(texts)
        bad = ~np.isfinite(scores) | (scores < 0) | (scores > 1)
        if not bad.any():
            return [float(s) for s in scores]
        if len(texts) == 1:
            return [ScoringFailed("model returned a score outside [0, 1]")]
    except tf.errors.InvalidArgumentError as exc:
        if len(texts) == 1:
            failed = ScoringFailed(f"model rejected the text ({type(exc).__name__})")
            failed.__cause__ = exc
            return [failed]
    middle = len(texts) // 2
    return score_or_isolate(scorer, texts[:middle]) + score_or_isolate(scorer, texts[middle:])
