"""Video and text encoder adapters, against look-alikes of real TF-Hub models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kmm import specs
from kmm.hub.encoders import TextEncoder, VideoEncoder
from tests.helpers import run_layer_test
from tests.hub import fake_hub_modules as fake

FRAMES = np.random.default_rng(0).integers(0, 256, size=(2, 4, 48, 64, 3), dtype=np.uint8)
TEXTS = tf.constant(["a person plays guitar", ""])


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_hub")
    fake.save_s3d(root / "s3d")
    fake.save_i3d(root / "i3d")
    fake.save_movinet(root / "movinet")
    fake.save_bert(root / "bert_pre", root / "bert_enc")
    return root


@pytest.mark.parametrize(
    "folder, convention, dim",
    [("s3d", "s3d-milnce", 1024), ("i3d", "i3d-kinetics-400", 400), ("movinet", "movinet", 600)],
)
def test_video_conventions(fakes, folder, convention, dim):
    enc = VideoEncoder(str(fakes / folder), convention=convention)
    out = enc(tf.constant(FRAMES))
    assert out[specs.VIDEO_TOKENS].shape == (2, 1, dim)
    assert out[specs.VIDEO_EMBEDDING].shape == (2, dim)
    assert out[specs.VIDEO_PADDING_MASK].numpy().all()
    # The adapter scaled uint8 to [0, 1]; feeding raw uint8-valued floats trips the range check.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 1\]"):
        enc.module(tf.constant(FRAMES[:, :, :224, :224].astype(np.float32)))


def test_kmm_frames_convention(tiny_encoders, tmp_path):
    out = VideoEncoder("kmm://tiny-frames")(tf.constant(FRAMES))
    assert out[specs.VIDEO_TOKENS].shape == (2, 4, 32)
    np.testing.assert_allclose(out[specs.VIDEO_EMBEDDING], out[specs.VIDEO_TOKENS].numpy().mean(1), atol=1e-6)
    run_layer_test(
        lambda: VideoEncoder("kmm://tiny-frames", trainable=True),
        tf.constant(FRAMES),
        tmp_path,
        train_target=lambda o: o[specs.VIDEO_EMBEDDING],
    )


def test_s3d_text_signature(fakes):
    out = TextEncoder(str(fakes / "s3d"), convention="s3d-milnce")(TEXTS)
    assert out[specs.TEXT_EMBEDDING].shape == (2, 512)
    assert out[specs.TEXT_TOKENS].shape == (2, 1, 512)


def test_bert_with_preprocessor(fakes):
    enc = TextEncoder(str(fakes / "bert_enc"), convention="bert", preprocessor=str(fakes / "bert_pre"), trainable=True)
    out = enc(TEXTS)
    assert out[specs.TEXT_TOKENS].shape == (2, 128, 768)
    assert out[specs.TEXT_EMBEDDING].shape == (2, 768)
    mask = out[specs.TEXT_PADDING_MASK].numpy()
    assert mask.dtype == bool and mask[0].sum() == 6 and mask[1].sum() == 2  # [CLS] 4 words [SEP]; [CLS] [SEP]
    assert len(enc.trainable_weights) == 1


def test_bert_needs_its_preprocessor(fakes):
    with pytest.raises(ValueError, match="needs `preprocessor="):
        TextEncoder(str(fakes / "bert_enc"), convention="bert")


def test_kmm_text_convention(tiny_encoders, tmp_path):
    out = TextEncoder("kmm://tiny-text")(TEXTS)
    assert out[specs.TEXT_PADDING_MASK].numpy()[1].tolist()[:3] == [True, True, False]
    run_layer_test(
        lambda: TextEncoder("kmm://tiny-text"), TEXTS, tmp_path, train_target=lambda o: o[specs.TEXT_EMBEDDING]
    )


def test_unknown_convention():
    with pytest.raises(ValueError, match="Unknown video encoder convention"):
        VideoEncoder("kmm://tiny-frames", convention="c3d")


def test_functional_multimodal_model_trains(tiny_encoders):
    frames = keras.Input((4, 48, 64, 3), dtype="uint8", name=specs.FRAMES)
    text = keras.Input((), dtype="string", name=specs.TEXT)
    v = VideoEncoder("kmm://tiny-frames")(frames)[specs.VIDEO_EMBEDDING]
    t = TextEncoder("kmm://tiny-text")(text)[specs.TEXT_EMBEDDING]
    logits = keras.layers.Dense(3)(keras.layers.Concatenate()([v, t]))
    model = keras.Model({specs.FRAMES: frames, specs.TEXT: text}, logits)
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = {specs.FRAMES: tf.constant(FRAMES), specs.TEXT: TEXTS}
    ds = tf.data.Dataset.from_tensors((x, np.array([0, 2]))).repeat(30)
    history = model.fit(ds, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.slow
def test_spatial_conventions_keep_the_feature_map(real_encoders):
    frames = tf.constant(np.random.default_rng(0).integers(0, 256, size=(1, 2, 128, 128, 3), dtype=np.uint8))
    spatial = VideoEncoder("kmm://efficientnet-lite0@128", convention="kmm-frames-spatial")(frames)
    assert spatial[specs.VIDEO_TOKENS].shape == (1, 2, 4 * 4 * 320)  # stride 32: 4x4 cells x 320 channels
    fine = VideoEncoder("kmm://efficientnet-lite0@128", convention="kmm-frames-spatial16")(frames)
    assert fine[specs.VIDEO_TOKENS].shape == (1, 2, 8 * 8 * 112)  # stride 16: 8x8 cells x 112 channels
    # Flattening is cell-major per frame: frame 1's first cell equals the module's map at (0, 0).
    from kmm.hub.handles import load_module

    raw = load_module("kmm://efficientnet-lite0@128")(frames)[specs.FRAME_FEATURE_MAP].numpy()
    np.testing.assert_allclose(spatial[specs.VIDEO_TOKENS].numpy()[0, 1, :320], raw[0, 1, 0, 0], atol=1e-5)
