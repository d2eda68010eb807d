"""A tiny kmm model (random weights, tiny encoders) exported once per test module."""

import numpy as np
import pytest

LABELS = ("move left", "move right", "grow")


def tiny_parts():
    import tensorflow as tf

    from kmm.models.builder import build_parts, make_encoders
    from kmm.models.config import PRESETS

    config = PRESETS["tiny"].replace(labels=LABELS)
    video_encoder, text_encoder = make_encoders(config)
    frames = tf.zeros((1, config.num_frames, config.frame_size, config.frame_size, 3), tf.uint8)
    feature_dim = video_encoder(frames)["video_tokens"].shape[-1]
    text_dim = text_encoder(tf.constant(["x"]))["text_embedding"].shape[-1]
    return build_parts(config, feature_dim, text_dim)


@pytest.fixture(scope="package")
def exported(tiny_encoders, tmp_path_factory):
    """`(parts, export_dir, base_dir, gallery)`: a tiny model exported with a 6-item gallery."""
    from kmm.serving.export import Gallery, export_model

    parts = tiny_parts()
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(6, parts.config.dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    gallery = Gallery(
        ids=[f"clip{i}" for i in range(6)], embeddings=embeddings,
        videos=[f"/data/clip{i}.mp4" for i in range(6)], captions=[f"caption {i}" for i in range(6)],
    )  # fmt: skip
    base = tmp_path_factory.mktemp("saved_models")
    path = export_model(parts, base, "tiny", gallery=gallery, k=3, metrics={"test": {"accuracy": 0.5}})
    return parts, path, base, gallery


def clips(batch, frames, height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, frames, height, width, 3), dtype=np.uint8)
