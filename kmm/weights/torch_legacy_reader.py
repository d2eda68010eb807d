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

    def materialize(self, name):
        """The tensor's values, after checking that the view stays inside its storage."""
        base = self.storage.array
        if base is None:
            raise ValueError(f"tensor {name!r}: its storage has no data in the file.")
        offset, size, stride = self.offset, self.size, self.stride
        ints = [offset, *size, *stride]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints) or len(size) != len(stride):
            raise ValueError(f"tensor {name!r}: invalid view (offset {offset!r}, size {size!r}, stride {stride!r}).")
        if 0 in size:
            return np.zeros(size, base.dtype)
        last = offset + sum((n - 1) * st for n, st in zip(size, stride, strict=True))
        if last >= len(base):
            raise ValueError(
                f"tensor {name!r}: view (offset {offset}, size {size}, stride {stride}) reaches element {last} "
                f"of a storage of {len(base)}."
            )
        itemsize = base.dtype.itemsize
        if not size:
            return base[offset].copy()
        view = np.lib.stride_tricks.as_strided(
            base[offset:],
            shape=size,
            strides=tuple(st * itemsize for st in stride),
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
    if not isinstance(keys, list):
        raise ValueError(f"{path}: the storage key list is a {type(keys).__name__}, not a list.")
    for key in keys:
        if key not in storages:
            raise ValueError(f"{path}: storage key {key!r} is not used by any tensor.")
        storage = storages[key]
        header = f.read(8)
        if len(header) != 8:
            raise ValueError(f"{path}: truncated before storage {key}.")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel or numel < 0:
            raise ValueError(f"{path}: storage {key} holds {numel} elements; its tensors declared {storage.numel}.")
        nbytes = numel * storage.dtype.itemsize
        buf = f.read(nbytes)
        if len(buf) != nbytes:
            raise ValueError(f"{path}: truncated: storage {key} needs {nbytes} bytes, found {len(buf)}.")
        storage.array = np.frombuffer(buf, dtype=storage.dtype.newbyteorder("<")).astype(storage.dtype)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}.")
    try:
        return {name: t.materialize(name) if isinstance(t, _LazyTensor) else t for name, t in obj.items()}
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
