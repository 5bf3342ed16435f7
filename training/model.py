"""TFX Trainer module: fine-tune the BERT encoder (TF Hub format) + a classification head, export the scorer.

Model: ``hub.KerasLayer(encoder, trainable=True)`` -> masked mean pooling of ``sequence_output`` (the pooling the
MiniLM sentence encoder was trained with) -> dropout -> Dense(1) logit.  The whole encoder is fine-tuned.
Optimiser: AdamW (no weight decay on LayerNorm parameters and biases) with linear warm-up then linear decay.
Early stopping on the eval split's AUC (restoring the best epoch's weights; not its loss: in the default run the
loss rose from epoch 1 to 2 while accuracy and AUC rose too -- growing confidence, which calibration corrects
later -- and stopping on it kept a model after 250 of 1,000 steps); seeds fixed.

Exported SavedModel (the contract the Kafka workers rely on)::

    sig = tf.saved_model.load(path).signatures["serving_default"]
    sig(text=tf.constant([...]))  ->  {"score": float32 [batch] = P(POSITIVE), "label": string [batch]}

- normalisation and WordPiece tokenization run inside the graph (tensorflow_text ops: the loading process must
  ``import tensorflow_text`` first);
- long documents: each text is cut into token windows of max_seq_length (stride ``window_stride``, at most
  ``max_windows`` per text, head and tail windows kept when capping; see training/preprocessing.py); the windows
  of all texts of the batch go through the encoder in ONE call, padded to the longest window; the windows' logits
  are pooled per text (``pooling``: mean or confidence-weighted mean), multiplied by ``windows ** length_exponent``
  (more windows read = more evidence; 1 for one window); with a lexical head (training/lexical.py: TF-IDF 1-2-grams
  + logistic regression over the whole text) its logit is added times ``lexical_weight``; the sum is divided by a
  ``temperature`` and shifted by a ``bias`` (Platt scaling), all fitted on the eval split after pooling;
  score = sigmoid(that).  A text of one window scores exactly as a one-window model;
- ``label`` is "POSITIVE" if score >= 0.5 else "NEGATIVE";
- a second signature ``serving_examples`` takes serialized tf.Examples (feature ``text``) for TFMA (same scoring);
- ``assets.extra/scorer.json`` holds the export-time settings the worker needs for its cost estimate::

    {"max_seq_length": 64, "window_stride": 48, "max_windows": 16, "pooling": "confidence",
     "temperature": 1.3, "contract": 1, "length_exponent": 0.3, "window_tokens": 62, "lexical_weight": 0.7,
     "lexical": {"terms": "word 1-2-grams", "vocab_size": 40000, ...}, "bias": -0.4,
     "windows_formula": "...", "score": "..."}

Training sees one window per example (Transform, head+tail); the training split contains, besides the original
texts, window-sized crops of pseudo-documents (training/data.py) so that windows cut out of long texts are in
distribution.  After fitting, the lexical head (if the profile has one) is fitted on the train split, and
``calibrate`` scores the eval split (texts and pseudo-documents) window by window and keeps the pooling, length
exponent (grid 0..1), lexical weight, temperature and bias with the lowest eval log-loss; the scorer is exported
with them.
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


def length_bucketed(ds, batch_size: int, pool_batches: int, seed: int):
    """Batches of similar length: ``ds`` (shuffled full-padded batches) -> pools of ``pool_batches`` batches,
    each pool sorted by token count and cut into batches again, the batches of a pool shuffled.

    Every example is still seen once per pass, in a shuffled pool; a batch's rows then have similar lengths, so
    ``_trim_to_longest`` cuts most of the padding (short snippets and 64-token crops no longer share a batch).
    """
    keys = (features.WORD_IDS, features.MASK, features.TYPE_IDS)

    def sort_pool(feats, label):
        order = tf.argsort(tf.reduce_sum(tf.cast(feats[features.MASK], tf.int32), axis=1), stable=True)
        return {k: tf.gather(feats[k], order) for k in keys}, tf.gather(label, order)

    def only_model_inputs(feats, label):
        return {k: feats[k] for k in keys}, label

    pools = ds.map(only_model_inputs).unbatch().batch(batch_size * pool_batches, drop_remainder=True)
    return (pools.map(sort_pool).unbatch().batch(batch_size, drop_remainder=True)
            .shuffle(pool_batches, seed=seed))


def _dataset(file_pattern, data_accessor, tf_transform_output, batch_size: int, seed: int, shuffle: bool,
             bucket_pool: int = 0):
    from tfx_bsl.public import tfxio

    ds = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=features.LABEL_KEY,
                                       shuffle=shuffle, shuffle_seed=seed, num_epochs=None),
        tf_transform_output.transformed_metadata.schema,
    )
    if bucket_pool > 1:
        ds = length_bucketed(ds, batch_size, bucket_pool, seed)
    return ds.map(_trim_to_longest, num_parallel_calls=1).prefetch(1)


def make_optimizer(peak_learning_rate: float, total_steps: int, warmup_fraction: float, weight_decay: float):
    """AdamW with linear warm-up then linear decay; no weight decay on LayerNorm parameters and biases."""
    keras = _keras()
    optimizer = keras.optimizers.AdamW(
        learning_rate=WarmupLinearDecay.make(peak_learning_rate, total_steps, int(total_steps * warmup_fraction)),
        weight_decay=weight_decay, epsilon=1e-6)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "LayerNorm", "layer_norm"])
    return optimizer


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


POOLINGS = ("mean", "confidence")
SCORER_METADATA = "scorer.json"  # written to <export>/assets.extra/ (the Pusher copies the whole directory)
CONTRACT_VERSION = 1


def pool_logits(logits: tf.Tensor, text_index: tf.Tensor, num_texts: tf.Tensor, pooling: str) -> tf.Tensor:
    """Window logits [windows] -> text logits [texts].

    mean:       the mean of the windows' logits.
    confidence: a confidence-weighted mean, weights |logit| (+1e-6): confident windows (the verdict) count more
                than neutral ones (plot summary).  One window gives its own logit under either pooling.
    """
    if pooling == "mean":
        return tf.math.unsorted_segment_mean(logits, text_index, num_texts)
    if pooling == "confidence":
        w = tf.abs(logits) + 1e-6
        return (tf.math.unsorted_segment_sum(w * logits, text_index, num_texts)
                / tf.math.unsorted_segment_sum(w, text_index, num_texts))
    raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")


def pool_logits_np(logits, text_index, num_texts: int, pooling: str):
    """numpy twin of pool_logits (calibration and the report's max_windows sweep)."""
    import numpy as np

    logits = np.asarray(logits, np.float64)
    w = np.ones_like(logits) if pooling == "mean" else np.abs(logits) + 1e-6
    num = np.bincount(text_index, weights=w * logits, minlength=num_texts)
    return num / np.bincount(text_index, weights=w, minlength=num_texts)


class ScorerModule(tf.Module):
    """What gets exported: tokenizer + encoder/head variables + the two signatures.

    serving: texts -> windows (preprocessing.encode_windows) -> ONE encoder call over all windows of the batch
    -> window logits -> pooled per text (``pooling``) -> divided by ``temperature`` -> sigmoid.
    """

    def __init__(self, model, vocab_file: str, max_seq_length: int, window_stride: int | None = None,
                 max_windows: int = 1, pooling: str = "mean", temperature: float = 1.0,
                 length_exponent: float = 0.0, lexical=None, lexical_weight: float = 0.0, bias: float = 0.0):
        super().__init__(name="sentiment_scorer")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        # Keep the Keras model out of the SavedModel object graph (no Keras metadata: TFMA then treats the export
        # as a generic SavedModel with signatures); its variables are tracked explicitly instead.
        object.__setattr__(self, "_keras_model", model)
        self.model_variables = list(model.variables)
        self.tokenizer = preprocessing.make_tokenizer(vocab_file)
        self.cls_id, self.sep_id = preprocessing.special_token_ids(vocab_file)
        self.max_seq_length = int(max_seq_length)
        self.window_stride = int(window_stride or max(max_seq_length - 2, 1))
        self.max_windows = int(max_windows)
        self.pooling = pooling
        self.temperature = float(temperature)
        self.length_exponent = float(length_exponent)
        self.bias = float(bias)
        # Lexical head (training/lexical.py): its logit, times lexical_weight, joins the pooled logit.
        self.lexical_weight = float(lexical_weight) if lexical is not None else 0.0
        self.lexical_info = lexical.info() if lexical is not None and self.lexical_weight else None
        if self.lexical_info is not None:
            from training import lexical as lexical_lib

            self.lexical = lexical_lib.LexicalHead(lexical)

    def metadata(self) -> dict:
        return {"max_seq_length": self.max_seq_length, "window_stride": self.window_stride,
                "max_windows": self.max_windows, "pooling": self.pooling, "temperature": self.temperature,
                "contract": CONTRACT_VERSION, "length_exponent": self.length_exponent,
                "window_tokens": self.max_seq_length - 2,
                "lexical_weight": self.lexical_weight, "lexical": self.lexical_info, "bias": self.bias,
                "windows_formula": "n = WordPiece tokens of the normalised text (no [CLS]/[SEP]); L = "
                                   "max_seq_length - 2; windows = 1 if n <= L else min(max_windows, "
                                   "1 + ceil((n - L) / window_stride)); each window is <= max_seq_length tokens",
                "score": "P(POSITIVE) = sigmoid((pooled window logits * windows ** length_exponent + lexical_weight"
                         " * lexical logit) / temperature + bias)"}

    def window_logits(self, text):
        """(logits [windows] float32, text index [windows] int32) of every window of every text."""
        enc, text_index = preprocessing.encode_windows(text, self.tokenizer, self.cls_id, self.sep_id,
                                                       self.max_seq_length, self.window_stride, self.max_windows)
        logits = self._keras_model({k: tf.cast(v, tf.int32) for k, v in enc.items()}, training=False)
        return tf.reshape(tf.cast(logits, tf.float32), [-1]), text_index

    def _score(self, text):
        logits, text_index = self.window_logits(text)
        pooled = pool_logits(logits, text_index, tf.size(text), self.pooling)
        if self.length_exponent != 0.0:  # evidence grows with the windows read; exactly 1.0 for one window
            windows = tf.math.unsorted_segment_sum(tf.ones_like(logits), text_index, tf.size(text))
            pooled = pooled * tf.pow(tf.maximum(windows, 1.0), self.length_exponent)
        if self.lexical_info is not None:  # bag of 1-2-grams over the whole text
            pooled = pooled + tf.constant(self.lexical_weight, tf.float32) * self.lexical.logits(text)
        if self.temperature != 1.0:
            pooled = pooled / tf.constant(self.temperature, tf.float32)
        if self.bias != 0.0:
            pooled = pooled + tf.constant(self.bias, tf.float32)
        score = tf.sigmoid(pooled)
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


def export_scorer(model, vocab_file: str, max_seq_length: int, export_dir: str, window_stride: int | None = None,
                  max_windows: int = 1, pooling: str = "mean", temperature: float = 1.0,
                  length_exponent: float = 0.0, lexical=None, lexical_weight: float = 0.0,
                  bias: float = 0.0) -> dict:
    """Save the scorer SavedModel and ``<export_dir>/assets.extra/scorer.json``; return that metadata."""
    module = ScorerModule(model, vocab_file, max_seq_length, window_stride, max_windows, pooling, temperature,
                          length_exponent, lexical, lexical_weight, bias)
    signatures = {
        "serving_default": module.serve.get_concrete_function(),
        "serving_examples": module.serve_examples.get_concrete_function(),
    }
    tf.saved_model.save(module, export_dir, signatures=signatures)
    meta = module.metadata()
    extra = os.path.join(export_dir, "assets.extra")
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, SCORER_METADATA), "w") as f:
        f.write(json.dumps(meta, indent=2))
    return meta


