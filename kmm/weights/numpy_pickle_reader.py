"""Read a pickle of nested dicts of numpy arrays (e.g. a flax checkpoint), safely.

`pickle.load` can call any importable function, so it is never used on weight files. This
reader allows exactly the three globals a pickled `numpy.ndarray` needs (`numpy.dtype`,
`numpy.ndarray` and numpy's `_reconstruct`), only numeric dtypes, and containers of plain
dicts; every other global raises `UnsafePickleError`.
"""

import io
import pickle
from pathlib import Path

import numpy as np
from numpy._core import multiarray

from kmm.weights.torch_legacy_reader import UnsafePickleError

_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats


def _numeric_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.kind not in _NUMERIC_KINDS:
        raise UnsafePickleError(f"refusing a non-numeric array dtype {dtype!r} in a weight file")
    return dtype


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return multiarray._reconstruct
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return _numeric_dtype
        raise UnsafePickleError(
            f"refusing to load global '{module}.{name}': a pickle of numpy arrays never needs it, "
            "and unpickling it could run arbitrary code"
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"unexpected persistent id {pid!r} in a pickle of numpy arrays")


def _check_tree(tree, where="checkpoint"):
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: expected string keys, found {key!r}")
            _check_tree(value, f"{where}/{key}")
    elif not isinstance(tree, np.ndarray) or tree.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"{where}: expected a numeric numpy array, found {type(tree).__name__}")


def read_numpy_pickle(path):
    """Returns the nested `{name: {...: np.ndarray}}` dict stored in a pickle of numpy arrays.

    Args:
        path: str or Path. A pickle whose only content is dicts with string keys and
            numeric numpy arrays (as flax's `serialization.to_state_dict` gives).

    Raises:
        UnsafePickleError: the pickle references any other global, or a non-numeric dtype.
        ValueError: the file is not such a pickle (truncated, or holds other objects).

    Example:

        >>> tree = read_numpy_pickle("i3d-kinetics-400.ckpt")  # doctest: +SKIP
        >>> tree["params"]["Conv3d_1a_7x7"]["Conv_0"]["kernel"].shape  # doctest: +SKIP
        (7, 7, 7, 3, 64)
    """
    path = Path(path)
    try:
        tree = _RestrictedUnpickler(io.BytesIO(path.read_bytes())).load()
    except UnsafePickleError:
        raise
    except Exception as e:
        raise ValueError(f"{path}: not a readable pickle of numpy arrays: {e}") from e
    _check_tree(tree, str(path))
    return tree
