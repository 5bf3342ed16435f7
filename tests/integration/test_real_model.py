"""The worker on the real model that the TFX pipeline pushed (ci profile, real MiniLM weights).

Needs ``scripts/test_training.sh`` to have pushed a model to ``$SCORER_CI_RUN_DIR/serving_model`` (``make test``
runs it first).  A missing model is a failure, not a skip.  Scores that come through Kafka, after micro-batching
and length sorting, must equal the model called directly on each text alone.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest

from stream_worker.engine.score import latest_version
from stream_worker.pipeline.avro import OUTPUT_SCHEMA, load_schema
from stream_worker.tools.demo import load_reviews
from tests.harness import REPO, WorkerThread, avro_messages, produce, read_topic, worker_settings

pytestmark = pytest.mark.integration

CI_RUN = Path(os.environ.get("SCORER_CI_RUN_DIR", REPO / ".cache" / "ci-run"))
EDGE_TEXTS = [
    "[NAME] said the film was wonderful, call <EMAIL> for tickets",
    "Très bien joué, magnifique! 😀",
    "plot " * 3000,  # far longer than the model's sequence length: truncated inside the model
    "meh",
]


def test_worker_scores_with_the_pushed_model(kafka_broker: Any, topic_factory: Callable[..., str]) -> None:
    base = CI_RUN / "serving_model"
    assert base.is_dir(), f"no pushed model under {base}: run scripts/test_training.sh first"
    version, _ = latest_version(base)
    texts = load_reviews(120) + EDGE_TEXTS
    settings = worker_settings(
        kafka_broker, topic_factory, base, partitions=2, max_wait_ms=200, max_sequence_tokens=64, token_budget=1024
    )
    in_topic, out_topic = settings.input_topic, settings.output_topic
    produce(
        kafka_broker.bootstrap_servers,
        in_topic,
        avro_messages([{"id": str(i), "text": t} for i, t in enumerate(texts)]),
    )
    with WorkerThread(settings) as worker:
        out = read_topic(kafka_broker.bootstrap_servers, out_topic, lambda r: len(r) >= len(texts), 300)
        scorer = worker.worker.scorer
    assert scorer is not None and scorer.version == str(version)
    decoded = [fastavro.schemaless_reader(io.BytesIO(r.value or b""), load_schema(OUTPUT_SCHEMA), None) for r in out]
    got = {int(r["id"]): r["score"] for r in decoded}
    assert sorted(got) == list(range(len(texts))), "every text must be scored exactly once"
    direct = np.array([scorer([t])[0] for t in texts])
    through_kafka = np.array([got[i] for i in range(len(texts))])
    assert np.max(np.abs(direct - through_kafka)) < 1e-5
    assert len({round(s, 3) for s in through_kafka}) > 10, "a real model gives varied scores"


def test_bf16_worker_scores_close_to_fp32(kafka_broker: Any, topic_factory: Callable[..., str], tmp_path: Path) -> None:
    """``scorer worker --precision bf16`` (same SavedModel, no re-export): scores within 0.02 of fp32, labels
    almost all equal, and the precision header says bf16 where the CPU has it (else fp32, with a log line)."""
    import subprocess
    import sys

    from stream_worker.engine.score import Scorer, choose_precision, cpu_flags
    from stream_worker.tools.broker import free_port
    from tests.harness import http_status, wait_for

    base = CI_RUN / "serving_model"
    assert base.is_dir(), f"no pushed model under {base}: run scripts/test_training.sh first"
    texts = load_reviews(200)
    in_topic, out_topic, dlq = (topic_factory(kafka_broker, partitions=2) for _ in range(3))
    produce(
        kafka_broker.bootstrap_servers,
        in_topic,
        avro_messages([{"id": str(i), "text": t} for i, t in enumerate(texts)]),
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORER_")}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "scorer"),
            "worker",
            "--precision",
            "bf16",
            "--bootstrap-servers",
            kafka_broker.bootstrap_servers,
            "--input-topic",
            in_topic,
            "--output-topic",
            out_topic,
            "--dead-letter-topic",
            dlq,
            "--group-id",
            f"g-{in_topic}",
            "--model-dir",
            str(base),
            "--metrics-port",
            str(port),
            "--session-timeout-ms",
            "6000",
        ],
        env=env,
        stdout=(tmp_path / "w.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        out = read_topic(kafka_broker.bootstrap_servers, out_topic, lambda r: len(r) >= len(texts), 300)
        # A pool of two (processes auto): one process can score every text while the other still warms up in bf16
        # (emulated on AVX2 machines); the pool is ready once both are.
        log_tail = lambda: (tmp_path / "w.log").read_text(errors="replace")[-3000:]  # noqa: E731
        wait_for(lambda: http_status(port, "/readyz") == 200, 300, "the pool's /readyz to answer 200", log_tail)
    finally:
        proc.terminate()
        proc.wait(60)
    expected_precision = choose_precision("bf16", cpu_flags())[0]
    assert {r.headers.get("scorer.model.precision") for r in out} == {expected_precision.encode()}
    decoded = [fastavro.schemaless_reader(io.BytesIO(r.value or b""), load_schema(OUTPUT_SCHEMA), None) for r in out]
    got = np.array([s["score"] for s in sorted(decoded, key=lambda s: int(s["id"]))])
    fp32 = Scorer.load(base)(texts)  # this test process runs fp32 (tests/harness.py)
    diff = np.abs(got - fp32)
    flipped = int(np.sum((got >= 0.5) != (fp32 >= 0.5)))
    print(f"\nbf16 vs fp32 on {len(texts)} reviews: max |diff| {diff.max():.4f}, labels flipped {flipped}")
    assert diff.max() < 0.05 and flipped <= len(texts) // 50
