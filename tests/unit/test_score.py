"""The score stage on a real (small) SavedModel: version choice, contract checks, batch failure isolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_worker.common.errors import ModelError, ScoringFailed
from stream_worker.engine.score import Scorer, latest_version, score_or_isolate
from tests.toy_model import POISON


def test_latest_integer_version_wins(tmp_path: Path) -> None:
    for name in ("3", "12", "not-a-version", "99"):
        (tmp_path / name).mkdir()
    for name in ("3", "12", "not-a-version"):
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert latest_version(tmp_path) == (12, tmp_path / "12")  # 99 has no saved_model.pb
    with pytest.raises(ModelError):
        latest_version(tmp_path / "missing")


def test_scores_and_isolates_failures(toy_model_dir: Path) -> None:
    scorer = Scorer.load(toy_model_dir)
    assert scorer.version == "7"
    scores = scorer(["a great film", "an awful waste", "日本語 [NAME] <EMAIL>"])
    assert scores[0] > 0.5 > scores[1] and abs(scores[2] - 0.5) < 1e-6
    assert scorer.warm_up(batch_size=8, sequence_tokens=16) >= 0.0
    results = score_or_isolate(scorer, ["good", f"x {POISON}", "bad", "fine", POISON])
    assert [type(r).__name__ for r in results] == [
        "float",
        "ScoringFailed",
        "float",
        "float",
        "ScoringFailed",
    ]
    assert isinstance(results[1], ScoringFailed) and results[1].reason == "scoring_failed"


def test_model_without_contract_is_refused(tmp_path: Path) -> None:
    import tensorflow as tf

    class Wrong(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"score": x}

    module = Wrong()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.serve})
    with pytest.raises(ModelError, match=r"tf\.string"):
        Scorer.load(tmp_path)
