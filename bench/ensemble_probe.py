"""Probe: which bag-of-words view, stacked with the fine-tuned scorer, helps?

Scores the eval and test splits with a pushed scorer and backs out its encoder evidence (the calibrated logit minus
the lexical head's share, from ``assets.extra/scorer.json``; for a scorer without a lexical head that is the
calibrated logit).  Fits bag-of-words views on the train split (each view's C on eval), then, for each view, the
stacking weights (encoder evidence + view) on the eval split only, and prints eval and test accuracy for snippets
and pseudo-documents.  Views: the exported head's TF-IDF word 1-2-grams (``word12``), the same terms with
naive-Bayes log-count-ratio weights on binary counts (``nb12``, NBSVM-style), TF-IDF word 1-3-grams (``word13``),
TF-IDF character 2-5-grams inside word boundaries (``char25``), and the VADER lexicon's compound score (``vader``,
if the vaderSentiment package is importable).  Training environment:

    .venv-train/bin/python bench/ensemble_probe.py --model-dir .cache/default-run/models/<version> \\
        --data-root .cache/default-run/work/data/rotten_tomatoes-<fingerprint>
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np

from training import data as data_lib
from training import lexical, report


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def fit_view(x_train, y_train, x_eval, y_eval, x_test, nb: bool = False):
    """Logistic regression on one view (C by eval accuracy) -> (eval logits, test logits, C)."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    if nb:  # log-count ratio per term (Wang & Manning's NBSVM features), smoothing 1
        pos = 1.0 + x_train[y_train == 1].sum(0)
        neg = 1.0 + x_train[y_train == 0].sum(0)
        r = sparse.diags(np.asarray(np.log((pos / pos.sum()) / (neg / neg.sum()))).ravel())
        x_train, x_eval, x_test = x_train @ r, x_eval @ r, x_test @ r
    _, c, clf = lexical.best_c_on_eval(lambda c: LogisticRegression(C=c, max_iter=3000),
                                       lexical.BASELINE_C_GRID, x_train, y_train, x_eval, y_eval)
    return clf.decision_function(x_eval), clf.decision_function(x_test), c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data-root", required=True)
    args = ap.parse_args(argv)
    import tensorflow as tf
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    frames = {s: data_lib.read_split_frame(args.data_root, s) for s in data_lib.SPLITS}
    train = data_lib.read_split(args.data_root, "train")  # with the window crops, as the Trainer's lexical fit
    ev = (frames["eval"]["text"].tolist(), frames["eval"]["label"].to_numpy())
    te = (frames["test"]["text"].tolist(), frames["test"]["label"].to_numpy())
    doc_e = frames["eval"]["pieces"].to_numpy() > 1
    doc_t = frames["test"]["pieces"].to_numpy() > 1
    meta = json.loads((pathlib.Path(args.model_dir) / "assets.extra" / "scorer.json").read_text())
    head = lexical.LexicalHead(lexical.fit(*train, *ev))
    word12 = (head.logits(tf.constant(ev[0])).numpy(), head.logits(tf.constant(te[0])).numpy())
    temp, bias, weight = meta.get("temperature", 1.0), meta.get("bias", 0.0), meta.get("lexical_weight", 0.0)
    # encoder evidence = pooled logit * windows ** length_exponent (the scorer's formula, solved for it)
    enc_e = temp * (logit(report.score_texts(args.model_dir, ev[0])) - bias) - weight * word12[0]
    enc_t = temp * (logit(report.score_texts(args.model_dir, te[0])) - bias) - weight * word12[1]

    def acc(z, y, m):
        return float(((z[m] >= 0) == (y[m] == 1)).mean())

    def show(name, z_e, z_t):
        print(f"{name:34s} eval snippets {acc(z_e, ev[1], ~doc_e):.4f} docs {acc(z_e, ev[1], doc_e):.4f} | "
              f"test snippets {acc(z_t, te[1], ~doc_t):.4f} docs {acc(z_t, te[1], doc_t):.4f}", flush=True)

    show("encoder evidence alone", enc_e, enc_t)
    views = {"word12": word12}
    terms = [lexical.terms_np(t) for t in (train[0], ev[0], te[0])]
    y_tr = np.asarray(train[1])
    for name, vec, use_terms, nb in (
            ("nb12", CountVectorizer(analyzer=lambda d: d, binary=True, min_df=2), True, True),
            ("word13", TfidfVectorizer(ngram_range=(1, 3), sublinear_tf=True, min_df=2), False, False),
            ("char25", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
             False, False)):
        docs = terms if use_terms else (train[0], ev[0], te[0])
        x_tr = vec.fit_transform(docs[0])
        z_e, z_t, c = fit_view(x_tr, y_tr, vec.transform(docs[1]), ev[1], vec.transform(docs[2]), nb=nb)
        print(f"  view {name}: {x_tr.shape[1]:,} terms, C={c}")
        views[name] = (z_e, z_t)
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        sia = SentimentIntensityAnalyzer()
        views["vader"] = tuple(np.array([sia.polarity_scores(t)["compound"] for t in s]) for s in (ev[0], te[0]))
    except ImportError:
        print("  view vader: vaderSentiment not importable, skipped")
    for name, (z_e, z_t) in views.items():
        show(f"{name} alone", z_e, z_t)
    combos = [[n] for n in views] + [["word12", n] for n in views if n != "word12"]
    for names in combos:
        x_e = np.column_stack([enc_e] + [views[n][0] for n in names])
        x_t = np.column_stack([enc_t] + [views[n][1] for n in names])
        lr = LogisticRegression(C=100.0, max_iter=1000).fit(x_e, ev[1])
        show("encoder + " + " + ".join(names), lr.decision_function(x_e), lr.decision_function(x_t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
