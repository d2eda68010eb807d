"""kmm://efficientnet-lite0 recognizes real photos (scikit-image's bundled images)."""

import numpy as np
import pytest
import tensorflow as tf

from kmm import specs

pytestmark = pytest.mark.slow
skimage_data = pytest.importorskip("skimage.data")

# ImageNet-1k class indices.
ESPRESSO, TABBY, TIGER_CAT, EGYPTIAN_CAT, MISSILE, PROJECTILE, SPACE_SHUTTLE = 967, 281, 282, 285, 657, 744, 812


@pytest.fixture(scope="module")
def frame_encoder(real_encoders):
    from kmm.hub.handles import load_module

    return load_module("kmm://efficientnet-lite0")


def _top5(encoder, image):
    logits = encoder(tf.constant(image[None, None]))[specs.FRAME_LOGITS].numpy()[0, 0]
    return list(np.argsort(-logits)[:5])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("coffee", {ESPRESSO}),
        ("chelsea", {TABBY, TIGER_CAT, EGYPTIAN_CAT}),
        ("rocket", {MISSILE, PROJECTILE, SPACE_SHUTTLE}),
    ],
)
def test_expected_imagenet_classes_in_top5(frame_encoder, name, expected):
    top5 = _top5(frame_encoder, getattr(skimage_data, name)())
    assert expected & set(top5), f"{name}: top-5 {top5} has none of {expected}"


def test_coffee_is_top1_espresso(frame_encoder):
    assert _top5(frame_encoder, skimage_data.coffee())[0] == ESPRESSO


def test_frames_of_any_size_and_count(frame_encoder):
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 3, 37, 91, 3), dtype=np.uint8)
    out = frame_encoder(tf.constant(frames))
    assert out[specs.FRAME_FEATURES].shape == (2, 3, 1280)
    assert out[specs.FRAME_LOGITS].shape == (2, 3, 1000)
    # Each frame is encoded on its own: the batch layout does not change a frame's features.
    single = frame_encoder(tf.constant(frames[1:2, 2:3]))[specs.FRAME_FEATURES].numpy()
    np.testing.assert_allclose(out[specs.FRAME_FEATURES].numpy()[1, 2], single[0, 0], atol=1e-4)
