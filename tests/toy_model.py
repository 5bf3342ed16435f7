"""A small sentiment SavedModel with exactly the production model contract, for the worker's own tests.

``serving_default(text: 1-D tf.string) -> {"score": float32, "label": int64}``, tokenising inside the graph with
TensorFlow Text's ``BertTokenizer`` (as the trained model does).  Scores come from a tiny word list, so tests
can predict the label.  A text containing ``<poison>`` makes the model raise ``InvalidArgumentError``, which
lets tests exercise the worker's per-message scoring-failure path against real TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

POSITIVE = ["good", "great", "excellent", "love", "wonderful", "best", "fun", "brilliant"]
NEGATIVE = ["bad", "awful", "terrible", "hate", "boring", "worst", "dull", "waste"]
POISON = "<poison>"


def build_toy_model(base: Path, version: int = 1) -> Path:
    import tensorflow as tf
    import tensorflow_text as tf_text

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *POSITIVE, *NEGATIVE]
    weights = [0.0] * 4 + [1.0] * len(POSITIVE) + [-1.0] * len(NEGATIVE) + [0.0]  # last: OOV bucket

    class ToySentiment(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            init = tf.lookup.KeyValueTensorInitializer(tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64))
            self.table = tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)
            self.tokenizer = tf_text.BertTokenizer(self.table, token_out_type=tf.int64, lower_case=True)
            self.weights = tf.Variable(weights, dtype=tf.float32, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
            poisoned = tf.strings.regex_full_match(text, r"(?s).*<poison>.*")
            tf.debugging.Assert(tf.logical_not(tf.reduce_any(poisoned)), ["poisoned input"])
            ids = self.tokenizer.tokenize(text).merge_dims(-2, -1)
            logits = tf.reduce_sum(tf.gather(self.weights, ids), axis=-1)
            score = tf.sigmoid(2.0 * logits)
            return {"score": score, "label": tf.cast(score >= 0.5, tf.int64)}

    module = ToySentiment()
    path = base / str(version)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path
