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

from stream_worker.avro import OUTPUT_SCHEMA, load_schema
from stream_worker.demo import load_reviews
from stream_worker.score import latest_version
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
