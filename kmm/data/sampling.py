"""Frame index sampling strategies: pure functions of the clip length.

- `uniform` (evaluation): the centre of each of `num_frames` equal segments; deterministic.
- `random_segment` (training, TSN style): one random frame inside each equal segment.
- `dense`: `num_frames` consecutive frames `stride` apart, from a random (training) or
  centred (evaluation) start.
Clips shorter than needed repeat their frames (indices are clamped and sorted), so a
1-frame video yields `num_frames` copies of its frame.
"""

import numpy as np

STRATEGIES = ("uniform", "random_segment", "dense")


def uniform(length, num_frames):
    """Centre of each of `num_frames` equal segments of `[0, length)`."""
    _check(length, num_frames)
    edges = np.linspace(0, length, num_frames + 1)
    return np.minimum(((edges[:-1] + edges[1:]) / 2).astype(np.int64), length - 1)


def random_segment(length, num_frames, rng):
    """One uniformly random index inside each of `num_frames` equal segments."""
    _check(length, num_frames)
    edges = np.linspace(0, length, num_frames + 1)
    low = np.floor(edges[:-1]).astype(np.int64)
    high = np.maximum(np.ceil(edges[1:]).astype(np.int64), low + 1)
    return np.minimum(rng.integers(low, high), length - 1)


def dense(length, num_frames, stride=2, rng=None):
    """`num_frames` indices `stride` apart; random start with `rng`, else centred."""
    _check(length, num_frames)
    span = (num_frames - 1) * stride + 1
    slack = max(length - span, 0)
    start = int(rng.integers(0, slack + 1)) if rng is not None else slack // 2
    return np.minimum(start + stride * np.arange(num_frames), length - 1)


def sample_indices(length, num_frames, strategy="uniform", rng=None, stride=2):
    """Dispatches to a strategy by name.

    Args:
        length: int. Number of frames in the clip (>= 1).
        num_frames: int. Frames to sample (>= 1).
        strategy: str. Choose from ['uniform', 'random_segment', 'dense'].
        rng: `np.random.Generator` or None. Required by `random_segment`.
        stride: int. Step of `dense` sampling. Defaults to `2`.

    Example:

        >>> sample_indices(100, 4).tolist()
        [12, 37, 62, 87]
    """
    if strategy == "uniform":
        return uniform(length, num_frames)
    if strategy == "random_segment":
        return random_segment(length, num_frames, rng or np.random.default_rng())
    if strategy == "dense":
        return dense(length, num_frames, stride, rng)
    raise ValueError(f"Unknown sampling strategy {strategy!r}; choose from {list(STRATEGIES)}.")


def _check(length, num_frames):
    if length < 1:
        raise ValueError(f"a clip needs at least 1 frame, got {length}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
