"""Lexical head (training/lexical.py): the in-graph TF-IDF + logistic regression equals scikit-learn's, and it joins
the exported scorer with the fitted weight (single-window texts still score as the one-window scorer)."""

import numpy as np
import pytest

POS = ["a good film", "really good and fun", "great acting, great plot", "fun fun fun", "not bad at all, good",
       "a great and moving story", "good good", "the best film this year"]
NEG = ["a bad film", "really bad and dull", "awful acting, awful plot", "dull dull dull", "not good at all, bad",
       "a boring and empty story", "bad bad", "the worst film this year"]


@pytest.fixture(scope="module")
def fitted():
    from training import lexical

    texts, labels = POS + NEG, [1] * len(POS) + [0] * len(NEG)
    return lexical.fit(texts, labels, texts, labels, min_df=1), texts


def test_terms_are_words_and_word_pairs():
    import tensorflow as tf

    from training import lexical

    got = lexical.terms(tf.constant(["Not GOOD, réally!", "", "one"])).to_list()
    assert [t.decode() for t in got[0]] == ["not", "good", "really", "not good", "good really"]
    assert got[1] == [] and [t.decode() for t in got[2]] == ["one"]


def test_graph_logits_equal_scikit_learn(fitted):
    import tensorflow as tf
    from sklearn.feature_extraction.text import TfidfVectorizer

    from training import lexical

    model, texts = fitted
    vec = TfidfVectorizer(analyzer=lambda d: d, sublinear_tf=True, norm="l2", smooth_idf=True,
                          vocabulary={t: i for i, t in enumerate(model.vocab)})
    vec.fit(lexical.terms_np(texts))  # idf from the same texts as the fit
    probe = [*texts, "good good good bad", "an unseen sentence entirely", "", "bad! BAD? Good."]
    x = vec.transform(lexical.terms_np(probe))
    expected = x @ model.coef.astype(np.float64) + model.intercept
    got = lexical.LexicalHead(model).logits(tf.constant(probe)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert got[len(texts) + 1] == pytest.approx(model.intercept)  # no known term -> the intercept
    assert (got[:len(POS)] > 0).all() and (got[len(POS):len(texts)] < 0).all()


def test_exported_scorer_adds_the_weighted_lexical_logit(fitted, ci_encoder, tmp_path):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    from training import encoder_export, lexical, preprocessing
    from training import model as model_lib

    model, texts = fitted
    vocab = encoder_export.vocab_path(ci_encoder)
    keras_model = model_lib.build_model(ci_encoder, seed=3)
    long_text = " ".join(POS * 6)
    probe = [*texts, long_text]
    kw = dict(window_stride=16, pooling="mean", temperature=1.5, length_exponent=0.3)
    plain = model_lib.ScorerModule(keras_model, vocab, 24, max_windows=8, **kw)
    meta = model_lib.export_scorer(keras_model, vocab, 24, str(tmp_path / "m"), max_windows=8, lexical=model,
                                   lexical_weight=0.7, **kw)
    assert meta["lexical_weight"] == 0.7 and meta["lexical"]["vocab_size"] == len(model.vocab)
    loaded = tf.saved_model.load(str(tmp_path / "m")).signatures["serving_default"]
    got = loaded(text=tf.constant(probe))["score"].numpy()

    def logit(p):
        return np.log(p) - np.log1p(-p)

    base = plain.serve(tf.constant(probe))["score"].numpy()
    lex = lexical.LexicalHead(model).logits(tf.constant(probe)).numpy()
    np.testing.assert_allclose(logit(got) * 1.5, logit(base) * 1.5 + 0.7 * lex, atol=2e-4, rtol=0)
    # Single-window texts score as the one-window scorer with the same head.
    one = model_lib.ScorerModule(keras_model, vocab, 24, max_windows=1, temperature=1.5, lexical=model,
                                 lexical_weight=0.7)
    ref = one.serve(tf.constant(probe))["score"].numpy()
    single = preprocessing.token_counts(probe, vocab) <= 22
    assert single.sum() == len(texts) and not single[-1]
    np.testing.assert_allclose(got[single], ref[single], atol=1e-5, rtol=0)
    # A weight of 0 exports no lexical head at all.
    off = model_lib.ScorerModule(keras_model, vocab, 24, max_windows=8, lexical=model, lexical_weight=0.0, **kw)
    assert off.metadata()["lexical"] is None and not hasattr(off, "lexical")
