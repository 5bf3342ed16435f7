"""The whole pipeline with the `ci` profile on the real MiniLM weights and a small real Rotten Tomatoes subset.

Pushes to <ci-run>/serving_model/<version>/ (ci-run = $SCORER_CI_RUN_DIR or <repo>/.cache/ci-run) and writes
<ci-run>/reference_scores.json (short texts and multi-window long texts), which
tests/integration/test_pushed_model_crossenv.py checks in the worker environment (TF 2.21).
"""

import json
import pathlib
import shutil

import numpy as np
import pytest
from conftest import ci_run_dir

COMPONENTS = ("ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "DataValidationGate",
              "Transform", "Trainer", "Evaluator", "Pusher")

LONG_TEXT = ("The first act is a slow, careful portrait of a family falling apart, and it is beautifully acted. "
             * 30 + "But in the end the film collapses into a loud, incoherent and utterly boring mess. ") * 2

# A long, neutral plot summary (several windows of the ci model) followed by a clearly positive or negative verdict.
NEUTRAL = ("A retired police officer returns to his home town after his brother disappears. He questions the "
           "neighbours, visits the old factory and reads the letters his brother left behind. ") * 4
POSITIVE_END = ("In the end, this is a wonderful, moving and beautifully acted film, one of the best of the year. "
                "I loved it.")
NEGATIVE_END = "In the end, this is a dull, lifeless and badly acted film, one of the worst of the year. I hated it."

REFERENCE_TEXTS = [
    "",
    " ",
    "\t\n",
    "a",
    "Great!",
    "Terrible.",
    "An absorbing documentary.",
    "A gorgeous, witty, seductive movie.",
    "The plot is dull and the acting is wooden; I walked out.",
    "Not bad at all, actually quite good.",
    "Not good at all.",
    LONG_TEXT,
    "word " * 600,
    "[NAME] loved this film and told [NAME] about it.",
    "Contact me at <EMAIL> or <PHONE>, the movie was awful.",
    "[NAME] <EMAIL> <URL> [LOCATION] [DATE]",
    "Café crème brûlée — naïve façade, très bien!",
    "Ein wunderbarer Film, großartig gespielt.",
    "Это был ужасный фильм.",
    "这部电影非常好看\uff01",
    "この映画は最悪だった。",
    "فيلم رائع جدا",
    "😀😀 best movie ever 🎬🍿",
    "worst. movie. ever. 👎",
    "control\x00chars\x07and\x1bescapes",
    "replacement \ufffd\ufffd characters",
    "zero\u200bwidth\u200djoiners\ufeff",
    "ALL CAPS AMAZING PERFORMANCE",
    "ellipsis… and “smart quotes” and \u2018single\u2019 ones",
    "1234567890 !!! ??? ...",
    "http://example.com/review?id=42&x=y",
    "It's a mess: too long, too loud, and too stupid to enjoy.",
    "Tender, funny and unexpectedly wise.",
    "Mixed feelings: great cast, weak script.",
    # multi-window texts (2, 3, ... windows and one over the max_windows cap)
    NEUTRAL + POSITIVE_END,
    NEUTRAL + NEGATIVE_END,
    "A gorgeous, witty, seductive movie. " * 8,
    "The plot is dull and the acting is wooden; I walked out. " * 5 + "Tender, funny and unexpectedly wise. " * 5,
    " ".join(f"Scene {i}: the hero walks to the station and buys a ticket." for i in range(40)),
]


@pytest.fixture(scope="module")
def ci_run():
    from training import cli

    run = ci_run_dir()
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    rc = cli.main(["train", "--profile", "ci", "--data", "rotten_tomatoes",
                   "--model-base", str(run / "serving_model"), "--work-dir", str(run / "work")])
    return rc, run


def _pushed(run: pathlib.Path) -> pathlib.Path:
    versions = sorted(int(p.name) for p in (run / "serving_model").iterdir() if p.name.isdigit())
    assert versions, "nothing pushed"
    return run / "serving_model" / str(versions[-1])


def test_every_component_ran_and_model_blessed_and_pushed(ci_run):
    rc, run = ci_run
    assert rc == 0
    root = run / "work" / "pipeline_root"
    for c in COMPONENTS:
        assert (root / c).is_dir(), f"component {c} did not run"
    blessing = sorted((root / "Evaluator" / "blessing").iterdir())[-1]
    assert (blessing / "BLESSED").exists()
    pushed = _pushed(run)
    assert (pushed / "saved_model.pb").exists()
    report = sorted((run / "work" / "reports").glob("*/report.md"))
    assert report and "fine-tuned MiniLM" in report[-1].read_text()


@pytest.fixture(scope="module")
def serving(ci_run):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    return tf.saved_model.load(str(_pushed(ci_run[1])))


