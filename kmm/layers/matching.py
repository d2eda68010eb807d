"""Pair matching: does this caption describe this clip? A cross-attention score of one
(video, text) pair, trained on hard negatives and used to re-rank retrieval's top-k."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kmm")
class TokenGuidedPooling(keras.layers.Layer):
    """Every text query (a token, or a clause from `TextSlots`), in every frame, attends over
    that frame's spatial cells.

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

    >>> TokenGuidedPooling(num_frames=2, cells=4)(np.ones((3, 8, 16)), np.ones((3, 5, 16))).shape
    TensorShape([3, 5, 2, 18])
    """

    def __init__(self, num_frames, cells, **kwargs):
        super().__init__(**kwargs)
        side = math.isqrt(cells)
        if side * side != cells:
            raise ValueError(f"TokenGuidedPooling needs a square grid of cells, got cells={cells}")
        self.num_frames, self.cells, self.side = num_frames, cells, side

    def build(self, cells_tokens_shape, text_shape):
        dim = cells_tokens_shape[-1]
        self.query_projection = keras.layers.Dense(dim, name="query")
        self.key_projection = keras.layers.Dense(dim, name="key")
        self.query_projection.build(text_shape)
        self.key_projection.build(cells_tokens_shape)

    def call(self, cells_tokens, text):
        dim = ops.shape(cells_tokens)[-1]
        keys = ops.reshape(self.key_projection(cells_tokens), (-1, self.num_frames, self.cells, dim))
        queries = self.query_projection(text)  # (b, l, d)
        scores = ops.einsum("bld,btcd->bltc", queries, keys) / ops.sqrt(ops.cast(dim, keys.dtype))
        weights = ops.softmax(scores, axis=-1)
        grid = ops.reshape(cells_tokens, (-1, self.num_frames, self.cells, dim))
        pooled = ops.einsum("bltc,btcd->bltd", weights, grid)
        line = ops.linspace(-1.0, 1.0, self.side)
        coords = ops.stack([ops.tile(line, [self.side]), ops.repeat(line, self.side)], axis=-1)  # (cells, [x, y])
        where = ops.einsum("bltc,cx->bltx", weights, ops.cast(coords, weights.dtype))
        return ops.concatenate([pooled, where], axis=-1)

    def compute_output_shape(self, cells_tokens_shape, text_shape):
        return (text_shape[0], text_shape[1], self.num_frames, cells_tokens_shape[-1] + 2)

    def get_config(self):
        return {**super().get_config(), "num_frames": self.num_frames, "cells": self.cells}


@keras.saving.register_keras_serializable(package="kmm")
class TextSlots(keras.layers.Layer):
    """`slots` learned queries attend over the text tokens: `(b, l, d)` -> `(b, slots, d)`.

    `SlotPooling`'s counterpart for text: each query can settle on one clause of a caption
    ("a red circle moves left" / "a blue star spins"). Built on `keras.layers.MultiHeadAttention`.

    Args:
        slots: int. Number of learned queries.
        num_heads: int. Attention heads.

    Call arguments:
        x: `(batch, length, dim)`.
        padding_mask: optional bool `(batch, length)`, True on real tokens.
    """

    def __init__(self, slots, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.slots, self.num_heads = slots, num_heads

    def build(self, x_shape, padding_mask_shape=None):
        dim = x_shape[-1]
        self.queries = self.add_weight(
            shape=(self.slots, dim), initializer=keras.initializers.RandomNormal(stddev=0.5), name="queries"
        )
        self.attention = keras.layers.MultiHeadAttention(self.num_heads, dim // self.num_heads, name="attention")
        self.attention.build((None, self.slots, dim), x_shape)

    def call(self, x, padding_mask=None):
        query = ops.broadcast_to(self.queries[None], (ops.shape(x)[0], self.slots, ops.shape(self.queries)[-1]))
        mask = None if padding_mask is None else ops.cast(padding_mask, "bool")[:, None, :]
        return self.attention(query, x, attention_mask=mask)

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return (x_shape[0], self.slots, x_shape[-1])

    def get_config(self):
        return {**super().get_config(), "slots": self.slots, "num_heads": self.num_heads}


@keras.saving.register_keras_serializable(package="kmm")
class Tracks(keras.layers.Layer):
    """One shared LSTM along the time axis of every track: `(batch, n, frames, d)` -> `(batch, n, units)`.

    Args:
        units: int. LSTM width.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.rnn = keras.layers.LSTM(units, name="lstm")

    def build(self, x_shape):
        self.rnn.build((None, x_shape[2], x_shape[3]))

    def call(self, x):
        shape = ops.shape(x)
        last = self.rnn(ops.reshape(x, (-1, shape[2], shape[3])))
        return ops.reshape(last, (shape[0], shape[1], self.units))

    def compute_output_shape(self, x_shape):
        return (x_shape[0], x_shape[1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


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
        logits = ops.stop_gradient(ops.cast(similarity, "float32"))
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
