"""TFX Trainer module: fine-tune the BERT encoder (TF Hub format) + a classification head, export the scorer.

Model: ``hub.KerasLayer(encoder, trainable=True)`` -> masked mean pooling of ``sequence_output`` (the pooling the
MiniLM sentence encoder was trained with) -> dropout -> Dense(1) logit.  The whole encoder is fine-tuned.
Optimiser: AdamW (no weight decay on LayerNorm parameters and biases) with linear warm-up then linear decay.
Early stopping on the eval split's loss (restoring the best epoch's weights); seeds fixed.

Exported SavedModel (the contract the Kafka workers rely on)::

    sig = tf.saved_model.load(path).signatures["serving_default"]
    sig(text=tf.constant([...]))  ->  {"score": float32 [batch] = P(POSITIVE), "label": string [batch]}

- normalisation and WordPiece tokenization run inside the graph (tensorflow_text ops: the loading process must
  ``import tensorflow_text`` first);
- each batch is padded only to its longest text (capped at max_seq_length); long texts keep head + tail
  (see training/preprocessing.py);
- ``label`` is "POSITIVE" if score >= 0.5 else "NEGATIVE";
- a second signature ``serving_examples`` takes serialized tf.Examples (feature ``text``) for TFMA.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json
import logging
import sys
import time

import tensorflow as tf

from training import features, preprocessing

log = logging.getLogger(__name__)


def _keras():
    import tf_keras

    return tf_keras


class WarmupLinearDecay:
    """Factory for a Keras LearningRateSchedule: linear warm-up to peak, then linear decay to 0."""

    @staticmethod
    def make(peak: float, total_steps: int, warmup_steps: int):
        keras = _keras()

        class _Schedule(keras.optimizers.schedules.LearningRateSchedule):
            def __call__(self, step):
                step = tf.cast(step, tf.float32)
                warm = tf.cast(max(warmup_steps, 1), tf.float32)
                total = tf.cast(max(total_steps, 1), tf.float32)
                up = peak * (step + 1.0) / warm
                down = peak * tf.maximum(0.0, (total - step) / tf.maximum(total - warm, 1.0))
                return tf.where(step < warm, up, down)

            def get_config(self):
                return {"peak": peak, "total_steps": total_steps, "warmup_steps": warmup_steps}

        return _Schedule()


def _trim_to_longest(feats: dict, label):
    """Cut a full-padded batch to its longest row (identical outputs, much less compute on short texts)."""
    longest = tf.reduce_max(tf.reduce_sum(tf.cast(feats[features.MASK], tf.int32), axis=1))
    out = {k: tf.cast(feats[k][:, :longest], tf.int32) for k in (features.WORD_IDS, features.MASK,
                                                                  features.TYPE_IDS)}
    return out, label


def _dataset(file_pattern, data_accessor, tf_transform_output, batch_size: int, seed: int, shuffle: bool):
    from tfx_bsl.public import tfxio

    ds = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=features.LABEL_KEY,
                                       shuffle=shuffle, shuffle_seed=seed, num_epochs=None),
        tf_transform_output.transformed_metadata.schema,
    )
    return ds.map(_trim_to_longest, num_parallel_calls=1).prefetch(1)


def build_model(encoder_path: str, seed: int, dropout: float = 0.1):
    import tensorflow_hub as hub

    keras = _keras()
    inputs = {k: keras.Input(shape=(None,), dtype=tf.int32, name=k)
              for k in (features.WORD_IDS, features.MASK, features.TYPE_IDS)}
    encoder = hub.KerasLayer(encoder_path, trainable=True, name="bert_encoder")
    seq = encoder(inputs)["sequence_output"]

    class MaskedMeanPool(keras.layers.Layer):
        def call(self, seq, mask):
            m = tf.cast(mask, seq.dtype)[:, :, tf.newaxis]
            return tf.reduce_sum(seq * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)

    pooled = MaskedMeanPool(name="masked_mean_pool")(seq, inputs[features.MASK])
    x = keras.layers.Dropout(dropout, seed=seed)(pooled)
    logit = keras.layers.Dense(1, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02, seed=seed),
                               name="classifier")(x)
    return keras.Model(inputs, logit, name="sentiment_scorer")


class _Progress:
    """Keras callback factory that prints per-epoch (and periodic per-step) progress to stdout."""

    @staticmethod
    def make(epochs: int, steps_per_epoch: int):
        keras = _keras()

        class _CB(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.time()
                self.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                every = max(steps_per_epoch // 5, 1)
                if (batch + 1) % every == 0:
                    print(f"  [trainer] epoch {self.epoch + 1}/{epochs} step {batch + 1}/{steps_per_epoch} "
                          f"loss={logs.get('loss', float('nan')):.4f} ({time.time() - self.t0:.0f}s)",
                          flush=True)

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                print(f"  [trainer] epoch {epoch + 1}/{epochs} done in {time.time() - self.t0:.0f}s: "
                      + " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())), flush=True)
                sys.stdout.flush()

        return _CB()


class ScorerModule(tf.Module):
    """What gets exported: tokenizer + encoder/head variables + the two signatures."""

    def __init__(self, model, vocab_file: str, max_seq_length: int):
        super().__init__(name="sentiment_scorer")
        # Keep the Keras model out of the SavedModel object graph (no Keras metadata: TFMA then treats the export
        # as a generic SavedModel with signatures); its variables are tracked explicitly instead.
        object.__setattr__(self, "_keras_model", model)
        self.model_variables = list(model.variables)
        self.tokenizer = preprocessing.make_tokenizer(vocab_file)
        self.cls_id, self.sep_id = preprocessing.special_token_ids(vocab_file)
        self.max_seq_length = max_seq_length

    def _score(self, text):
        enc = preprocessing.encode_texts(text, self.tokenizer, self.cls_id, self.sep_id, self.max_seq_length,
                                         pad_to_max=False)
        logits = self._keras_model({k: tf.cast(v, tf.int32) for k, v in enc.items()}, training=False)
        score = tf.sigmoid(tf.reshape(tf.cast(logits, tf.float32), [-1]))
        label = tf.where(score >= 0.5, tf.constant(features.LABEL_NAMES[1]), tf.constant(features.LABEL_NAMES[0]))
        return {"score": score, "label": label}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        return self._score(text)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        parsed = tf.io.parse_example(
            examples, {features.TEXT_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")})
        return self._score(parsed[features.TEXT_KEY])


def export_scorer(model, vocab_file: str, max_seq_length: int, export_dir: str) -> None:
    module = ScorerModule(model, vocab_file, max_seq_length)
    signatures = {
        "serving_default": module.serve.get_concrete_function(),
        "serving_examples": module.serve_examples.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (``custom_config`` from training.pipeline)."""
    import tensorflow_transform as tft

    keras = _keras()
    cfg = fn_args.custom_config
    seed = int(cfg["seed"])
    keras.utils.set_random_seed(seed)
    batch_size = int(cfg["batch_size"])
    epochs = max(int(cfg["epochs"]), 1)
    total_steps = int(fn_args.train_steps)
    steps_per_epoch = max(total_steps // epochs, 1)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)

    train_ds = _dataset(fn_args.train_files, fn_args.data_accessor, tft_output, batch_size, seed, shuffle=True)
    eval_ds = _dataset(fn_args.eval_files, fn_args.data_accessor, tft_output, batch_size, seed, shuffle=False)

    model = build_model(cfg["encoder_path"], seed)
    optimizer = keras.optimizers.AdamW(
        learning_rate=WarmupLinearDecay.make(float(cfg["learning_rate"]), steps_per_epoch * epochs,
                                             int(steps_per_epoch * epochs * float(cfg["warmup_fraction"]))),
        weight_decay=float(cfg["weight_decay"]), epsilon=1e-6)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "LayerNorm", "layer_norm"])
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0),
                 keras.metrics.AUC(name="auc", from_logits=True)],
    )
    print(f"  [trainer] fine-tuning {model.count_params():,} parameters: {epochs} epochs x {steps_per_epoch} "
          f"steps, batch {batch_size}, eval {fn_args.eval_steps} batches per epoch", flush=True)
    callbacks = [
        _Progress.make(epochs, steps_per_epoch),
        keras.callbacks.EarlyStopping(monitor="val_loss", mode="min",
                                      patience=int(cfg["early_stopping_patience"]), restore_best_weights=True),
    ]
    t0 = time.time()
    history = model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=eval_ds,
                        validation_steps=int(fn_args.eval_steps), callbacks=callbacks, verbose=0)
    train_seconds = time.time() - t0
    export_scorer(model, cfg["vocab_file"], int(cfg["max_seq_length"]), fn_args.serving_model_dir)
    summary = {"train_seconds": train_seconds, "epochs_run": len(history.history.get("loss", [])),
               "steps_per_epoch": steps_per_epoch,
               "history": {k: [float(x) for x in v] for k, v in history.history.items()}}
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, "training_summary.json"), "w") as f:
        f.write(json.dumps(summary, indent=2))
    print(f"  [trainer] trained in {train_seconds:.0f}s; exported scorer to {fn_args.serving_model_dir}",
          flush=True)