def test_serving_contract(serving):
    import tensorflow as tf

    sig = serving.signatures["serving_default"]
    args, kwargs = sig.structured_input_signature
    assert not args and list(kwargs) == ["text"]
    assert kwargs["text"].dtype == tf.string and kwargs["text"].shape.as_list() == [None]
    out = sig(text=tf.constant(["what a wonderful film", "awful, boring, a waste of time"]))
    assert out["score"].dtype == tf.float32 and out["score"].shape == (2,)
    s = out["score"].numpy()
    assert ((s >= 0) & (s <= 1)).all()
    assert [x.decode() for x in out["label"].numpy()] == ["POSITIVE" if v >= 0.5 else "NEGATIVE" for v in s]
    assert "serving_examples" in serving.signatures
    empty = sig(text=tf.constant([], dtype=tf.string))
    assert empty["score"].shape == (0,)


def test_dynamic_padding_equals_full_padding(serving):
    """serving_default pads a batch's windows to the longest window; a batch containing a text longer than the
    maximum sequence length has full windows, so every other text's score is compared to full padding."""
    import tensorflow as tf

    sig = serving.signatures["serving_default"]
    short = ["Great!", "Not good at all.", "A gorgeous, witty, seductive movie.", "", "[NAME] <EMAIL>"]
    alone = np.array([sig(text=tf.constant([t]))["score"].numpy()[0] for t in short])
    dynamic = sig(text=tf.constant(short))["score"].numpy()
    full = sig(text=tf.constant([*short, LONG_TEXT]))["score"].numpy()[: len(short)]
    assert np.abs(alone - full).max() < 1e-5
    assert np.abs(dynamic - full).max() < 1e-5


def test_write_reference_scores_for_worker_env(serving, ci_run):
    import tensorflow as tf

    assert len(REFERENCE_TEXTS) >= 32
    scores = serving.signatures["serving_default"](text=tf.constant(REFERENCE_TEXTS))["score"].numpy()
    assert np.isfinite(scores).all()
    pushed = _pushed(ci_run[1])
    windows = _windows(REFERENCE_TEXTS, _metadata(ci_run[1]), ci_run[1])
    assert (windows > 1).sum() >= 5 and windows.max() == _metadata(ci_run[1])["max_windows"]
    ref = {"texts": REFERENCE_TEXTS, "scores": [float(x) for x in scores], "model_dir": str(pushed),
           "windows": [int(w) for w in windows], "scorer": _metadata(ci_run[1]),
           "version": int(pushed.name), "tensorflow": tf.__version__,
           "note": "scores of serving_default on all texts in one batch, computed in the training env"}
    path = ci_run[1] / "reference_scores.json"
    path.write_text(json.dumps(ref, indent=1, ensure_ascii=False))
    assert json.loads(path.read_text())["texts"] == REFERENCE_TEXTS


def _metadata(run: pathlib.Path) -> dict:
    return json.loads((_pushed(run) / "assets.extra" / "scorer.json").read_text())


def _windows(texts, meta, run) -> np.ndarray:
    from training import preprocessing

    counts = preprocessing.token_counts(texts, str(_pushed(run) / "assets" / "vocab.txt"))
    return preprocessing.num_windows(counts, meta["max_seq_length"], meta["window_stride"], meta["max_windows"])


def test_pushed_model_has_scorer_metadata(ci_run):
    from training import profiles

    meta = _metadata(ci_run[1])
    prof = profiles.get_profile("ci")
    assert (meta["max_seq_length"], meta["window_stride"], meta["max_windows"]) == (
        prof.max_seq_length, prof.window_stride, prof.max_windows)
    assert meta["contract"] == 1 and meta["pooling"] in ("mean", "confidence")
    assert isinstance(meta["temperature"], float) and 0.05 < meta["temperature"] < 20
    assert 0.0 <= meta["length_exponent"] <= 1.0


def test_long_text_score_depends_on_its_end(serving, ci_run):
    """The same long neutral text scores on opposite sides of 0.5 with a positive vs a negative last paragraph
    (the one-window head+tail scorer reads the end too, but only 3/4 of a window of it; here every window counts)."""
    import tensorflow as tf

    texts = [NEUTRAL + POSITIVE_END, NEUTRAL + NEGATIVE_END]
    windows = _windows(texts, _metadata(ci_run[1]), ci_run[1])
    assert (windows >= 4).all(), windows
    pos, neg = serving.signatures["serving_default"](text=tf.constant(texts))["score"].numpy()
    assert pos > 0.5 > neg, (pos, neg)


def test_single_window_texts_score_as_the_one_window_scorer(serving, ci_run):
    """Texts of one window score exactly as with max_windows=1 (the previous single-window head+tail scorer, same
    weights and temperature; exported by the Trainer next to the model); long texts differ."""
    import tensorflow as tf

    from training.report import latest_artifact_dir

    run_dir = latest_artifact_dir(ci_run[1] / "work" / "pipeline_root", "Trainer", "model_run")
    one = tf.saved_model.load(str(run_dir / "variants" / "max_windows_1")).signatures["serving_default"]
    texts = REFERENCE_TEXTS
    windows = _windows(texts, _metadata(ci_run[1]), ci_run[1])
    assert (windows == 1).sum() >= 25 and (windows > 1).sum() >= 5
    got = serving.signatures["serving_default"](text=tf.constant(texts))["score"].numpy()
    ref = one(text=tf.constant(texts))["score"].numpy()
    assert np.abs(got - ref)[windows == 1].max() <= 1e-5
    assert np.abs(got - ref)[windows > 1].max() > 1e-3
