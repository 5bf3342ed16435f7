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
BERT for text classification", head+tail truncation).  [CLS] and [SEP] are always added.  Transform (training)
uses this one-window encoding.

Long-document windows (serving, ``encode_windows``): with ``L = max_seq_length - 2`` content tokens per window,
stride ``S`` and cap ``K = max_windows``, a text of ``n`` WordPiece tokens is cut into

    W(n) = 1                               if n <= L
         = 1 + ceil((n - L) / S)           otherwise (window j starts at min(j*S, n-L); the last ends at the end)
    windows(n) = min(W(n), K)

windows of exactly ``min(n, L)`` tokens each, every one wrapped in [CLS] ... [SEP].  When ``W(n) > K`` the K
windows are spread evenly from the first (head) to the last (tail) window: start_j = round(j * (n-L) / (K-1)).
``K = 1`` is the single-window model: head+tail truncation as above.  A text of n <= L tokens is exactly one
window with the same token ids as the one-window encoding, so it scores exactly as before.
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
    return _wrap_and_pad(tokens, cls_id, sep_id, shape=[None, max_seq_length] if pad_to_max else None)


def num_windows(n_tokens, max_seq_length: int, stride: int, max_windows: int):
    """Windows per text for WordPiece token counts ``n_tokens`` (int or numpy array); see the module docstring.

    This is the cost model the worker uses (written to ``assets.extra/scorer.json``): a text costs
    ``num_windows(n) * max_seq_length`` padded token positions at most.
    """
    import numpy as np

    n = np.asarray(n_tokens, dtype=np.int64)
    content = max_seq_length - 2
    full = 1 + np.maximum(-(-(n - content) // stride), 0)
    out = np.minimum(full, max_windows)
    return int(out) if out.ndim == 0 else out


def token_counts(texts: list[str], vocab_file: str, batch_size: int = 2048):
    """WordPiece token counts (without [CLS]/[SEP]) of ``texts`` after the serving normalisation."""
    import numpy as np

    tok = make_tokenizer(vocab_file)
    counts = []
    for i in range(0, len(texts), batch_size):
        t = tok.tokenize(normalize_text(tf.constant(texts[i:i + batch_size]))).merge_dims(-2, -1)
        counts.append(t.row_lengths().numpy())
    return np.concatenate(counts) if counts else np.zeros([0], np.int64)


def encode_windows(texts: tf.Tensor, tokenizer, cls_id: int, sep_id: int, max_seq_length: int, stride: int,
                   max_windows: int) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Raw texts [batch] -> (encoder inputs [num_windows_total, <= max_seq_length], text index per window).

    Each text is tokenized once; its windows (module docstring) are gathered from the token sequence, and the
    windows of all texts form one batch padded to the longest window (so one encoder call scores everything).
    The second result maps window -> text (int32, sorted, every text has >= 1 window).
    """
    if max_windows < 1 or stride < 1:
        raise ValueError(f"max_windows ({max_windows}) and stride ({stride}) must be >= 1")
    content = max_seq_length - 2
    tokens = tokenizer.tokenize(normalize_text(texts)).merge_dims(-2, -1)
    if max_windows == 1:
        windows = head_tail_truncate(tokens, content)
        text_index = tf.range(windows.nrows(), dtype=tf.int32)
    else:
        n = tokens.row_lengths()
        extra = tf.maximum(n - content, 0)
        full = 1 + (extra + stride - 1) // stride
        k = tf.minimum(full, max_windows)
        j = tf.ragged.range(k)
        row = j.value_rowids()
        jf = j.flat_values
        extra_w = tf.gather(extra, row)
        k_w = tf.gather(k, row)
        by_stride = tf.minimum(jf * stride, extra_w)
        # Capped: K starts evenly spread over [0, n - L] (round half up), so head and tail windows are kept.
        spread = (2 * jf * extra_w + (k_w - 1)) // tf.maximum(2 * (k_w - 1), 1)
        start = tf.where(tf.gather(full > max_windows, row), spread, by_stride)
        length = tf.gather(tf.minimum(n, content), row)
        begin = tf.gather(tokens.row_starts(), row) + start
        positions = tf.ragged.range(begin, begin + length)
        windows = tf.gather(tokens.flat_values, positions)
        text_index = tf.cast(row, tf.int32)
    return _wrap_and_pad(windows, cls_id, sep_id, shape=None), text_index


def _wrap_and_pad(tokens: tf.RaggedTensor, cls_id: int, sep_id: int, shape) -> dict[str, tf.Tensor]:
    batch = tokens.nrows()
    cls = tf.fill([batch, 1], tf.constant(cls_id, tf.int64))
    sep = tf.fill([batch, 1], tf.constant(sep_id, tf.int64))
    ids = tf.concat([tf.RaggedTensor.from_tensor(cls), tokens, tf.RaggedTensor.from_tensor(sep)], axis=1)
    mask = tf.ones_like(ids)
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
    # The raw text is passed through so that the Trainer can calibrate the exported (windowed) scorer on the
    # eval split after training.
    out[features.TEXT_KEY] = text
    return out


def _dense_single(t, default):
    if isinstance(t, tf.SparseTensor):
        t = tf.sparse.to_dense(
            tf.SparseTensor(t.indices, t.values, tf.stack([t.dense_shape[0], tf.constant(1, tf.int64)])),
            default_value=default)
    return tf.reshape(t, [-1])
