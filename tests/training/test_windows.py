"""Long-document windows inside the exported scorer (training/preprocessing.py, training/model.py).

Window geometry against a plain-Python reference, pooling against windows scored one at a time, single-window
texts against the one-window (head+tail) scorer, and the scorer.json metadata next to the SavedModel.  The
encoder is the real MiniLM (ci profile's layers); the head is freshly initialised (these tests check the
plumbing; tests/training/test_ci_pipeline.py checks a trained model).
"""

import json

import numpy as np
import pytest

MAX_LEN = 24  # 22 content tokens per window


@pytest.fixture(scope="module")
def vocab(ci_encoder):
    from training import encoder_export

    return encoder_export.vocab_path(ci_encoder)


@pytest.fixture(scope="module")
def keras_model(ci_encoder):
    from training import model as model_lib

    return model_lib.build_model(ci_encoder, seed=3)


def _texts():
    rng = np.random.default_rng(0)
    words = ["good", "bad", "film", "plot", "actors", "the", "unbelievably", "x", "3", "!"]
    lengths = [0, 1, 2, 3, 5, 8, 12, 21, 22, 23, 30, 44, 45, 66, 67, 90, 150, 400]
    return [" ".join(rng.choice(words, n)) for n in lengths]


def _reference_windows(n: int, content: int, stride: int, max_windows: int) -> list[tuple[int, int]]:
    """(start, length) of each window, written independently of the TF implementation."""
    if n <= content:
        return [(0, n)]
    starts = []
    s = 0
    while True:
        starts.append(min(s, n - content))
        if s + content >= n:
            break
        s += stride
    if len(starts) > max_windows:
        if max_windows == 1:
            return [(-1, content)]  # head+tail truncation, checked separately
        last = n - content
        starts = [int(np.floor(j * last / (max_windows - 1) + 0.5)) for j in range(max_windows)]
    return [(st, content) for st in starts]


@pytest.mark.parametrize("stride,max_windows", [(11, 100), (22, 100), (16, 4), (7, 2), (16, 1)])
def test_window_geometry(vocab, stride, max_windows):
    import tensorflow as tf

    from training import preprocessing

    tok = preprocessing.make_tokenizer(vocab)
    cls, sep = preprocessing.special_token_ids(vocab)
    texts = _texts()
    full = [tok.tokenize(preprocessing.normalize_text(tf.constant([t]))).merge_dims(-2, -1)[0].numpy()
            for t in texts]
    enc, index = preprocessing.encode_windows(tf.constant(texts), tok, cls, sep, MAX_LEN, stride, max_windows)
    ids, mask, index = enc["input_word_ids"].numpy(), enc["input_mask"].numpy(), index.numpy()
    assert ids.shape[1] <= MAX_LEN and (np.diff(index) >= 0).all()
    counts = preprocessing.token_counts(texts, vocab)
    assert counts.tolist() == [len(f) for f in full]
    expected_windows = preprocessing.num_windows(counts, MAX_LEN, stride, max_windows)
    assert np.bincount(index, minlength=len(texts)).tolist() == expected_windows.tolist()
    one_window = preprocessing.encode_texts(tf.constant(texts), tok, cls, sep, MAX_LEN, pad_to_max=False)
    for t, toks in enumerate(full):
        rows = np.flatnonzero(index == t)
        ref = _reference_windows(len(toks), MAX_LEN - 2, stride, max_windows)
        assert len(rows) == len(ref)
        for r, (start, length) in zip(rows, ref, strict=True):
            got = ids[r][mask[r] > 0]
            assert got[0] == cls and got[-1] == sep and len(got) == length + 2
            if start < 0:  # max_windows=1 on a long text: exactly the one-window (head+tail) encoding
                np.testing.assert_array_equal(got, one_window["input_word_ids"].numpy()[t][
                    one_window["input_mask"].numpy()[t] > 0])
            else:
                np.testing.assert_array_equal(got[1:-1], toks[start:start + length])
        if len(ref) > 1 and ref[0][0] >= 0:  # head and tail windows are always kept
            assert ref[0][0] == 0 and ref[-1][0] + ref[-1][1] == len(toks)


def _module(keras_model, vocab, **kw):
    from training import model as model_lib

    return model_lib.ScorerModule(keras_model, vocab, MAX_LEN, **kw)


