"""Read a `.safetensors` file with numpy alone.

The format is an 8-byte little-endian header length, a JSON header mapping tensor
names to `{dtype, shape, data_offsets}`, then one raw little-endian byte buffer.
"""

import json
import struct
from pathlib import Path

import numpy as np

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors(path):
    """Returns `{name: np.ndarray}` for every tensor in a safetensors file.

    Args:
        path: str or Path. The `.safetensors` file.

    Example:

        >>> tensors = read_safetensors("model.safetensors")  # doctest: +SKIP
        >>> tensors["embeddings.word_embeddings.weight"].shape  # doctest: +SKIP
        (30522, 384)
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short to be a safetensors file ({len(raw)} bytes).")
    (header_len,) = struct.unpack("<Q", raw[:8])
    if header_len > len(raw) - 8:
        raise ValueError(f"{path}: header length {header_len} exceeds the file size.")
    header = json.loads(raw[8 : 8 + header_len])
    data = memoryview(raw)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}.")
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=np.dtype(dtype).newbyteorder("<"))
        tensors[name] = array.reshape(info["shape"]).astype(dtype)
    return tensors
