"""A toy-model variant whose serving is slow on demand, for the "slow batch near max.poll.interval.ms" scenario.

Same contract as ``tests/toy_model.py`` (``serving_default(text) -> {score, label}``, BertTokenizer in the graph,
``<poison>`` raises) plus one marker: a batch holding a text with ``<slow>`` spins inside the graph until
``slow_s`` seconds of wall time have passed (a ``tf.while_loop`` on ``tf.timestamp()``; a SavedModel cannot carry a
Python sleep), then scores normally.  Warm-up batches hold no marker, so the worker starts at normal speed.
"""

from __future__ import annotations

from pathlib import Path

try:
    from tests.toy_model import NEGATIVE, POSITIVE
except ModuleNotFoundError:
    from toy_model import NEGATIVE, POSITIVE  # type: ignore[no-redef]

SLOW = "<slow>"


def build_slow_model(base: Path, slow_s: float, version: int = 1) -> Path:
    import tensorflow as tf
    import tensorflow_text as tf_text

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *POSITIVE, *NEGATIVE]
    weights = [0.0] * 4 + [1.0] * len(POSITIVE) + [-1.0] * len(NEGATIVE) + [0.0]

    class SlowToySentiment(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            init = tf.lookup.KeyValueTensorInitializer(tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64))
            self.table = tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)
            self.tokenizer = tf_text.BertTokenizer(self.table, token_out_type=tf.int64, lower_case=True)
            self.weights = tf.Variable(weights, dtype=tf.float32, trainable=False)
            self.slow_s = tf.constant(slow_s, dtype=tf.float64)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
            poisoned = tf.strings.regex_full_match(text, r"(?s).*<poison>.*")
            tf.debugging.Assert(tf.logical_not(tf.reduce_any(poisoned)), ["poisoned input"])
            slow = tf.reduce_any(tf.strings.regex_full_match(text, r"(?s).*<slow>.*"))
            start = tf.timestamp()
            wait = tf.where(slow, self.slow_s, tf.constant(0.0, tf.float64))
            spins = tf.while_loop(
                lambda i: tf.timestamp() - start < wait, lambda i: [i + 1], [tf.constant(0, tf.int64)]
            )
            ids = self.tokenizer.tokenize(text).merge_dims(-2, -1)
            logits = tf.reduce_sum(tf.gather(self.weights, ids), axis=-1)
            # Make the result depend on the loop so it is not pruned (adds 0).
            logits = logits + tf.cast(tf.minimum(spins[0], 0), tf.float32)
            score = tf.sigmoid(2.0 * logits)
            return {"score": score, "label": tf.cast(score >= 0.5, tf.int64)}

    module = SlowToySentiment()
    path = base / str(version)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path
