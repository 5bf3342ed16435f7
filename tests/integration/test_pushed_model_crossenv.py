"""The model pushed by the training pipeline (TF 2.16, Python 3.10) scores identically in the worker
environment (TF 2.21, Python 3.11).

Needs the ci-profile training test to have run first: ``scripts/test_training.sh`` pushes to
``$SCORER_CI_RUN_DIR/serving_model/<version>/`` (default ``<repo>/.cache/ci-run``) and writes
``reference_scores.json`` next to it.  Missing files are a FAILURE, not a skip.

The reference covers short texts and multi-window long texts (the scorer cuts long texts into token windows and
pools them inside the SavedModel; ``windows`` per text were computed in the training env from
``assets.extra/scorer.json``), so the equality (1e-5) holds for the long-document path too.
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

    # Multi-window texts are covered (several windows, and one over the max_windows cap) ...
    windows = np.asarray(ref["windows"])
    meta = json.loads((base / str(versions[-1]) / "assets.extra" / "scorer.json").read_text())
    assert meta == ref["scorer"] and meta["contract"] == 1
    assert (windows > 1).sum() >= 5 and windows.max() == meta["max_windows"], windows
    # ... and score the same alone as in the mixed batch, in this environment too.
    for i in np.flatnonzero(windows > 1):
        alone = sig(text=tf.constant([texts[i]]))["score"].numpy()[0]
        assert abs(alone - expected[i]) <= 1e-5, (texts[i][:60], alone, expected[i])
