"""The model pushed by the training pipeline (TF 2.16, Python 3.10) scores identically in the worker
environment (TF 2.21, Python 3.11).

Needs the ci-profile training test to have run first: ``scripts/test_training.sh`` pushes to
``$SCORER_CI_RUN_DIR/serving_model/<version>/`` (default ``<repo>/.cache/ci-run``) and writes
``reference_scores.json`` next to it.  Missing files are a FAILURE, not a skip.
"""

import json
import os
import pathlib

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
CI_RUN = pathlib.Path(os.environ.get("SCORER_CI_RUN_DIR", REPO / ".cache" / "ci-run"))
HINT = "run scripts/test_training.sh first (it trains the ci-profile model and writes the reference scores)"


def test_pushed_model_scores_equal_training_env_reference():
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops used inside the SavedModel)

    ref_path = CI_RUN / "reference_scores.json"
    base = CI_RUN / "serving_model"
    assert ref_path.is_file(), f"missing {ref_path}: {HINT}"
    assert base.is_dir(), f"missing {base}: {HINT}"
    versions = sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())
    assert versions, f"no integer model version under {base}: {HINT}"
    ref = json.loads(ref_path.read_text())
    assert ref["version"] == versions[-1], (
        f"reference scores are for version {ref['version']} but the newest pushed version is {versions[-1]}: {HINT}"
    )
    texts, expected = ref["texts"], np.asarray(ref["scores"], dtype=np.float32)
    assert len(texts) >= 32

    sig = tf.saved_model.load(str(base / str(versions[-1]))).signatures["serving_default"]
    out = sig(text=tf.constant(texts))
    assert out["score"].dtype == tf.float32
    got = out["score"].numpy()
    assert got.shape == (len(texts),)
    diff = np.abs(got - expected)
    worst = int(diff.argmax())
    assert diff.max() <= 1e-5, f"max |diff| {diff.max():.3g} on text {texts[worst]!r}"
    labels = [x.decode() for x in out["label"].numpy()]
    assert labels == ["POSITIVE" if s >= 0.5 else "NEGATIVE" for s in got]
