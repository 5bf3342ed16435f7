"""The TFDS imdb_reviews source, on mock data made by the test (never a download)."""

import json
import pathlib

import numpy as np


def test_tfds_imdb_reviews_source_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    from training import data

    with tfds.testing.mock_data(num_examples=40, data_dir=str(tmp_path / "tfds")):
        out = data.prepare("tfds", tmp_path / "prep", seed=7, tfds_data_dir=str(tmp_path / "tfds"))
    info = json.loads((pathlib.Path(out) / "splits.json").read_text())
    assert info["source"] == "tfds"
    total = sum(info["counts"].values())
    assert 0 < total <= 80  # mock train + test splits, de-duplicated
    for split in ("train", "eval", "test"):
        texts, labels = data.read_split(out, split)
        assert len(texts) == info["counts"][split]
        assert set(np.unique(labels).tolist()) <= {0, 1}
