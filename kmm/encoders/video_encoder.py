"""Wraps a clip-level video network (I3D) into a TF-Hub video encoder.

Exported interface:
- `__call__(frames, training=False)` and `serving_default`: `frames` uint8
  `(batch, T, height, width, 3)`, any `T >= 1` and any frame size -> `logits`
  `(batch, classes)`, `probabilities`, `features` `(batch, 1024)` (the classifier's pooled
  input) and `mixed_5c` `(batch, ceil(T / 8), 7, 7, 1024)`.
- `signatures["default"]`: TF-Hub's `deepmind/i3d-kinetics-400/1` contract, `rgb_input`
  float32 `(batch, T, 224, 224, 3)` in [0, 1] -> `{"default": logits}`.
- `assets/<labels file>`: the class names, one a line, in logit order.

Frames are centre-cropped to a square and resized to 224 px in the graph (bilinear,
antialiased), then scaled to [-1, 1], the input range I3D was trained with.
"""

import tensorflow as tf

from kmm import specs
from kmm.encoders.reusable_savedmodel import save_reusable_savedmodel

IMAGE_SIZE = 224
FRAMES_SPEC = tf.TensorSpec([None, None, None, None, 3], tf.uint8, name=specs.FRAMES)
RGB_SPEC = tf.TensorSpec([None, None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name=specs.RGB_INPUT)


def center_square(frames, size=IMAGE_SIZE):
    """`(batch, T, h, w, 3)` uint8 -> `(batch, T, size, size, 3)` float32 in [0, 255].

    The centre square (side = the short side) resized to `size`; frames already square at
    `size` are passed through.
    """
    shape = tf.shape(frames)
    h, w = shape[2], shape[3]
    side = tf.minimum(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frames[:, :, top : top + side, left : left + side, :]
    images = tf.cast(tf.reshape(square, [-1, side, side, 3]), tf.float32)  # (batch*T, side, side, 3)
    images = tf.cond(
        tf.equal(side, size), lambda: images, lambda: tf.image.resize(images, [size, size], antialias=True)
    )
    return tf.reshape(images, tf.concat([shape[:2], [size, size, 3]], 0))


def export_video_encoder(export_dir, network, labels_path, manifest):
    """Saves `network` (frames in [-1, 1] -> `{mixed_5c, pooled, logits}`) as a reusable video encoder."""

    def outputs(x, training):  # x: (batch, T, 224, 224, 3) in [-1, 1]
        out = network(x, training=training)
        return {
            specs.CLIP_LOGITS: out["logits"],
            specs.CLIP_PROBABILITIES: tf.nn.softmax(out["logits"]),
            specs.CLIP_FEATURES: out["pooled"],
            specs.CLIP_FEATURE_MAP: out["mixed_5c"],
        }

    def call(frames, training=False):
        return outputs(center_square(frames) / 127.5 - 1.0, training)

    @tf.function(input_signature=[RGB_SPEC])
    def default(rgb_input):
        return {"default": network(rgb_input * 2.0 - 1.0, training=False)["logits"]}

    manifest = {
        **manifest,
        "kind": "video",
        "image_size": IMAGE_SIZE,
        "dim": int(network.output["pooled"].shape[-1]),
        "num_classes": int(network.output["logits"].shape[-1]),
        "labels_file": labels_path.name,
    }
    return save_reusable_savedmodel(
        export_dir, call, FRAMES_SPEC, network, functions={"default": default}, assets=[labels_path], manifest=manifest
    )


def read_labels(export_dir):
    """The class names shipped in a kmm video encoder's `assets/`, in logit order."""
    from kmm.encoders.reusable_savedmodel import read_manifest

    name = read_manifest(export_dir).get("labels_file")
    if not name:
        raise FileNotFoundError(f"{export_dir}: not a kmm video encoder with class names.")
    return (tf.io.gfile.GFile(f"{export_dir}/assets/{name}").read()).splitlines()
