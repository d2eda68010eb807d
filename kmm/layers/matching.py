"""Pair matching: does this caption describe this clip? A cross-attention score of one
(video, text) pair, trained on hard negatives and used to re-rank retrieval's top-k."""

import keras
from keras import ops

from kmm.layers.fusion import TextGuidedPooling
from kmm.layers.retrieval import local_logits


@keras.saving.register_keras_serializable(package="kmm")
class TokenGuidedPooling(TextGuidedPooling):
    """Every text query (a token, or a clause read by `AttentionPooling(num_queries=k)`), in
    every frame, attends over that frame's spatial cells.

    `TextGuidedPooling` with several queries: each finds its own object in each frame, so
    each gets its own track. Next to the pooled cell features it
    returns where the token looked (the attention-weighted cell centre, `x` and `y` in
    [-1, 1]), which spells out "moves left" directly.

    Args:
        num_frames: int. Frames in the token axis.
        cells: int. Cells per frame, a square grid (tokens are frame-major, row-major).

    Call arguments:
        cells_tokens: `(batch, frames * cells, dim)`.
        text: `(batch, length, dq)`.

    Returns:
        `(batch, length, frames, dim + 2)`.

    Example:

    >>> import numpy as np
    >>> TokenGuidedPooling(num_frames=2, cells=4)(np.ones((3, 8, 16)), np.ones((3, 5, 16))).shape
    TensorShape([3, 5, 2, 18])
    """

    def __init__(self, num_frames, cells, **kwargs):
        kwargs.pop("positions", None)  # always on
        super().__init__(num_frames, cells, positions=True, **kwargs)

    def build(self, cells_tokens_shape, text_shape):  # Keras matches build's argument names to call's
        super().build(cells_tokens_shape, text_shape)

    def call(self, cells_tokens, text):
        return self.attend(cells_tokens, text)[1]  # (b, l, t, dim + 2)

    def compute_output_shape(self, cells_tokens_shape, text_shape):
        return (text_shape[0], text_shape[1], self.num_frames, cells_tokens_shape[-1] + 2)


@keras.saving.register_keras_serializable(package="kmm")
class HardNegativePairs(keras.layers.Layer):
    """Positive and hard negative (video, caption) pairs from a batch, for the matching loss.

    For each caption a negative video, and for each video a negative caption, drawn from the
    batch with probability `softmax(similarity)` (the positive excluded), as in ALBEF: the
    negatives the dual encoder finds hardest are the ones re-ranking must fix.

    Args:
        same_caption: float. Two captions whose unit-norm embeddings have a dot product above
            this say the same thing, so neither's clip is a negative for the other (with
            several clips of identical content, the hardest "negative" is otherwise a match).
        seed: int or None.

    Call arguments:
        similarity: `(batch, batch)` logits, rows videos, columns captions (no gradient flows).
        video: `(batch, ...)` video inputs of the matching head.
        captions: list of `(batch, ...)` caption inputs (e.g. tokens and padding mask).
        text_embedding: optional unit-norm `(batch, dim)` caption embeddings, for `same_caption`.

    Returns:
        `(video, captions)` for `3 * batch` pairs: the positives, then (negative video,
        caption), then (video, negative caption).
    """

    def __init__(self, same_caption=0.9, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.same_caption, self.seed = same_caption, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, similarity, video, captions, text_embedding=None):
        # Negatives come from this replica's part of the batch (under a distribution strategy).
        logits = ops.stop_gradient(ops.cast(local_logits(similarity), "float32"))
        n = ops.shape(logits)[0]
        taken = ops.eye(n, dtype="bool")  # never the positive (unless nothing else is left)
        if text_embedding is not None:
            # Captions that say the same thing ("a red circle moves left" / "... slides to the
            # left") describe each other's clips: such a pair is no negative.
            text_embedding = ops.stop_gradient(ops.cast(text_embedding, "float32"))
            taken = taken | (ops.matmul(text_embedding, ops.transpose(text_embedding)) > self.same_caption)
        logits = ops.where(taken, -1e9, logits)
        negative_caption = keras.random.categorical(logits, 1, seed=self.seed_generator)[:, 0]  # per video
        negative_video = keras.random.categorical(ops.transpose(logits), 1, seed=self.seed_generator)[:, 0]
        video3 = ops.concatenate([video, ops.take(video, negative_video, axis=0), video], axis=0)
        captions3 = [ops.concatenate([c, c, ops.take(c, negative_caption, axis=0)], axis=0) for c in captions]
        return video3, captions3

    def get_config(self):
        return {**super().get_config(), "same_caption": self.same_caption, "seed": self.seed}


@keras.saving.register_keras_serializable(package="kmm")
def matching_loss(y_true, logits):
    """Binary cross-entropy of `(3 batch,)` match logits in `HardNegativePairs`' layout.

    `y_true` (batch,) is ignored: the layout says which pairs match. Returns `(batch,)`: per
    batch row, the mean over its positive pair and its two negatives.
    """
    logits = ops.transpose(ops.reshape(logits, (3, -1)))  # (b, [positive, negative video, negative caption])
    labels = ops.broadcast_to(ops.convert_to_tensor([1.0, 0.0, 0.0], logits.dtype), ops.shape(logits))
    return ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True), axis=-1)
