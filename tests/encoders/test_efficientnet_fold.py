"""Batch norms folded into the convolutions compute what the unfolded network computes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kmm.encoders.efficientnet_lite import (
    EfficientNetLiteConfig,
    build_efficientnet_lite,
    expanded_block_args,
    load_efficientnet_pytorch_weights,
)
from kmm.encoders.frame_encoder import preprocess_frames

SMALL = EfficientNetLiteConfig(
    blocks=((1, 3, 1, 1, 8, 8), (1, 3, 2, 4, 8, 16), (2, 5, 2, 4, 16, 16)),
    stem_channels=8,
    head_channels=24,
    num_classes=5,
)


def _random_state(config, rng):
    """An EfficientNet-PyTorch `state_dict` with random weights and batch-norm statistics."""
    state = {}

    def conv(key, out, cin, k):
        state[key] = rng.normal(0, (cin * k * k) ** -0.5, (out, cin, k, k)).astype(np.float32)

    def bn(prefix, c):
        state[prefix + ".weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        state[prefix + ".bias"] = rng.normal(0, 0.2, c).astype(np.float32)
        state[prefix + ".running_mean"] = rng.normal(0, 0.5, c).astype(np.float32)
        state[prefix + ".running_var"] = rng.uniform(0.2, 2.0, c).astype(np.float32)

    conv("_conv_stem.weight", config.stem_channels, 3, 3)
    bn("_bn0", config.stem_channels)
    for i, (kernel, _, expand, cin, cout) in enumerate(expanded_block_args(config)):
        p, hidden = f"_blocks.{i}.", cin * expand
        if expand != 1:
            conv(p + "_expand_conv.weight", hidden, cin, 1)
            bn(p + "_bn0", hidden)
        conv(p + "_depthwise_conv.weight", hidden, 1, kernel)
        bn(p + "_bn1", hidden)
        conv(p + "_project_conv.weight", cout, hidden, 1)
        bn(p + "_bn2", cout)
    conv("_conv_head.weight", config.head_channels, config.blocks[-1][-1], 1)
    bn("_bn1", config.head_channels)
    state["_fc.weight"] = rng.normal(0, 0.1, (config.num_classes, config.head_channels)).astype(np.float32)
    state["_fc.bias"] = rng.normal(0, 0.1, config.num_classes).astype(np.float32)
    return state


def test_folded_network_matches_batch_norm_network():
    state = _random_state(SMALL, np.random.default_rng(0))
    with_bn = build_efficientnet_lite(SMALL)
    folded = build_efficientnet_lite(SMALL, batch_norm=False)
    load_efficientnet_pytorch_weights(with_bn, state, SMALL)
    load_efficientnet_pytorch_weights(folded, state, SMALL)
    assert not [layer for layer in folded.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(folded.weights) < len(with_bn.weights)
    images = np.random.default_rng(1).uniform(-1, 1, (3, 40, 40, 3)).astype(np.float32)
    expected, got = with_bn(images, training=False), folded(images, training=False)
    assert set(got) == set(expected)
    for key in expected:
        scale = float(np.abs(expected[key]).max())
        assert scale > 0.1, f"{key}: degenerate test, outputs near zero"
        np.testing.assert_allclose(got[key], expected[key], atol=1e-4 * scale, err_msg=key)


def test_folding_uses_the_statistics():
    """A folded load that ignored the running statistics would not match (guards the test above)."""
    state = _random_state(SMALL, np.random.default_rng(0))
    plain = dict(state)
    for key in state:
        if key.endswith(".running_var"):
            plain[key] = np.ones_like(state[key])
    a = build_efficientnet_lite(SMALL, batch_norm=False)
    b = build_efficientnet_lite(SMALL, batch_norm=False)
    load_efficientnet_pytorch_weights(a, state, SMALL)
    load_efficientnet_pytorch_weights(b, plain, SMALL)
    images = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    assert not np.allclose(a(images)["features"], b(images)["features"], atol=1e-3)


@pytest.mark.parametrize("height, width", [(32, 32), (20, 48)])
def test_preprocess_resizes_only_frames_of_another_size(height, width):
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, height, width, 3), dtype=np.uint8)
    out = preprocess_frames(tf.constant(frames), 32)
    assert out.shape == (6, 32, 32, 3)
    resized = tf.image.resize(tf.cast(frames.reshape(6, height, width, 3), tf.float32), [32, 32], antialias=True)
    np.testing.assert_allclose(out, (resized - 127.0) / 128.0, atol=1e-5)
    if (height, width) == (32, 32):  # skipped resize: exactly the input, scaled
        np.testing.assert_array_equal(out, (frames.reshape(6, 32, 32, 3).astype(np.float32) - 127.0) / 128.0)
