"""Read a legacy (pre-zip) PyTorch `.pth` file without PyTorch, safely.

A pickle can call any importable function while it loads, so `pickle.load` on a
downloaded checkpoint is remote code execution. This reader allows exactly the
globals a plain `state_dict` needs (the tensor-rebuild function, `OrderedDict`
and the storage types) and refuses every other one with `UnsafePickleError`.

The legacy layout, as written by `torch.save(..., _use_new_zipfile_serialization=False)`:
five pickles in a row (magic number, protocol version, system info, the object
with storages as persistent ids, the list of storage keys), then for each storage
key an 8-byte little-endian element count followed by the raw little-endian data.
"""

import collections
import io
import pickle
import struct
from pathlib import Path

import numpy as np

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafePickleError(pickle.UnpicklingError):
    """Raised when a checkpoint asks for a global that a state dict never needs."""


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    def __init__(self, dtype, numel):
        self.dtype = dtype
        self.numel = numel
        self.array = None


class _LazyTensor:
    """A tensor whose storage bytes come after the pickle that references them."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialize(self):
        base = self.storage.array
        itemsize = base.dtype.itemsize
        if not self.size:
            return base[self.offset].copy()
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_):
    return _LazyTensor(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(
            f"refusing to load global '{module}.{name}': a PyTorch state dict never needs it, "
            "and unpickling it could run arbitrary code"
        )

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise UnsafePickleError(f"unexpected persistent id {pid!r} in a PyTorch checkpoint")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"persistent id names {storage_type!r}, not a storage type")
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype, numel)
        return self._storages[key]


def _load_plain(f, what, path):
    try:
        return _RestrictedUnpickler(f, {}).load()
    except UnsafePickleError:
        raise
    except Exception as e:
        raise ValueError(f"{path}: cannot read the {what} of a legacy PyTorch file: {e}") from e


def read_torch_legacy(path):
    """Returns `{name: np.ndarray}` from a legacy-format PyTorch `state_dict` file.

    Args:
        path: str or Path. A `.pth` file written in the legacy (non-zip) format.

    Raises:
        UnsafePickleError: the pickle references any global other than the
            tensor rebuild function, `OrderedDict` or a storage type.
        ValueError: the file is not a legacy PyTorch file (e.g. a zip checkpoint).

    Example:

    >>> state = read_torch_legacy("efficientnet-lite0.pth")  # doctest: +SKIP
    >>> state["_conv_stem.weight"].shape  # doctest: +SKIP
    (32, 3, 3, 3)
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"PK":
        raise ValueError(f"{path}: a zip-format PyTorch checkpoint; only the legacy format is supported.")
    f = io.BytesIO(raw)
    if _load_plain(f, "magic number", path) != _MAGIC_NUMBER:
        raise ValueError(f"{path}: not a legacy PyTorch file (wrong magic number).")
    _load_plain(f, "protocol version", path)
    _load_plain(f, "system info", path)
    storages = {}
    unpickler = _RestrictedUnpickler(f, storages)
    obj = unpickler.load()
    keys = _load_plain(f, "storage keys", path)
    for key in keys:
        storage = storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        nbytes = numel * storage.dtype.itemsize
        buf = f.read(nbytes)
        if len(buf) != nbytes:
            raise ValueError(f"{path}: truncated: storage {key} needs {nbytes} bytes, found {len(buf)}.")
        storage.array = np.frombuffer(buf, dtype=storage.dtype.newbyteorder("<")).astype(storage.dtype)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}.")
    return {name: t.materialize() if isinstance(t, _LazyTensor) else t for name, t in obj.items()}
