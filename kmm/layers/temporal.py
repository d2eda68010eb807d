"""Temporal models over per-frame features (seed article 3.1): pooling, RNNs, Transformer.

All take `(batch, frames, dim)` plus an optional boolean `padding_mask` `(batch, frames)`
(`True` = real frame). Padded frames never influence real outputs: pooling divides by
the number of real frames, RNNs skip them, attention masks them as keys.
"""

import keras
from keras import ops

from kmm.layers.fusion import CrossModalAttention
from kmm.layers.masks import masked_max, masked_mean

POOLING_MODES = ("mean", "max")
RNN_KINDS = ("lstm", "gru")


@keras.saving.register_keras_serializable(package="kmm")
class TemporalPooling(keras.layers.Layer):
    """Masked mean or max over time: `(batch, frames, dim)` -> `(batch, dim)`.

    Order-blind by construction: it cannot tell a clip from the same clip reversed.

    Args:
        mode: str. Choose from ['mean', 'max']. Defaults to `"mean"`.

    Example:

        >>> import numpy as np
        >>> TemporalPooling("mean")(np.ones((2, 8, 4)), padding_mask=np.ones((2, 8), bool)).shape
        TensorShape([2, 4])
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"mode must be one of {POOLING_MODES}, got {mode!r}")
        self.mode = mode

    def call(self, x, padding_mask=None):
        return masked_mean(x, padding_mask) if self.mode == "mean" else masked_max(x, padding_mask)

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return (x_shape[0], x_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="kmm")
class TemporalDifference(keras.layers.Layer):
    """Appends to each token its change since the previous frame and its difference from
    the clip's mean at its place.

    `(batch, frames * cells, dim)` (frame-major) -> `(batch, frames * cells, 3 * dim)`:
    `[x, x - x_previous_frame, x - mean_over_frames(x)]`, the first frame's change being zero.
    The change is motion (TSN-style RGB-diff, on features): what separates most actions, and
    far easier to learn from than to discover with attention. The difference from the mean
    is background subtraction on features: a still background cancels out of it and what
    moves over the background stands out, so a model need not learn every background it
    may be shown.

    Args:
        cells: int. Tokens per frame. Defaults to `1`.

    Example:

        >>> import numpy as np
        >>> x = np.array([[[1.0], [3.0], [8.0]]])  # one cell, three frames
        >>> TemporalDifference()(x).numpy()[0].tolist()  # x, change, x - mean (4)
        [[1.0, 0.0, -3.0], [3.0, 2.0, -1.0], [8.0, 5.0, 4.0]]
    """

    def __init__(self, cells=1, **kwargs):
        super().__init__(**kwargs)
        self.cells = cells

    def call(self, x):
        previous = ops.concatenate([x[:, : self.cells], x[:, : -self.cells]], axis=1)
        grid = ops.reshape(x, (ops.shape(x)[0], -1, self.cells, ops.shape(x)[-1]))  # (b, t, cells, d)
        from_mean = ops.reshape(grid - ops.mean(grid, axis=1, keepdims=True), ops.shape(x))
        return ops.concatenate([x, x - previous, from_mean], axis=-1)

    def compute_output_shape(self, x_shape):
        return (*x_shape[:-1], 3 * x_shape[-1])

    def get_config(self):
        return {**super().get_config(), "cells": self.cells}


@keras.saving.register_keras_serializable(package="kmm")
class CellTemporalPooling(keras.layers.Layer):
    """Pools each spatial cell over time: `(batch, frames * cells, dim)` -> `(batch, cells, dim)`.

    Tokens are frame-major (all cells of frame 0, then frame 1, ...). Order-blind in time.

    Args:
        mode: str. Choose from ['mean', 'max'].
        cells: int. Cells per frame.
    """

    def __init__(self, mode="mean", cells=16, **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(f"mode must be one of {POOLING_MODES}, got {mode!r}")
        self.mode, self.cells = mode, cells

    def call(self, x):
        grid = ops.reshape(x, (ops.shape(x)[0], -1, self.cells, ops.shape(x)[-1]))  # (b, t, cells, d)
        return ops.mean(grid, axis=1) if self.mode == "mean" else ops.max(grid, axis=1)

    def compute_output_shape(self, x_shape):
        return (x_shape[0], self.cells, x_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "cells": self.cells}


@keras.saving.register_keras_serializable(package="kmm")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding to `(batch, steps, dim)` (steps <= `max_length`).

    Args:
        max_length: int. Longest sequence supported.
    """

    def __init__(self, max_length, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=(self.max_length, input_shape[-1]), initializer=keras.initializers.RandomNormal(stddev=0.02)
        )

    def call(self, x):
        return x + self.embedding[None, : ops.shape(x)[1]]

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}


