"""An independent numpy forward pass of the reference BERT (HF BertModel layout), used as test oracle."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf


def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _lin(x, w, prefix):
    return x @ w[prefix + ".weight"].astype(np.float64).T + w[prefix + ".bias"]


def forward(w: dict, cfg: dict, ids: np.ndarray, mask: np.ndarray, num_layers: int | None = None):
    """Return (sequence_output, pooled_output) in float64 for int arrays ids/mask of shape [batch, seq]."""
    eps = cfg["layer_norm_eps"]
    h, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    d = h // nh
    b, s = ids.shape
    x = (w["embeddings.word_embeddings.weight"][ids].astype(np.float64)
         + w["embeddings.position_embeddings.weight"][:s][None]
         + w["embeddings.token_type_embeddings.weight"][np.zeros_like(ids)])
    x = _ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    neg = np.where(mask[:, None, None, :] > 0, 0.0, -np.inf)
    for i in range(num_layers or cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def heads(t):
            return t.reshape(b, s, nh, d).transpose(0, 2, 1, 3)

        q = heads(_lin(x, w, p + "attention.self.query"))
        k = heads(_lin(x, w, p + "attention.self.key"))
        v = heads(_lin(x, w, p + "attention.self.value"))
        a = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + neg
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(0, 2, 1, 3).reshape(b, s, h)
        x = _ln(x + _lin(ctx, w, p + "attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        f = _lin(x, w, p + "intermediate.dense")
        f = 0.5 * f * (1 + erf(f / math.sqrt(2)))
        x = _ln(x + _lin(f, w, p + "output.dense"),
                w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    pooled = np.tanh(_lin(x[:, 0], w, "pooler.dense"))
    return x, pooled