def read_scorer_metadata(export_dir) -> dict:
    with tf.io.gfile.GFile(os.path.join(str(export_dir), "assets.extra", SCORER_METADATA)) as f:
        return json.loads(f.read())


def fit_temperature(logits, labels) -> float:
    """Temperature T minimising the log-loss of sigmoid(logits / T) (1-D search over log T)."""
    import numpy as np

    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.float64)

    def nll(log_t):
        s = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    grid = np.linspace(np.log(0.05), np.log(20.0), 121)
    best = grid[int(np.argmin([nll(g) for g in grid]))]
    lo, hi = best - 0.06, best + 0.06  # golden-section refinement around the best grid point
    g = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def log_loss(logits, labels, temperature: float = 1.0) -> float:
    import numpy as np

    s = np.asarray(logits, np.float64) / temperature
    return float(np.mean(np.logaddexp(0.0, s) - np.asarray(labels, np.float64) * s))


def expected_calibration_error(scores, labels, bins: int = 10) -> float:
    """ECE with equal-width bins on P(POSITIVE) (the positive-class reliability diagram)."""
    import numpy as np

    p = np.asarray(scores, np.float64)
    y = np.asarray(labels, np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(ece)


def window_logits_batched(module: ScorerModule, texts: list[str], batch_size: int = 64):
    """Window logits of many texts (length-sorted batches); returns (logits, text_index) over ``texts``' order."""
    import numpy as np

    fn = tf.function(module.window_logits, input_signature=[tf.TensorSpec([None], tf.string)])
    order = np.argsort([len(t) for t in texts], kind="stable")
    all_logits, all_index = [], []
    for i in range(0, len(texts), batch_size):
        idx = order[i:i + batch_size]
        logits, text_index = fn(tf.constant([texts[j] for j in idx]))
        all_logits.append(logits.numpy())
        all_index.append(idx[text_index.numpy()])
    if not all_logits:
        return np.zeros([0], np.float32), np.zeros([0], np.int64)
    return np.concatenate(all_logits), np.concatenate(all_index)


def _read_texts(file_patterns) -> tuple[list[str], list[int]]:
    """(text, label) of a transformed split (Transform passes the raw text through)."""
    patterns = [file_patterns] if isinstance(file_patterns, str) else list(file_patterns)
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    gz = all(f.endswith(".gz") for f in files)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP" if gz else "")
    spec = {features.TEXT_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
            features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=0)}
    texts, labels = [], []
    for rec in ds.batch(1024):
        p = tf.io.parse_example(rec, spec)
        texts += [t.decode("utf-8", "replace") for t in p[features.TEXT_KEY].numpy()]
        labels += p[features.LABEL_KEY].numpy().tolist()
    return texts, labels


