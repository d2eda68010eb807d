"""Wraps a per-image CNN into a TF-Hub frame encoder over videos.

Exported interface:
- `__call__(frames, training=False)` and `serving_default`: `frames` uint8
  `(batch, frames, height, width, 3)`, any height and width -> `features`
  `(batch, frames, dim)`, `logits` `(batch, frames, classes)` and `feature_map`
  `(batch, frames, size/32, size/32, channels)`.

Frames are resized in the graph (bilinear, antialiased) to `image_size` and normalized
with `(x - 127) / 128`, the input scaling EfficientNet-Lite was trained with.
"""

import tensorflow as tf

from kmm import specs
from kmm.encoders.reusable_savedmodel import save_reusable_savedmodel

FRAMES_SPEC = tf.TensorSpec([None, None, None, None, 3], tf.uint8, name=specs.FRAMES)


def preprocess_frames(frames, image_size):
    """`(batch, frames, h, w, 3)` uint8 -> `(batch * frames, size, size, 3)` float32 in [-1, 1]."""
    shape = tf.shape(frames)
    images = tf.cast(tf.reshape(frames, tf.concat([[-1], shape[2:]], axis=0)), tf.float32)  # (batch*frames, h, w, 3)
    resize = lambda: tf.image.resize(images, [image_size, image_size], antialias=True)  # noqa: E731
    # Frames already at the encoder's size (kmm's pipelines sample them so) skip the resize,
    # which would return them unchanged.
    images = tf.cond(tf.reduce_all(tf.equal(shape[2:4], image_size)), lambda: images, resize)
    images.set_shape([None, image_size, image_size, 3])
    return (images - 127.0) / 128.0


def export_frame_encoder(export_dir, cnn, image_size, manifest):
    """Saves `cnn` (images -> `{features, logits}`) as a reusable video frame encoder."""

    def call(frames, training=False):
        shape = tf.shape(frames)
        outputs = cnn(preprocess_frames(frames, image_size), training=training)
        unflatten = lambda x: tf.reshape(x, tf.concat([shape[:2], tf.shape(x)[1:]], axis=0))  # noqa: E731
        result = {
            specs.FRAME_FEATURES: unflatten(outputs["features"]),  # (batch, frames, dim)
            specs.FRAME_LOGITS: unflatten(outputs["logits"]),  # (batch, frames, classes)
            specs.FRAME_FEATURE_MAP: unflatten(outputs["feature_map"]),  # (batch, frames, h/32, w/32, c)
        }
        if "feature_map_16" in outputs:
            result[specs.FRAME_FEATURE_MAP_16] = unflatten(outputs["feature_map_16"])  # (batch, frames, h/16, w/16, c)
        return result

    manifest = {
        **manifest,
        "kind": "frames",
        "image_size": image_size,
        "dim": int(cnn.output["features"].shape[-1]),
        "feature_map_channels": int(cnn.output["feature_map"].shape[-1]),
        "num_classes": int(cnn.output["logits"].shape[-1]),
    }
    return save_reusable_savedmodel(export_dir, call, FRAMES_SPEC, cnn, manifest=manifest)
