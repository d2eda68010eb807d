"""kmm://minilm-l6 reproduces all-MiniLM-L6-v2 (see fixtures/make_minilm_reference.py)."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kmm import specs
from kmm.encoders.bert import BertConfig, build_bert, load_hf_bert_weights
from kmm.encoders.builtin import package_dir
from kmm.weights import read_safetensors
from tests.encoders.bert_reference import numpy_bert_reference

REFERENCE = np.load(Path(__file__).parents[1] / "fixtures" / "minilm_reference.npz")
pytestmark = pytest.mark.slow


def _normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_keras_port_equals_numpy_bert():
    tensors = read_safetensors(package_dir("minilm-l6") / "model" / "model.safetensors")
    bert = build_bert()
    load_hf_bert_weights(bert, tensors, BertConfig())
    ids = REFERENCE["ids_0"]
    out = bert({specs.INPUT_IDS: ids[None], specs.PADDING_MASK: np.ones((1, len(ids)), bool)}).numpy()[0]
    np.testing.assert_allclose(out, numpy_bert_reference(tensors, ids), atol=1e-4)


def test_saved_encoder_matches_reference_vectors(real_encoders):
    from kmm.hub.handles import load_module

    module = load_module("kmm://minilm-l6")
    sentences = [str(s) for s in REFERENCE["sentences"]]
    out = module(tf.constant(sentences))
    emb = _normalize(out[specs.POOLED_OUTPUT].numpy())
    np.testing.assert_allclose(emb, REFERENCE["embeddings"], atol=1e-4)
    sims = emb @ emb.T
    # Cosine similarities of the PyTorch reference model (../shared/FACTS.md), within 1e-3.
    assert sims[0, 1] == pytest.approx(0.640, abs=1e-3)
    assert sims[0, 2] == pytest.approx(0.192, abs=1e-3)
    assert sims[1, 2] == pytest.approx(0.154, abs=1e-3)


def test_padding_does_not_change_embeddings(real_encoders):
    from kmm.hub.handles import load_module

    module = load_module("kmm://minilm-l6")
    short = "A man is playing a guitar."
    alone = module(tf.constant([short]))[specs.POOLED_OUTPUT].numpy()
    batched = module(tf.constant([short, "a much longer sentence " * 10]))[specs.POOLED_OUTPUT].numpy()
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)
