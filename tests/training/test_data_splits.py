"""Movie-grouped splits and pseudo-documents (training/data.py), and profile overrides (training/profiles.py)."""

import pytest


@pytest.fixture(scope="module")
def rt_splits():
    from training import data

    return data.split_frame(data.load_rotten_tomatoes(), seed=42, max_examples=None)


def test_splits_are_grouped_by_movie(rt_splits):
    movies = {name: set(part["group"]) for name, part in rt_splits.items()}
    assert not movies["train"] & movies["test"]
    assert not movies["train"] & movies["eval"]
    assert not movies["eval"] & movies["test"]
    texts = {name: set(part["text"]) for name, part in rt_splits.items()}
    assert not texts["train"] & texts["test"]
    n = sum(len(p) for p in rt_splits.values())
    assert abs(len(rt_splits["test"]) / n - 0.1) < 0.02 and abs(len(rt_splits["train"]) / n - 0.8) < 0.02


def test_random_split_mixes_movies_but_not_texts():
    """split_by_group=False: the protocol of the first model's 0.848 (test movies also have snippets in train)."""
    from training import data, profiles

    df = data.load_rotten_tomatoes()
    parts = data.split_frame(df, seed=42, max_examples=None, by_group=False)
    movies = {name: set(part["group"]) for name, part in parts.items()}
    assert len(movies["train"] & movies["test"]) > 0.5 * len(movies["test"])
    texts = {name: set(part["text"]) for name, part in parts.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["eval"]
    n = sum(len(p) for p in parts.values())
    assert len(parts["test"]) == n - round(n * 0.8) - round(n * 0.1)
    assert profiles.with_overrides(profiles.get_profile("default"), ["split_by_group=False"]).split_by_group is False
    docs, win = data.PseudoDocs(), data.Windowing()
    assert data._fingerprint("rotten_tomatoes", 42, None, docs, win) != data._fingerprint(
        "rotten_tomatoes", 42, None, docs, win, split_by_group=False)


def test_pseudo_documents_come_from_their_own_split(rt_splits):
    from training import data

    docs = data.PseudoDocs(train_docs=200, eval_docs_per_group=3, train_window_words=40)
    for split in ("eval", "test"):
        part = rt_splits[split]
        pseudo = data.pseudo_documents(part, split, docs, seed=42)
        assert len(pseudo) > 50
        assert pseudo["pieces"].between(5, 20).all()
        by_group_label = {(g, lab): set(sub["text"]) for (g, lab), sub in part.groupby(["group", "label"])}
        for row in pseudo.sample(20, random_state=0).itertuples():
            pool = by_group_label[(row.group, row.label)]
            # Every joined snippet is a snippet of the same movie and label of this split.
            assert sum(1 for t in pool if t in row.text) >= row.pieces
    train = data.pseudo_documents(rt_splits["train"], "train", docs, seed=42)
    assert len(train) == 200 and train["pieces"].between(2, 6).all()
    assert train["text"].str.split().str.len().max() <= 40
    assert set(train["group"]) <= set(rt_splits["train"]["group"])


def test_profile_overrides():
    from training import profiles

    p = profiles.with_overrides(profiles.get_profile("default"), ["train_docs=0", "pooling=mean",
                                                                  "sweep_max_windows=(1, 2)"])
    assert (p.train_docs, p.pooling, p.sweep_max_windows) == (0, "mean", (1, 2))
    with pytest.raises(ValueError):
        profiles.with_overrides(p, ["no_such_field=1"])
    # None only where the field is optional; an optional int still wants an int; an int fits a float field
    assert profiles.with_overrides(p, ["num_layers=None"]).num_layers is None
    assert profiles.with_overrides(p, ["num_layers=4"]).num_layers == 4
    assert profiles.with_overrides(p, ["learning_rate=1"]).learning_rate == 1
    assert profiles.with_overrides(p, ["name=123"]).name == "123"
    for bad in ("train_steps=None", "num_layers=four", "num_layers=True", "train_docs=1.5", "sweep_max_windows=3"):
        with pytest.raises(ValueError, match="expects"):
            profiles.with_overrides(p, [bad])