@keras.saving.register_keras_serializable(package="kmm")
class TransformerBlock(CrossModalAttention):
    """Self-attention block: `CrossModalAttention` of a sequence with itself (one
    `keras.layers.MultiHeadAttention`, residual + LayerNorm + feed-forward).

    Args:
        num_heads: int. Attention heads. Defaults to `4`.
        ff_dim: int or None. Feed-forward width. Defaults to `2 * dim`.
        dropout: float. Dropout rate. Defaults to `0.1`.

    Call arguments:
        x: `(batch, steps, dim)`.
        padding_mask: bool `(batch, steps)` or None; padded steps are never attended to.
    """

    def build(self, input_shape):
        super().build(input_shape, input_shape)

    def call(self, x, padding_mask=None, training=None):
        return super().call(x, x, padding_mask, padding_mask, training=training)


@keras.saving.register_keras_serializable(package="kmm")
class TemporalTransformer(keras.layers.Layer):
    """Learned position embedding + `num_layers` `TransformerBlock`s over frames.

    Args:
        num_layers: int. Defaults to `2`.
        num_heads: int. Defaults to `4`.
        max_length: int. Longest frame sequence. Defaults to `64`.
        dropout: float. Defaults to `0.1`.
    """

    def __init__(self, num_layers=2, num_heads=4, max_length=64, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.num_heads, self.max_length, self.dropout = num_layers, num_heads, max_length, dropout
        self.position = PositionEmbedding(max_length, name="position")
        self.blocks = [TransformerBlock(num_heads, dropout=dropout, name=f"block_{i}") for i in range(num_layers)]

    def build(self, input_shape):
        self.position.build(input_shape)
        for block in self.blocks:
            block.build(input_shape)

    def call(self, x, padding_mask=None, training=None):
        x = self.position(x)
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        return x

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "max_length": self.max_length,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="kmm")
class RecurrentTemporal(keras.layers.Layer):
    """LSTM or GRU over frames (seed article 3.1.2): returns the sequence `(batch, frames, units)`.

    Args:
        kind: str. Choose from ['lstm', 'gru']. Defaults to `"lstm"`.
        units: int. Hidden size.
    """

    def __init__(self, kind="lstm", units=128, **kwargs):
        super().__init__(**kwargs)
        if kind not in RNN_KINDS:
            raise ValueError(f"kind must be one of {RNN_KINDS}, got {kind!r}")
        self.kind, self.units = kind, units
        cls = keras.layers.LSTM if kind == "lstm" else keras.layers.GRU
        self.rnn = cls(units, return_sequences=True, name=kind)

    def build(self, input_shape):
        self.rnn.build(input_shape)

    def call(self, x, padding_mask=None):
        return self.rnn(x, mask=padding_mask)

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return (*x_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "units": self.units}


@keras.saving.register_keras_serializable(package="kmm")
class AttentionPooling(keras.layers.Layer):
    """Learned queries attend over the steps: `(batch, steps, dim)` -> `(batch, dim)`.

    With `num_queries > 1` the output is `(batch, num_queries, dim)`: each query can settle
    on a different part (e.g. one clause of a caption: "a red circle moves left" / "a blue
    star spins"); such queries start far apart so that they do not all read the same thing.

    Args:
        num_heads: int. Defaults to `4`.
        num_queries: int. Defaults to `1`.

    Call arguments:
        x: `(batch, steps, dim)`.
        padding_mask: bool `(batch, steps)` or None.
        return_attention_scores: bool. Also return `(batch, heads, num_queries, steps)` weights.
    """

    def __init__(self, num_heads=4, num_queries=1, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.num_queries = num_heads, num_queries

    def build(self, input_shape):
        dim = input_shape[-1]
        spread = 0.02 if self.num_queries == 1 else 0.5
        self.query = self.add_weight(
            shape=(1, self.num_queries, dim), initializer=keras.initializers.RandomNormal(stddev=spread)
        )
        self.attention = keras.layers.MultiHeadAttention(self.num_heads, dim // self.num_heads)
        self.attention.build((None, self.num_queries, dim), input_shape)

    def call(self, x, padding_mask=None, return_attention_scores=False):
        query = ops.broadcast_to(self.query, (ops.shape(x)[0], self.num_queries, ops.shape(self.query)[-1]))
        mask = None if padding_mask is None else ops.cast(padding_mask, "bool")[:, None, :]
        out, scores = self.attention(query, x, attention_mask=mask, return_attention_scores=True)
        pooled = out[:, 0] if self.num_queries == 1 else out  # (batch, dim) or (batch, num_queries, dim)
        return (pooled, scores) if return_attention_scores else pooled

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "num_queries": self.num_queries}
