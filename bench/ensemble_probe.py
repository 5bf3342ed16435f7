"""Probe: would stacking the fine-tuned scorer with a bag-of-n-grams logistic regression help?

Scores the eval and test splits with a pushed scorer (its calibrated logit), fits TF-IDF (word 1-2 grams) + LR on
the train split (C on eval, as the report's baseline), then fits the stacking weights on the eval split only and
prints test accuracy for snippets, pseudo-documents and all, before and after.  Training environment:

    .venv-train/bin/python bench/ensemble_probe.py --model-dir .cache/run1/models/<version> \
        --data-root .cache/run1/work/data/rotten_tomatoes-<fingerprint>
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np

from training import data as data_lib
from training import report


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data-root", required=True)
    args = ap.parse_args(argv)
    from sklearn.linear_model import LogisticRegression

    frames = {s: data_lib.read_split_frame(args.data_root, s) for s in data_lib.SPLITS}
    train = (frames["train"]["text"].tolist(), frames["train"]["label"].to_numpy())
    ev = (frames["eval"]["text"].tolist(), frames["eval"]["label"].to_numpy())
    te = (frames["test"]["text"].tolist(), frames["test"]["label"].to_numpy())
    tfidf, c = report.tfidf_baseline(train, ev)
    zb_e, zb_t = logit(report.score_texts(args.model_dir, ev[0])), logit(report.score_texts(args.model_dir, te[0]))
    zt_e, zt_t = logit(tfidf(ev[0])), logit(tfidf(te[0]))
    doc_t = frames["test"]["pieces"].to_numpy() > 1
    doc_e = frames["eval"]["pieces"].to_numpy() > 1

    def acc(z, y, m):
        return float(((z[m] >= 0) == (y[m] == 1)).mean())

    def show(name, z_e, z_t):
        print(f"{name:28s} eval snip {acc(z_e, ev[1], ~doc_e):.4f} docs {acc(z_e, ev[1], doc_e):.4f} | "
              f"test snip {acc(z_t, te[1], ~doc_t):.4f} docs {acc(z_t, te[1], doc_t):.4f} "
              f"all {acc(z_t, te[1], np.ones_like(doc_t)):.4f}")

    print(f"TF-IDF C={c}")
    show("scorer", zb_e, zb_t)
    show("tfidf", zt_e, zt_t)
    lr = LogisticRegression(C=100.0).fit(np.c_[zb_e, zt_e], ev[1])
    w, b = lr.coef_[0], lr.intercept_[0]
    print(f"stack weights scorer {w[0]:.3f} tfidf {w[1]:.3f} bias {b:.3f}")
    show("stack (LR on eval)", np.c_[zb_e, zt_e] @ w + b, np.c_[zb_t, zt_t] @ w + b)
    p1 = LogisticRegression(C=100.0).fit(zb_e[:, None], ev[1])
    print(f"scorer Platt: weight {p1.coef_[0][0]:.3f} bias {p1.intercept_[0]:.3f}")
    show("scorer, Platt (LR on eval)", zb_e * p1.coef_[0][0] + p1.intercept_[0],
         zb_t * p1.coef_[0][0] + p1.intercept_[0])
    for beta in (0.25, 0.5, 0.75, 1.0):
        show(f"scorer + {beta} * tfidf", zb_e + beta * zt_e, zb_t + beta * zt_t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
