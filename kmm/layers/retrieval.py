"""Contrastive retrieval pieces: L2 normalization, temperature-scaled similarities, InfoNCE.

Under a `tf.distribute` strategy with several replicas, `SimilarityLogits` gathers every
replica's embeddings (`all_gather`, differentiable), so each clip's negatives are the whole
global batch, as on one device; `infonce_loss` reads that layout (`_global_infonce`).
"""

import math

import keras
import tensorflow as tf
from keras import ops


def _replicas():
    """The replica context of a multi-replica step, else None."""
    context = tf.distribute.get_replica_context()
    return None if context is None or context.num_replicas_in_sync == 1 else context


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
        `(batch, batch)` logits; row i's positive is column i. Under a strategy with R > 1
        replicas, each replica returns `(b, 2 R b)`: its videos against every replica's
        captions, then its captions against every replica's videos.
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
        context = _replicas()
        if context is None:
            return scale * ops.matmul(video, ops.transpose(text))
        all_video, all_text = context.all_gather(video, axis=0), context.all_gather(text, axis=0)
        v2t = ops.matmul(video, ops.transpose(all_text))
        t2v = ops.matmul(text, ops.transpose(all_video))
        return scale * ops.concatenate([v2t, t2v], axis=1)

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
    Under several replicas (`SimilarityLogits`' gathered layout) the groups are gathered
    too, and row i's positive is column `replica * b + i`.
    """
    context = _replicas()
    if context is not None:
        return _global_infonce(y_true, logits, context)
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


def _global_infonce(y_true, logits, context):
    """`infonce_loss` for this replica's rows of the global batch."""
    b = ops.shape(logits)[0]
    total = ops.shape(logits)[1] // 2
    labels = ops.arange(b) + context.replica_id_in_sync_group * b
    v2t, t2v = logits[:, :total], logits[:, total:]
    if y_true is not None:
        groups = ops.reshape(y_true, (-1,))
        all_groups = context.all_gather(groups, axis=0)
        same = ops.equal(ops.expand_dims(groups, 1), ops.expand_dims(all_groups, 0))
        positive = ops.cast(ops.one_hot(labels, total), "bool")
        false_negative = ops.logical_and(same, ops.logical_not(positive))
        v2t = ops.where(false_negative, ops.cast(-1e9, logits.dtype), v2t)
        t2v = ops.where(false_negative, ops.cast(-1e9, logits.dtype), t2v)
    loss_v2t = keras.losses.sparse_categorical_crossentropy(labels, v2t, from_logits=True)
    loss_t2v = keras.losses.sparse_categorical_crossentropy(labels, t2v, from_logits=True)
    return (loss_v2t + loss_t2v) / 2
