"""Where attention over a frame's grid of cells landed: its weighted cell centre."""

import math

from keras import ops


def grid_side(cells):
    """The side of a square grid of `cells` cells; a clear error if it is not square."""
    side = math.isqrt(cells)
    if side * side != cells:
        raise ValueError(f"positions need a square grid of cells (row-major), got cells={cells}")
    return side


def attended_position(weights, cells):
    """`weights (..., cells)` summing to 1 over a row-major square grid -> `(..., 2)`: `x`, `y` in [-1, 1].

    The attention-weighted cell centre: where a query found its object. Followed over
    frames, it spells out "moves left" directly, which content features alone (an object
    looks the same wherever it is) do not.

    Example:

    >>> attended_position(np.eye(4, dtype="float32")[None], 4)[0].tolist()  # cells 0..3 of a 2x2 grid
    [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]
    """
    side = grid_side(cells)
    line = ops.linspace(-1.0, 1.0, side)
    centres = ops.stack([ops.tile(line, [side]), ops.repeat(line, side)], axis=-1)  # (cells, [x, y])
    return ops.tensordot(weights, ops.cast(centres, weights.dtype), axes=1)
