"""Fine-tuning ablation for the `default` profile: what buys Rotten Tomatoes snippet accuracy within the time budget.

Runs in the training environment (Python 3.10, TF 2.16) outside TFX, on exactly the data the pipeline trains on
(``training.data.prepare`` with the default profile's splits, pseudo-documents and window crops), the same encoder
export, the same model (``training.model.build_model``), the same optimiser and schedule.  Each variant changes one
knob: batches of similar length (``--bucket-pool``), more optimiser steps, the peak learning rate, bf16 mixed
precision through oneDNN's grappler pass.  Model selection uses the eval split only; the test split is scored once
per variant at the end, for the table.

    .venv-train/bin/python bench/finetune_ablation.py --variant base:steps=450 --variant bucket:steps=450,pool=50 \
        --out reports/default/ablation.jsonl

Prints one JSON line per variant (also appended to --out): seconds per step, wall time, eval / test snippet
accuracy.  No timing is asserted anywhere; run the variants in one invocation so that their timings compare.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np
import tensorflow as tf

from training import data as data_lib
from training import encoder_export, features, model, preprocessing, profiles
from training.report import cpu_flags, cpu_model

DEFAULTS = {"steps": 450, "lr": 8e-5, "pool": 0, "batch": 32, "bf16": 0, "epochs": 3, "warmup": 0.1}


def parse_variant(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    cfg = dict(DEFAULTS)
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        if k not in DEFAULTS:
            raise SystemExit(f"unknown knob {k!r} in {spec!r}; knobs: {sorted(DEFAULTS)}")
        cfg[k] = type(DEFAULTS[k])(float(v)) if isinstance(DEFAULTS[k], int) else float(v)
    return name, cfg


def encode(texts: list[str], vocab: str, max_len: int) -> dict[str, np.ndarray]:
    tok = preprocessing.make_tokenizer(vocab)
    cls_id, sep_id = preprocessing.special_token_ids(vocab)
    parts = []
    for i in range(0, len(texts), 2048):
        enc = preprocessing.encode_texts(tf.constant(texts[i:i + 2048]), tok, cls_id, sep_id, max_len, True)
        parts.append({k: v.numpy().astype(np.int32) for k, v in enc.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def predict_logits(m, enc: dict[str, np.ndarray], batch: int = 128) -> np.ndarray:
    lengths = enc[features.MASK].sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    out = np.zeros(len(order), np.float32)
    fn = tf.function(lambda x: m(x, training=False), reduce_retracing=True)
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        n = int(lengths[idx].max())
        out[idx] = fn({k: tf.constant(v[idx, :n]) for k, v in enc.items()}).numpy().reshape(-1)
    return out


def run_variant(name: str, cfg: dict, encoder: str, train, eval_, test, seed: int) -> dict:
    keras = model._keras()
    tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": bool(cfg["bf16"])})
    keras.utils.set_random_seed(seed)
    batch, steps, epochs = int(cfg["batch"]), int(cfg["steps"]), int(cfg["epochs"])
    steps_per_epoch = max(steps // epochs, 1)
    x, y = train
    ds = (tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64)))
          .shuffle(len(y), seed=seed, reshuffle_each_iteration=True).repeat().batch(batch, drop_remainder=True))
    if cfg["pool"] > 1:
        ds = model.length_bucketed(ds, batch, int(cfg["pool"]), seed)
    ds = ds.map(model._trim_to_longest).prefetch(1)
    m = model.build_model(encoder, seed)
    opt = model.make_optimizer(cfg["lr"], steps_per_epoch * epochs, cfg["warmup"], 0.01)
    m.compile(optimizer=opt, loss=keras.losses.BinaryCrossentropy(from_logits=True))
    history = []
    t0 = time.time()
    best = (-1.0, None, 0)
    snapshots = []  # weights after each epoch, for the checkpoint averages ("soups") below
    for epoch in range(epochs):
        m.fit(ds, epochs=1, steps_per_epoch=steps_per_epoch, verbose=0)
        ev = float(((predict_logits(m, eval_[0]) >= 0) == (eval_[1] == 1)).mean())
        history.append({"epoch": epoch + 1, "eval_snippet_accuracy": round(ev, 4),
                        "seconds": round(time.time() - t0, 1)})
        print(f"  [{name}] epoch {epoch + 1}/{epochs}: eval snippets {ev:.4f} ({time.time() - t0:.0f}s)",
              flush=True)
        snapshots.append([w.copy() for w in m.get_weights()])
        if ev > best[0]:
            best = (ev, snapshots[-1], epoch + 1)
    train_seconds = time.time() - t0

    def accuracies(weights) -> tuple[float, float]:
        m.set_weights(weights)
        return tuple(float(((predict_logits(m, s[0]) >= 0) == (s[1] == 1)).mean()) for s in (eval_, test))

    # Uniform averages of the last k epochs' weights (one fine-tuning trajectory, so they stay in one basin):
    # no serving cost, unlike an ensemble.  Shown next to the best single epoch; chosen on eval only.
    soups = {}
    for k in range(2, len(snapshots) + 1):
        avg = [np.mean([s[i] for s in snapshots[-k:]], axis=0) for i in range(len(snapshots[-1]))]
        e, t = accuracies(avg)
        soups[f"last_{k}"] = {"eval_snippet_accuracy": round(e, 4), "test_snippet_accuracy": round(t, 4)}
        print(f"  [{name}] average of the last {k} epochs: eval snippets {e:.4f}, test {t:.4f}", flush=True)
    _, test_acc = accuracies(best[1])
    return {"variant": name, **cfg, "seconds_per_step": round(train_seconds / (steps_per_epoch * epochs), 3),
            "train_seconds": round(train_seconds, 1), "best_epoch": best[2],
            "eval_snippet_accuracy": round(best[0], 4), "test_snippet_accuracy": round(test_acc, 4),
            "weight_averages": soups, "history": history}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", required=True,
                    help="NAME:knob=value,... (knobs: steps, lr, pool, batch, bf16, epochs, warmup)")
    ap.add_argument("--work-dir", default=".cache/ablation")
    ap.add_argument("--out", default=None, help="append the JSON lines here")
    args = ap.parse_args(argv)
    prof = profiles.get_profile("default")
    work = pathlib.Path(args.work_dir)
    encoder = encoder_export.export_encoder(work / "encoder-L6")
    vocab = encoder_export.vocab_path(encoder)
    root = data_lib.prepare("rotten_tomatoes", work / "data", seed=prof.seed, docs=prof.pseudo_docs(),
                            windowing=prof.windowing(vocab))
    splits = {}
    for split in data_lib.SPLITS:
        texts, labels = data_lib.read_split(root, split, originals_only=split != "train")
        splits[split] = (encode(texts, vocab, prof.max_seq_length), labels)
    print(f"CPU: {cpu_model()} ({cpu_flags()}); {os.cpu_count()} cores; TF {tf.__version__}; "
          f"train {len(splits['train'][1])} (with window crops), eval snippets {len(splits['eval'][1])}, "
          f"test snippets {len(splits['test'][1])}",
          flush=True)
    for spec in args.variant:
        name, cfg = parse_variant(spec)
        res = run_variant(name, cfg, encoder, splits["train"], splits["eval"], splits["test"], prof.seed)
        res["cpu"] = cpu_model()
        line = json.dumps(res)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