def test_single_window_texts_score_as_the_one_window_model(keras_model, vocab):
    import tensorflow as tf

    texts = _texts()
    long_ = _module(keras_model, vocab, window_stride=16, max_windows=8, pooling="confidence",
                    temperature=1.7, length_exponent=0.4)
    one = _module(keras_model, vocab, max_windows=1, temperature=1.7)
    got = long_.serve(tf.constant(texts))["score"].numpy()
    ref = one.serve(tf.constant(texts))["score"].numpy()
    from training import preprocessing

    single = preprocessing.token_counts(texts, vocab) <= MAX_LEN - 2
    assert single.sum() >= 4 and (~single).sum() >= 4
    np.testing.assert_allclose(got[single], ref[single], atol=1e-5, rtol=0)
    # Alone or in a batch with long texts: the same score.
    for i in np.flatnonzero(single):
        alone = long_.serve(tf.constant([texts[i]]))["score"].numpy()[0]
        assert abs(alone - got[i]) < 1e-5


@pytest.mark.parametrize("pooling", ["mean", "confidence"])
def test_pooling_equals_windows_scored_one_by_one(keras_model, vocab, pooling):
    import tensorflow as tf

    from training import model as model_lib
    from training import preprocessing

    temp, expo = 1.3, 0.5
    module = _module(keras_model, vocab, window_stride=16, max_windows=6, pooling=pooling, temperature=temp,
                     length_exponent=expo)
    texts = _texts()
    got = module.serve(tf.constant(texts))["score"].numpy()
    tok = preprocessing.make_tokenizer(vocab)
    cls, sep = preprocessing.special_token_ids(vocab)
    enc, index = preprocessing.encode_windows(tf.constant(texts), tok, cls, sep, MAX_LEN, 16, 6)
    enc, index = {k: v.numpy() for k, v in enc.items()}, index.numpy()
    logits = []
    for r in range(len(index)):  # each window alone, unpadded
        n = int(enc["input_mask"][r].sum())
        one = {k: tf.constant(v[r:r + 1, :n], tf.int32) for k, v in enc.items()}
        logits.append(float(keras_model(one, training=False).numpy().reshape(-1)[0]))
    pooled = model_lib.pool_logits_np(np.array(logits), index, len(texts), pooling)
    windows = np.bincount(index, minlength=len(texts))
    expected = 1 / (1 + np.exp(-pooled * windows ** expo / temp))
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)
    assert (windows > 1).sum() >= 6


def test_export_writes_metadata_and_signatures_agree(keras_model, vocab, tmp_path):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from training import features
    from training import model as model_lib

    meta = model_lib.export_scorer(keras_model, vocab, MAX_LEN, str(tmp_path / "m"), window_stride=16,
                                   max_windows=4, pooling="confidence", temperature=1.25, length_exponent=0.2)
    on_disk = json.loads((tmp_path / "m" / "assets.extra" / "scorer.json").read_text())
    assert on_disk == meta == model_lib.read_scorer_metadata(tmp_path / "m")
    required = {"max_seq_length": int, "window_stride": int, "max_windows": int, "pooling": str,
                "temperature": float, "contract": int}
    for key, typ in required.items():
        assert isinstance(on_disk[key], typ), key
    assert (on_disk["max_seq_length"], on_disk["window_stride"], on_disk["max_windows"]) == (MAX_LEN, 16, 4)
    assert on_disk["contract"] == 1 and on_disk["pooling"] == "confidence"
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    texts = _texts()
    a = loaded.signatures["serving_default"](text=tf.constant(texts))
    examples = [tf.train.Example(features=tf.train.Features(feature={features.TEXT_KEY: tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[t.encode()]))})).SerializeToString() for t in texts]
    b = loaded.signatures["serving_examples"](examples=tf.constant(examples))
    np.testing.assert_allclose(a["score"].numpy(), b["score"].numpy(), atol=1e-6)


def test_temperature_fit_and_ece():
    from training import model as model_lib

    rng = np.random.default_rng(1)
    true_logit = rng.normal(0, 2, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    t = model_lib.fit_temperature(true_logit * 2.5, y)  # over-confident by 2.5x
    assert abs(t - 2.5) < 0.15
    calibrated = 1 / (1 + np.exp(-true_logit))
    assert model_lib.expected_calibration_error(calibrated, y) < 0.02
    assert model_lib.expected_calibration_error(1 / (1 + np.exp(-true_logit * 2.5)), y) > 0.05
