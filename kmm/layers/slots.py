"""Object slots: learned queries that pick the same kind of thing out of every frame's cells."""

import keras
from keras import ops

from kmm.layers.grid import attended_position, grid_side


@keras.saving.register_keras_serializable(package="kmm")
class SlotPooling(keras.layers.Layer):
    """`slots` learned queries attend over each frame's spatial cells.

    A query is content-based ("something red", "a pointed shape"), so in every frame it
    lands on the same object; following each slot over time gives one track per object,
    which a single whole-frame vector mixes up once there are several objects.
    `weights[t, k] = softmax_cells((W_k cells[t]) . q_k / sqrt(d))`; output
    `sum_cells weights[t, k] * cells[t]`, frame-major like the cells.

    Args:
        num_frames: int. Frames in the token axis.
        cells: int. Cells per frame (tokens are frame-major).
        slots: int. Number of learned queries. Defaults to `8`.
        positions: bool. Append where each slot looked in each frame (the attention-weighted
            cell centre, `x` and `y` in [-1, 1], on a square row-major grid) and how widely
            (the attention's radius), so its track says which way the object went, and
            whether there was one. Defaults to `False`.

    Call arguments:
        cells_tokens: `(batch, frames * cells, dim)`.
        return_attention_scores: bool. Also return the `(batch, frames, slots, cells)` weights.

    Returns:
        `(batch, frames * slots, dim)` (`dim + 3` with `positions`): all slots of frame 0,
        then frame 1, ...

    Example:

        >>> import numpy as np
        >>> SlotPooling(num_frames=2, cells=4, slots=3)(np.ones((5, 8, 16))).shape
        TensorShape([5, 6, 16])
    """

    def __init__(self, num_frames, cells, slots=8, positions=False, **kwargs):
        super().__init__(**kwargs)
        self.num_frames, self.cells, self.slots, self.positions = num_frames, cells, slots, positions
        if positions:
            grid_side(cells)

    def build(self, cells_tokens_shape):
        dim = cells_tokens_shape[-1]
        # A wide init keeps the slots apart from the first step (they would otherwise all
        # start as the same near-zero query and attend uniformly).
        self.queries = self.add_weight(
            shape=(self.slots, dim), initializer=keras.initializers.RandomNormal(stddev=0.5), name="queries"
        )
        self.key_projection = keras.layers.Dense(dim, name="key")
        self.key_projection.build(cells_tokens_shape)

    def call(self, cells_tokens, return_attention_scores=False):
        dim = ops.shape(cells_tokens)[-1]
        keys = ops.reshape(self.key_projection(cells_tokens), (-1, self.num_frames, self.cells, dim))
        scores = ops.einsum("btcd,kd->btkc", keys, self.queries) / ops.sqrt(ops.cast(dim, keys.dtype))
        weights = ops.softmax(scores, axis=-1)  # (b, t, slots, cells)
        grid = ops.reshape(cells_tokens, (-1, self.num_frames, self.cells, dim))
        pooled = ops.einsum("btkc,btcd->btkd", weights, grid)
        if self.positions:
            where = attended_position(weights, self.cells, spread=True)  # x, y, radius
            pooled = ops.concatenate([pooled, where], axis=-1)
        pooled = ops.reshape(pooled, (-1, self.num_frames * self.slots, ops.shape(pooled)[-1]))
        return (pooled, weights) if return_attention_scores else pooled

    def compute_output_shape(self, cells_tokens_shape):
        return (cells_tokens_shape[0], self.num_frames * self.slots, cells_tokens_shape[-1] + 3 * self.positions)

    def get_config(self):
        config = {"num_frames": self.num_frames, "cells": self.cells, "slots": self.slots, "positions": self.positions}
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="kmm")
class SlotTracks(keras.layers.Layer):
    """One shared LSTM along each slot's frames, on `SlotPooling`'s frame-major output:
    `(batch, frames * slots, d)` -> `(batch, slots, units)`.

    Args:
        num_frames: int.
        slots: int.
        units: int. LSTM width.
    """

    def __init__(self, num_frames, slots, units, **kwargs):
        super().__init__(**kwargs)
        self.num_frames, self.slots, self.units = num_frames, slots, units
        self.rnn = keras.layers.LSTM(units, name="lstm")

    def build(self, x_shape):
        self.rnn.build((None, self.num_frames, x_shape[-1]))

    def call(self, x):
        dim = ops.shape(x)[-1]
        tracks = ops.transpose(ops.reshape(x, (-1, self.num_frames, self.slots, dim)), (0, 2, 1, 3))
        last = self.rnn(ops.reshape(tracks, (-1, self.num_frames, dim)))  # (b * slots, units)
        return ops.reshape(last, (-1, self.slots, self.units))

    def compute_output_shape(self, x_shape):
        return (x_shape[0], self.slots, self.units)

    def get_config(self):
        return {**super().get_config(), "num_frames": self.num_frames, "slots": self.slots, "units": self.units}
