"""Lexical head: TF-IDF of word 1-2-grams + logistic regression, fitted on the train split, run inside the graph.

Why: a bag of n-grams reads the *whole* text at no measurable cost and errs differently from the fine-tuned encoder
(on joined-snippet long documents the TF-IDF baseline alone beat the encoder).  The exported scorer adds its logit,
weighted, to the encoder's pooled logit before the temperature (training/model.py); the weight is fitted on the eval
split together with the temperature (weight 0 = encoder only).

Features (one definition, used to fit and inside the SavedModel, so the two cannot drift apart):
  words  = the serving normalisation (training/preprocessing.normalize_text: lower case, accents and control
           characters removed), every run of characters that are neither letters nor digits -> one space, split;
  terms  = the words and the pairs of adjacent words ("not good");
  weight = (1 + ln count) * idf(term) per distinct term of the text, then the vector is scaled to unit length
           (sublinear TF, smoothed IDF: ln((1 + N) / (1 + df)) + 1, as scikit-learn computes it);
  logit  = weights . coef + intercept (scikit-learn LogisticRegression, C chosen on the eval split).
Terms seen in fewer than ``min_df`` training texts are dropped (they cannot generalise and would bloat the table).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from training import preprocessing

C_GRID = (1.0, 2.0, 4.0, 8.0, 16.0)
# The report's TF-IDF baseline and bench/ensemble_probe.py search one step lower too (their recorded numbers use it).
BASELINE_C_GRID = (0.5, *C_GRID)


def best_c_on_eval(make, grid, x_train, y_train, x_eval, y_eval):
    """Fit ``make(C)`` on train for each C of ``grid``; keep the first with the best eval accuracy.

    Returns (eval accuracy, C, fitted estimator).  One home for the choice of C: the lexical head (here), the
    report's TF-IDF baseline and bench/ensemble_probe.py's views.
    """
    best = None
    for c in grid:
        clf = make(c).fit(x_train, y_train)
        acc = float((clf.predict(x_eval) == y_eval).mean())
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    return best


def terms(texts: tf.Tensor) -> tf.RaggedTensor:
    """Raw texts [batch] -> the text's terms (words and adjacent word pairs), ragged [batch, None] strings."""
    t = preprocessing.normalize_text(texts)
    t = tf.strings.regex_replace(t, r"[^\p{L}\p{N}]+", " ")
    words = tf.strings.split(tf.strings.strip(t))
    return tf.strings.ngrams(words, ngram_width=(1, 2), separator=" ")


def terms_np(texts: list[str], batch_size: int = 2048) -> list[list[str]]:
    out: list[list[str]] = []
    for i in range(0, len(texts), batch_size):
        rows = terms(tf.constant(texts[i:i + batch_size])).to_list()
        out += [[t.decode("utf-8") for t in row] for row in rows]
    return out


@dataclasses.dataclass(frozen=True)
class LexicalModel:
    vocab: tuple[str, ...]
    idf: np.ndarray  # float32 [V]
    coef: np.ndarray  # float32 [V]
    intercept: float
    c: float  # the LogisticRegression C chosen on the eval split
    eval_accuracy: float

    def info(self) -> dict:
        return {"terms": "word 1-2-grams", "vocab_size": len(self.vocab), "C": self.c,
                "eval_accuracy": round(self.eval_accuracy, 4)}


def fit(train_texts: list[str], train_labels, eval_texts: list[str], eval_labels, min_df: int = 2,
        seed: int = 42) -> LexicalModel:
    """Fit TF-IDF + logistic regression on ``train``; C is the one of C_GRID with the best eval accuracy."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(analyzer=lambda doc: doc, sublinear_tf=True, min_df=min_df, norm="l2", smooth_idf=True,
                          dtype=np.float32)
    x_train = vec.fit_transform(terms_np(train_texts))
    x_eval = vec.transform(terms_np(eval_texts))
    y_train, y_eval = np.asarray(train_labels), np.asarray(eval_labels)
    acc, c, clf = best_c_on_eval(lambda c: LogisticRegression(C=c, max_iter=3000, random_state=seed), C_GRID,
                                 x_train, y_train, x_eval, y_eval)
    vocab = sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)
    return LexicalModel(tuple(vocab), vec.idf_.astype(np.float32), clf.coef_[0].astype(np.float32),
                        float(clf.intercept_[0]), c, acc)


class LexicalHead(tf.Module):
    """The fitted model as graph ops: ``logits(texts)`` -> float32 [batch]."""

    def __init__(self, lexical: LexicalModel):
        super().__init__(name="lexical_head")
        size = len(lexical.vocab)
        self.vocab_size = size
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(lexical.vocab), tf.string),
                                                tf.range(size, dtype=tf.int64)), default_value=-1)
        self.idf = tf.Variable(lexical.idf, trainable=False, name="idf")
        self.coef = tf.Variable(lexical.coef, trainable=False, name="coef")
        self.intercept = tf.Variable(lexical.intercept, dtype=tf.float32, trainable=False, name="intercept")

    def logits(self, texts: tf.Tensor) -> tf.Tensor:
        g = terms(texts)
        batch = g.nrows()
        ids = self.table.lookup(g.flat_values)
        known = ids >= 0
        rows = tf.boolean_mask(g.value_rowids(), known)
        ids = tf.boolean_mask(ids, known)
        # distinct (text, term) pairs and their counts
        keys, _, counts = tf.unique_with_counts(rows * self.vocab_size + ids)
        rows, ids = keys // self.vocab_size, keys % self.vocab_size
        w = (1.0 + tf.math.log(tf.cast(counts, tf.float32))) * tf.gather(self.idf, ids)
        norm = tf.sqrt(tf.math.unsorted_segment_sum(w * w, rows, batch))
        dot = tf.math.unsorted_segment_sum(w * tf.gather(self.coef, ids), rows, batch)
        return dot / tf.maximum(norm, 1e-12) + self.intercept
