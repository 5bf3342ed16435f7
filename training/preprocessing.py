"""TF Transform preprocessing: text normalisation + BERT WordPiece tokenization.

The same graph functions (`normalize_text`, `encode_texts`) run inside Transform (padding to the configured
sequence length) and inside the exported serving signature (padding to the longest text of the batch), so
training and serving see identical token ids.

Normalisation (matches the reference WordPiece ids of the uncased MiniLM vocabulary, see environment notes):
tabs / newlines / carriage returns -> space; delete control/format/private/surrogate code points (\\p{C}) and
U+FFFD; Unicode lower-casing; NFD; delete combining marks (\\p{Mn}, i.e. accents).  The tokenizer then runs with
``lower_case=False`` (the lower-casing was already done here).

Truncation of long texts (documented contract): a text whose WordPiece tokens do not fit into
``max_seq_length - 2`` keeps its *head and tail*: the first ``budget // 4`` tokens and the last
``budget - budget // 4`` tokens (reviews tend to end with the verdict; cf. Sun et al. 2019, "How to fine-tune
BERT for text classification", head+tail truncation).  [CLS] and [SEP] are always added.
"""

from __future__ import annotations

import tensorflow as tf

from training import features

CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"


def normalize_text(texts: tf.Tensor) -> tf.Tensor:
    import tensorflow_text as tf_text

    t = tf.strings.regex_replace(texts, r"[\t\n\r]", " ")
    t = tf.strings.regex_replace(t, r"[\p{C}\x{FFFD}]", "")
    t = tf.strings.lower(t, encoding="utf-8")
    t = tf_text.normalize_utf8(t, "NFD")
    return tf.strings.regex_replace(t, r"\p{Mn}", "")


def special_token_ids(vocab_file: str) -> tuple[int, int]:
    with tf.io.gfile.GFile(vocab_file) as f:
        vocab = [line.rstrip("\n") for line in f]
    return vocab.index(CLS_TOKEN), vocab.index(SEP_TOKEN)


def make_tokenizer(vocab_file: str):
    import tensorflow_text as tf_text

    return tf_text.BertTokenizer(vocab_file, lower_case=False, token_out_type=tf.int64)


def head_tail_truncate(tokens: tf.RaggedTensor, budget: int) -> tf.RaggedTensor:
    """Keep all tokens of rows that fit; else the first budget//4 and the last budget - budget//4."""
    head = budget // 4
    tail = budget - head
    lengths = tokens.row_lengths()
    positions = tf.ragged.range(lengths)
    row_len = tf.expand_dims(lengths, 1)
    keep = (row_len <= budget) | (positions < head) | (positions >= row_len - tail)
    return tf.ragged.boolean_mask(tokens, keep)


def encode_texts(texts: tf.Tensor, tokenizer, cls_id: int, sep_id: int, max_seq_length: int,
                 pad_to_max: bool) -> dict[str, tf.Tensor]:
    """Raw texts [batch] -> int64 input_word_ids / input_mask / input_type_ids.

    pad_to_max=True pads to [batch, max_seq_length] (Transform); False pads to the longest row of the batch,
    which is at most max_seq_length (serving).
    """
    tokens = tokenizer.tokenize(normalize_text(texts)).merge_dims(-2, -1)
    tokens = head_tail_truncate(tokens, max_seq_length - 2)
    batch = tokens.nrows()
    cls = tf.fill([batch, 1], tf.constant(cls_id, tf.int64))
    sep = tf.fill([batch, 1], tf.constant(sep_id, tf.int64))
    ids = tf.concat([tf.RaggedTensor.from_tensor(cls), tokens, tf.RaggedTensor.from_tensor(sep)], axis=1)
    mask = tf.ones_like(ids)
    shape = [None, max_seq_length] if pad_to_max else None
    word_ids = ids.to_tensor(default_value=0, shape=shape)
    input_mask = mask.to_tensor(default_value=0, shape=shape)
    return {
        features.WORD_IDS: word_ids,
        features.MASK: input_mask,
        features.TYPE_IDS: tf.zeros_like(word_ids),
    }


def preprocessing_fn(inputs, custom_config):
    """TFX Transform entry point (``custom_config``: vocab_file, max_seq_length)."""
    import tensorflow_transform as tft

    vocab_file = custom_config["vocab_file"]
    max_len = int(custom_config["max_seq_length"])
    cls_id, sep_id = special_token_ids(vocab_file)
    tokenizer = tft.make_and_track_object(lambda: make_tokenizer(vocab_file), name="bert_tokenizer")
    # The schema declares exactly one value per feature (value_count 1..1), which TFT parses as VarLen
    # (sparse); validation has already rejected examples without exactly one value.
    text = _dense_single(inputs[features.TEXT_KEY], "")
    out = encode_texts(text, tokenizer, cls_id, sep_id, max_len, pad_to_max=True)
    out[features.LABEL_KEY] = _dense_single(inputs[features.LABEL_KEY], 0)
    return out


def _dense_single(t, default):
    if isinstance(t, tf.SparseTensor):
        t = tf.sparse.to_dense(
            tf.SparseTensor(t.indices, t.values, tf.stack([t.dense_shape[0], tf.constant(1, tf.int64)])),
            default_value=default)
    return tf.reshape(t, [-1])
