"""Where attention over a frame's grid of cells landed: its weighted cell centre."""

import math

from keras import ops


def grid_side(cells):
    """The side of a square grid of `cells` cells; a clear error if it is not square."""
    side = math.isqrt(cells)
    if side * side != cells:
        raise ValueError(f"positions need a square grid of cells (row-major), got cells={cells}")
    return side


def attended_position(weights, cells, spread=False):
    """`weights (..., cells)` summing to 1 over a row-major square grid -> `(..., 2)`: `x`, `y` in [-1, 1].

    The attention-weighted cell centre: where a query found its object. Followed over
    frames, it spells out "moves left" directly, which content features alone (an object
    looks the same wherever it is) do not. With `spread`, `(..., 3)`: also the weighted
    standard deviation of the cell centres (the attention's radius), small on one small
    object, large when the attention finds nothing in particular or the object grows.

    Example:

        >>> import numpy as np
        >>> np.asarray(attended_position(np.eye(4, dtype="float32")[None], 4))[0].tolist()  # cells 0..3 of a 2x2 grid
        [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]
    """
    side = grid_side(cells)
    line = ops.linspace(-1.0, 1.0, side)
    centres = ops.cast(ops.stack([ops.tile(line, [side]), ops.repeat(line, side)], axis=-1), weights.dtype)
    mean = ops.tensordot(weights, centres, axes=1)  # (..., 2)
    if not spread:
        return mean
    square = ops.tensordot(weights, ops.sum(centres**2, axis=-1), axes=1)  # E|c|^2
    radius = ops.sqrt(ops.maximum(square - ops.sum(mean**2, axis=-1), 0.0) + 1e-6)
    return ops.concatenate([mean, radius[..., None]], axis=-1)
