"""The exported TF-Hub encoder reproduces an independent numpy forward pass of the MiniLM weights (1e-4)."""

import numpy as np
import numpy_bert
import pytest

SENTENCES = [
    "This movie was absolutely wonderful, I loved every minute of it.",
    "A dull, lifeless and far too long exercise in tedium.",
    "Café crème brûlée — naïve façade!",
    "ok",
    "[NAME] wrote to <EMAIL> about the 3rd sequel... meh.",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from training import encoder_export

    return encoder_export.export_encoder(tmp_path_factory.mktemp("enc") / "minilm-l6", None)


def _tokenize(encoder_dir, texts, max_len=32):
    import tensorflow as tf

    from training import encoder_export, preprocessing

    vocab = encoder_export.vocab_path(encoder_dir)
    tok = preprocessing.make_tokenizer(vocab)
    cls, sep = preprocessing.special_token_ids(vocab)
    enc = preprocessing.encode_texts(tf.constant(texts), tok, cls, sep, max_len, pad_to_max=False)
    return {k: v.numpy().astype(np.int32) for k, v in enc.items()}


def test_hub_encoder_matches_numpy_reference(exported):
    import tensorflow_hub as hub

    from training import encoder_export

    inputs = _tokenize(exported, SENTENCES)
    layer = hub.KerasLayer(exported, trainable=True)
    out = layer(inputs)
    assert len(layer.trainable_weights) > 100  # the whole encoder is trainable (fine-tuning)
    weights, config = encoder_export.load_reference_weights()
    seq_ref, pooled_ref = numpy_bert.forward(weights, config, inputs["input_word_ids"], inputs["input_mask"])
    valid = inputs["input_mask"][..., None] > 0
    seq = out["sequence_output"].numpy()
    assert seq.shape == seq_ref.shape == (*inputs["input_word_ids"].shape, 384)
    assert np.abs(np.where(valid, seq - seq_ref, 0.0)).max() < 1e-4
    assert np.abs(out["pooled_output"].numpy() - pooled_ref).max() < 1e-4


def test_encoder_is_a_hub_module_with_vocab_asset(exported):
    import pathlib

    import tensorflow as tf

    loaded = tf.saved_model.load(exported)
    assert pathlib.Path(loaded.vocab_file.asset_path.numpy().decode()).name == "vocab.txt"
    assert len(loaded.trainable_variables) == len(loaded.variables) > 100
    sig = loaded.signatures["serving_default"]
    assert set(sig.structured_input_signature[1]) == {"input_word_ids", "input_mask", "input_type_ids"}
    assert {"pooled_output", "sequence_output"} <= set(sig.structured_outputs)


def test_first_layers_export(tmp_path):
    """The ci profile uses the first layers only; they equal the reference's first layers."""
    import tensorflow_hub as hub

    from training import encoder_export

    path = encoder_export.export_encoder(tmp_path / "l2", num_layers=2)
    inputs = _tokenize(path, SENTENCES[:2])
    out = hub.KerasLayer(path)(inputs)
    weights, config = encoder_export.load_reference_weights()
    seq_ref, _ = numpy_bert.forward(weights, config, inputs["input_word_ids"], inputs["input_mask"], num_layers=2)
    valid = inputs["input_mask"][..., None] > 0
    assert np.abs(np.where(valid, out["sequence_output"].numpy() - seq_ref, 0.0)).max() < 1e-4
