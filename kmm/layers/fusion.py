"""Video-text fusion (seed article 3.2): concatenation, and cross-modal multi-head attention."""

import keras
from keras import ops

from kmm.layers.grid import attended_position, grid_side
from kmm.layers.masks import attention_mask


@keras.saving.register_keras_serializable(package="kmm")
class ConcatFusion(keras.layers.Layer):
    """Concatenates pooled video and text vectors, then a 2-layer MLP (seed 3.2.1).

    Args:
        units: int. Output width.
        dropout: float. Defaults to `0.1`.

    Call arguments:
        video: `(batch, dv)`; text: `(batch, dt)`.
    """

    def __init__(self, units, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.units, self.dropout = units, dropout
        self.hidden = keras.layers.Dense(units, activation="gelu")
        self.out = keras.layers.Dense(units)
        self.drop = keras.layers.Dropout(dropout)

    def build(self, video_shape, text_shape):
        self.hidden.build((video_shape[0], video_shape[-1] + text_shape[-1]))
        self.out.build((video_shape[0], self.units))

    def call(self, video, text, training=None):
        x = ops.concatenate([video, text], axis=-1)
        return self.out(self.drop(self.hidden(x), training=training))

    def compute_output_shape(self, video_shape, text_shape):
        return (video_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="kmm")
class CrossModalAttention(keras.layers.Layer):
    """Query tokens attend to context tokens; residual + LayerNorm + feed-forward (seed 3.2.2).

    `Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V` per head, with Q from `query` and
    K, V from `context`, as in `keras.layers.MultiHeadAttention`.

    Args:
        num_heads: int. Defaults to `4`.
        ff_dim: int or None. Feed-forward width. Defaults to `2 * dim`.
        dropout: float. Defaults to `0.1`.

    Call arguments:
        query: `(batch, q, dim)`; context: `(batch, k, dim)`.
        query_mask, context_mask: bool padding masks or None. Padded context tokens get no
            attention; padded query rows are computed but meaningless.
        return_attention_scores: bool. Also return `(batch, heads, q, k)` weights.
    """

    def __init__(self, num_heads=4, ff_dim=None, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.ff_dim, self.dropout = num_heads, ff_dim, dropout

    def build(self, query_shape, context_shape):
        dim = query_shape[-1]
        self.attention = keras.layers.MultiHeadAttention(self.num_heads, dim // self.num_heads, dropout=self.dropout)
        self.attention.build(query_shape, context_shape)
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6)
        self.norm1.build(query_shape)
        self.norm2.build(query_shape)
        self.ff1 = keras.layers.Dense(self.ff_dim or 2 * dim, activation="gelu")
        self.ff2 = keras.layers.Dense(dim)
        self.ff1.build(query_shape)
        self.ff2.build((*query_shape[:-1], self.ff_dim or 2 * dim))
        self.drop = keras.layers.Dropout(self.dropout)

    def call(self, query, context, query_mask=None, context_mask=None, return_attention_scores=False, training=None):
        mask = attention_mask(query_mask, context_mask)
        out = self.attention(
            query, context, attention_mask=mask, return_attention_scores=return_attention_scores, training=training
        )
        attended, scores = out if return_attention_scores else (out, None)
        x = self.norm1(query + self.drop(attended, training=training))
        x = self.norm2(x + self.drop(self.ff2(self.ff1(x)), training=training))
        return (x, scores) if return_attention_scores else x

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "ff_dim": self.ff_dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="kmm")
class CrossModalFusion(keras.layers.Layer):
    """Stacked cross-modal attention: video tokens attend to text tokens, and with
    `co_attention=True` text tokens also attend to video tokens (co-attention).

    Args:
        num_layers: int. Stacked rounds. Defaults to `1`.
        num_heads: int. Defaults to `4`.
        co_attention: bool. Add the text -> video direction. Defaults to `True`.
        dropout: float. Defaults to `0.1`.

    Call arguments:
        video, text: `(batch, t, dim)`, `(batch, l, dim)`.
        video_mask, text_mask: bool padding masks.

        return_attention_scores: bool. Also return the last round's weights: text over
            frames `(batch, heads, l, t)` with co-attention, else frames over text `(batch, heads, t, l)`.

    Returns:
        `(video, text)` fused tokens (`text` unchanged without co-attention), plus the scores on request.
    """

    def __init__(self, num_layers=1, num_heads=4, co_attention=True, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.num_heads, self.co_attention, self.dropout = num_layers, num_heads, co_attention, dropout
        self.video_from_text = [
            CrossModalAttention(num_heads, dropout=dropout, name=f"video_from_text_{i}") for i in range(num_layers)
        ]
        self.text_from_video = (
            [CrossModalAttention(num_heads, dropout=dropout, name=f"text_from_video_{i}") for i in range(num_layers)]
            if co_attention
            else []
        )

    def build(self, video_shape, text_shape):
        for layer in self.video_from_text:
            layer.build(video_shape, text_shape)
        for layer in self.text_from_video:
            layer.build(text_shape, video_shape)

    def call(self, video, text, video_mask=None, text_mask=None, return_attention_scores=False, training=None):
        scores = None
        for i in range(self.num_layers):
            new_video, scores = self.video_from_text[i](
                video, text, query_mask=video_mask, context_mask=text_mask, return_attention_scores=True,
                training=training,
            )  # fmt: skip
            if self.co_attention:
                text, scores = self.text_from_video[i](
                    text, video, query_mask=text_mask, context_mask=video_mask, return_attention_scores=True,
                    training=training,
                )  # fmt: skip
            video = new_video
        return (video, text, scores) if return_attention_scores else (video, text)

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "co_attention": self.co_attention,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="kmm")
class TextGuidedPooling(keras.layers.Layer):
    """In every frame, a text query attends over that frame's spatial cells.

    Binds a referring expression ("the red circle") to the cells where that object is, so
    what follows over time is one object's features, not a mix of all objects.
    `weights[t] = softmax_cells((W_k cells[t]) . (W_q query) / sqrt(d))`; output
    `sum_cells weights[t] * cells[t]`.

    Args:
        num_frames: int. Frames in the token axis.
        cells: int. Cells per frame (tokens are frame-major).
        positions: bool. Also return where the query looked in each frame (the
            attention-weighted cell centre, `x` and `y` in [-1, 1], on a square row-major
            grid): an object's track, which its features alone do not give. Defaults to `False`.

    Call arguments:
        cells_tokens: `(batch, frames * cells, dim)`.
        query: `(batch, dq)`.
        return_attention_scores: bool. Also return the `(batch, frames, cells)` weights.

    Returns:
        `(batch, frames, dim)`, or `(batch, frames, dim + 2)` with `positions`.

    Example:

        >>> import numpy as np
        >>> TextGuidedPooling(num_frames=2, cells=4, positions=True)(np.ones((3, 8, 16)), np.ones((3, 5))).shape
        TensorShape([3, 2, 18])
    """

    def __init__(self, num_frames, cells, positions=False, **kwargs):
        super().__init__(**kwargs)
        self.num_frames, self.cells, self.positions = num_frames, cells, positions
        if positions:
            grid_side(cells)

    def build(self, cells_tokens_shape, query_shape):
        dim = cells_tokens_shape[-1]
        self.query_projection = keras.layers.Dense(dim, name="query")
        self.key_projection = keras.layers.Dense(dim, name="key")
        self.query_projection.build(query_shape)
        self.key_projection.build(cells_tokens_shape)

    def attend(self, cells_tokens, queries):
        """`queries (b, l, dq)` -> cell weights `(b, l, t, cells)` and pooled cells `(b, l, t, d)`."""
        dim = ops.shape(cells_tokens)[-1]
        keys = ops.reshape(self.key_projection(cells_tokens), (-1, self.num_frames, self.cells, dim))
        q = self.query_projection(queries)  # (b, l, d)
        scores = ops.einsum("bld,btcd->bltc", q, keys) / ops.sqrt(ops.cast(dim, keys.dtype))
        weights = ops.softmax(scores, axis=-1)
        grid = ops.reshape(cells_tokens, (-1, self.num_frames, self.cells, dim))
        pooled = ops.einsum("bltc,btcd->bltd", weights, grid)
        if self.positions:
            pooled = ops.concatenate([pooled, attended_position(weights, self.cells)], axis=-1)
        return weights, pooled

    def call(self, cells_tokens, query, return_attention_scores=False):
        weights, pooled = self.attend(cells_tokens, ops.expand_dims(query, 1))
        weights, pooled = weights[:, 0], pooled[:, 0]  # (b, t, cells), (b, t, d [+ 2])
        return (pooled, weights) if return_attention_scores else pooled

    def compute_output_shape(self, cells_tokens_shape, query_shape):
        return (cells_tokens_shape[0], self.num_frames, cells_tokens_shape[-1] + 2 * self.positions)

    def get_config(self):
        return {**super().get_config(), "num_frames": self.num_frames, "cells": self.cells, "positions": self.positions}
