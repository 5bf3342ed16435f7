"""Normalisation and head+tail truncation used by both Transform and the serving signature."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def vocab(ci_encoder):
    from training import encoder_export

    return encoder_export.vocab_path(ci_encoder)


def test_normalisation():
    import tensorflow as tf

    from training import preprocessing

    got = preprocessing.normalize_text(tf.constant(
        ["Café\tNAÏVE\nx", "a\ufffdb\x00c\u200bd", "ÀÉÎÕÜ ß"])).numpy()
    assert [g.decode() for g in got] == ["cafe naive x", "abcd", "aeiou ß"]


def test_head_tail_truncation_and_special_tokens(vocab):
    import tensorflow as tf

    from training import preprocessing

    tok = preprocessing.make_tokenizer(vocab)
    cls, sep = preprocessing.special_token_ids(vocab)
    words = [f"w{i}" for i in range(200)]
    # Each "wN" is several WordPieces; compare against the untruncated token sequence.
    full = tok.tokenize(tf.constant([" ".join(words)])).merge_dims(-2, -1)[0].numpy()
    max_len = 34
    budget = max_len - 2
    out = preprocessing.encode_texts(tf.constant([" ".join(words), "short"]), tok, cls, sep, max_len,
                                     pad_to_max=False)
    ids = out["input_word_ids"].numpy()
    assert ids.shape == (2, max_len)
    row = ids[0]
    assert row[0] == cls and row[-1] == sep
    head = budget // 4
    np.testing.assert_array_equal(row[1:1 + head], full[:head])
    np.testing.assert_array_equal(row[1 + head:-1], full[-(budget - head):])
    # The short text is padded to the batch's longest row with mask 0 and id 0.
    assert out["input_mask"].numpy()[1].sum() == 3
    assert (ids[1][3:] == 0).all()
    padded = preprocessing.encode_texts(tf.constant(["short"]), tok, cls, sep, max_len, pad_to_max=True)
    assert padded["input_word_ids"].shape == (1, max_len)
    dynamic = preprocessing.encode_texts(tf.constant(["short"]), tok, cls, sep, max_len, pad_to_max=False)
    assert dynamic["input_word_ids"].shape == (1, 3)