def fit_logistic(x, labels) -> tuple[list[float], float]:
    """Weights and intercept of a (barely regularised) logistic regression of ``labels`` on the columns of ``x``."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1e4, max_iter=2000).fit(x, labels)
    return [float(w) for w in clf.coef_[0]], float(clf.intercept_[0])


def calibrate(model, cfg: dict, texts: list[str], labels: list[int], lexical=None) -> dict:
    """Choose the pooling and length exponent, and fit temperature, bias and (with ``lexical``) the lexical weight
    on the eval split, after pooling; the lowest eval log-loss wins (see module docstring).

    For each pooling and exponent a, with z = pooled * windows ** a and l = the lexical logit, a logistic
    regression of the labels on (z, l) gives w_z, w_l, c: temperature = 1 / w_z, lexical weight = w_l / w_z,
    bias = c, i.e. score = sigmoid((z + weight * l) / temperature + bias) (Platt scaling; without a lexical head
    the regression is on z alone)."""
    import numpy as np

    max_len = int(cfg["max_seq_length"])
    module = ScorerModule(model, cfg["vocab_file"], max_len, int(cfg["window_stride"]), int(cfg["max_windows"]))
    y = np.asarray(labels)
    t0 = time.time()
    logits, index = window_logits_batched(module, texts)
    windows = np.bincount(index, minlength=len(texts))
    multi = windows > 1
    candidates = {}
    wanted = POOLINGS if cfg.get("pooling", "auto") == "auto" else (cfg["pooling"],)
    exponents = [round(a, 2) for a in np.arange(0.0, 1.0001, 0.05)] if cfg.get("length_scaling", True) else [0.0]
    scale = np.maximum(windows, 1).astype(np.float64)
    lexical_logits = None
    if lexical is not None:
        from training import lexical as lexical_lib

        head = lexical_lib.LexicalHead(lexical)
        lexical_logits = np.concatenate([head.logits(tf.constant(texts[i:i + 1024])).numpy()
                                         for i in range(0, len(texts), 1024)]).astype(np.float64)

    def evaluate(final):
        """Metrics of final logits (score = sigmoid(final))."""
        scores = 1 / (1 + np.exp(-final))
        return {"eval_log_loss": log_loss(final, y),
                "eval_log_loss_multi_window": log_loss(final[multi], y[multi]) if multi.any() else 0.0,
                "eval_accuracy": float(((final >= 0) == (y == 1)).mean()),
                "eval_accuracy_multi_window": float(((final[multi] >= 0) == (y[multi] == 1)).mean())
                if multi.any() else float("nan"),
                "eval_ece": expected_calibration_error(scores, y),
                "eval_ece_multi_window": expected_calibration_error(scores[multi], y[multi]) if multi.any() else 0.0}

    def fit(z, with_lexical: bool) -> dict | None:
        x = np.c_[z, lexical_logits] if with_lexical else z[:, None]
        w, c = fit_logistic(x, y)
        if w[0] <= 0:  # the encoder's logit must keep its sign
            return None
        weight = w[1] / w[0] if with_lexical else 0.0
        temp = 1.0 / w[0]
        final = (z + (weight * lexical_logits if with_lexical else 0.0)) / temp + c
        return dict(evaluate(final), temperature=temp, lexical_weight=weight, bias=c)

    for pooling in wanted:
        pooled = pool_logits_np(logits, index, len(texts), pooling)
        fits = {}
        for a in exponents:
            for with_lexical in ((False, True) if lexical is not None else (False,)):
                r = fit(pooled * scale ** a, with_lexical)
                if r is not None:
                    fits[(a, with_lexical)] = dict(r, length_exponent=a)
        if not fits:
            raise RuntimeError(f"calibration failed: the {pooling}-pooled logit does not predict the eval labels")
        best_key = min(fits, key=lambda k: fits[k]["eval_log_loss"])
        temp0 = fit_temperature(pooled, y)
        candidates[pooling] = dict(fits[best_key], without_length_scaling=dict(
            evaluate(pooled / temp0), temperature=temp0, lexical_weight=0.0, bias=0.0, length_exponent=0.0))
        if best_key[1]:
            plain = min((k for k in fits if not k[1]), key=lambda k: fits[k]["eval_log_loss"], default=None)
            if plain is not None:
                candidates[pooling]["without_lexical"] = fits[plain]
    best = min(candidates, key=lambda k: candidates[k]["eval_log_loss"])
    out = {"pooling": best, "temperature": candidates[best]["temperature"],
           "length_exponent": candidates[best]["length_exponent"],
           "lexical_weight": candidates[best]["lexical_weight"], "bias": candidates[best]["bias"],
           "candidates": candidates,
           "eval_texts": len(texts), "eval_multi_window_texts": int(multi.sum()), "eval_windows": len(logits),
           "seconds": time.time() - t0}
    print(f"  [trainer] calibration on {len(texts)} eval texts ({int(multi.sum())} multi-window, {len(logits)} "
          f"windows, {out['seconds']:.0f}s): " + "; ".join(
              f"{k}: exponent={v['length_exponent']} lexical={v['lexical_weight']:.3f} T={v['temperature']:.3f} "
              f"bias={v['bias']:.3f} log-loss={v['eval_log_loss']:.4f} acc={v['eval_accuracy']:.4f} "
              f"multi-window acc={v['eval_accuracy_multi_window']:.4f} "
              f"multi-window ECE={v['eval_ece_multi_window']:.4f}" for k, v in candidates.items())
          + f" -> {best}", flush=True)
    return out


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

    train_ds = _dataset(fn_args.train_files, fn_args.data_accessor, tft_output, batch_size, seed, shuffle=True,
                        bucket_pool=int(cfg.get("bucket_pool", 0)))
    eval_ds = _dataset(fn_args.eval_files, fn_args.data_accessor, tft_output, batch_size, seed, shuffle=False)

    model = build_model(cfg["encoder_path"], seed)
    model.compile(
        optimizer=make_optimizer(float(cfg["learning_rate"]), steps_per_epoch * epochs,
                                 float(cfg["warmup_fraction"]), float(cfg["weight_decay"])),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0),
                 keras.metrics.AUC(name="auc", from_logits=True)],
    )
    print(f"  [trainer] fine-tuning {model.count_params():,} parameters: {epochs} epochs x {steps_per_epoch} "
          f"steps, batch {batch_size}, eval {fn_args.eval_steps} batches per epoch", flush=True)
    callbacks = [
        _Progress.make(epochs, steps_per_epoch),
        keras.callbacks.EarlyStopping(monitor="val_auc", mode="max",
                                      patience=int(cfg["early_stopping_patience"]), restore_best_weights=True),
    ]
    t0 = time.time()
    history = model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=eval_ds,
                        validation_steps=int(fn_args.eval_steps), callbacks=callbacks, verbose=0)
    train_seconds = time.time() - t0
    eval_texts, eval_labels = _read_texts(fn_args.eval_files)
    lexical, lexical_seconds = None, 0.0
    if cfg.get("lexical_head"):
        from training import lexical as lexical_lib

        t1 = time.time()
        lexical = lexical_lib.fit(*_read_texts(fn_args.train_files), eval_texts, eval_labels, seed=seed)
        lexical_seconds = time.time() - t1
        print(f"  [trainer] lexical head: {len(lexical.vocab):,} terms, C={lexical.c}, eval accuracy "
              f"{lexical.eval_accuracy:.4f} ({lexical_seconds:.0f}s)", flush=True)
    calibration = calibrate(model, cfg, eval_texts, eval_labels, lexical)
    max_len, stride = int(cfg["max_seq_length"]), int(cfg["window_stride"])
    weight, bias = calibration["lexical_weight"], calibration["bias"]
    meta = export_scorer(model, cfg["vocab_file"], max_len, fn_args.serving_model_dir, stride,
                         int(cfg["max_windows"]), calibration["pooling"], calibration["temperature"],
                         calibration["length_exponent"], lexical, weight, bias)
    # Same weights / pooling / temperature with other window caps, for the report's accuracy-cost sweep (not
    # pushed; max_windows=1 is the single-window head+tail scorer of earlier versions).
    variants = {f"max_windows_{int(k)}": (max_len, stride, int(k)) for k in cfg.get("sweep_max_windows", [])
                if int(k) != int(cfg["max_windows"])}
    # ... and with other window lengths (same pooling / temperature, fitted for the trained window length).
    variants.update({f"window_{int(n)}_{int(s)}_{int(k)}": (int(n), int(s), int(k))
                     for n, s, k in cfg.get("sweep_windows", [])})
    for name, (n, s, k) in sorted(variants.items()):
        export_scorer(model, cfg["vocab_file"], n, os.path.join(fn_args.model_run_dir, "variants", name), s, k,
                      calibration["pooling"], calibration["temperature"], calibration["length_exponent"], lexical,
                      weight, bias)
    summary = {"train_seconds": train_seconds, "lexical_seconds": lexical_seconds,
               "epochs_run": len(history.history.get("loss", [])),
               "steps_per_epoch": steps_per_epoch, "scorer": meta, "calibration": calibration,
               "history": {k: [float(x) for x in v] for k, v in history.history.items()}}
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, "training_summary.json"), "w") as f:
        f.write(json.dumps(summary, indent=2))
    print(f"  [trainer] trained in {train_seconds:.0f}s; exported scorer to {fn_args.serving_model_dir}",
          flush=True)
