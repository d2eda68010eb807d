"""Contrastive retrieval pieces: L2 normalization, temperature-scaled similarities, InfoNCE."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kmm")
class L2Normalize(keras.layers.Layer):
    """Scales each vector to unit L2 norm along the last axis."""

    def call(self, x):
        return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


@keras.saving.register_keras_serializable(package="kmm")
class SimilarityLogits(keras.layers.Layer):
    """`exp(s) * video @ text^T` with a learnable log-scale `s` (CLIP's temperature).

    Args:
        initial_temperature: float. `1 / exp(s)` at start. Defaults to `0.07`.
        max_scale: float. Upper bound of `exp(s)`. Defaults to `100`.

    Call arguments:
        video, text: L2-normalized `(batch, dim)`.

    Returns:
        `(batch, batch)` logits; row i's positive is column i.
    """

    def __init__(self, initial_temperature=0.07, max_scale=100.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_temperature, self.max_scale = initial_temperature, max_scale

    def build(self, video_shape, text_shape):
        self.log_scale = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(math.log(1 / self.initial_temperature)), name="log_scale"
        )

    def call(self, video, text):
        scale = ops.minimum(ops.exp(self.log_scale), self.max_scale)
        return scale * ops.matmul(video, ops.transpose(text))

    def compute_output_shape(self, video_shape, text_shape):
        return (video_shape[0], text_shape[0])

    def get_config(self):
        return {**super().get_config(), "initial_temperature": self.initial_temperature, "max_scale": self.max_scale}


@keras.saving.register_keras_serializable(package="kmm")
def infonce_loss(y_true, logits):
    """Symmetric InfoNCE over in-batch negatives: row i's positive is column i.

    `y_true`: `(batch,)` caption-group ids, or None. Two clips of one group (their captions
    say the same thing, e.g. the same caption twice in a batch) are not each other's
    negatives: pushing them apart would teach the model noise. Ids that are all distinct
    (e.g. each clip's index) give plain InfoNCE.

    Returns `(batch,)`: the mean of the video->text and text->video cross-entropies.
    """
    n = ops.shape(logits)[0]
    labels = ops.arange(n)
    if y_true is not None:
        groups = ops.reshape(y_true, (-1,))
        same = ops.equal(ops.expand_dims(groups, 1), ops.expand_dims(groups, 0))
        false_negative = ops.logical_and(same, ops.logical_not(ops.cast(ops.eye(n), "bool")))
        logits = ops.where(false_negative, ops.cast(-1e9, logits.dtype), logits)
    v2t = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    t2v = keras.losses.sparse_categorical_crossentropy(labels, ops.transpose(logits), from_logits=True)
    return (v2t + t2v) / 2
