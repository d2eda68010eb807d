import json
import struct

import numpy as np
import pytest

from kmm.weights import read_safetensors


def _write(path, tensors):
    header, chunks, offset = {}, [], 0
    for name, a in tensors.items():
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        dtype = {np.float32: "F32", np.int64: "I64", np.float16: "F16"}[a.dtype.type]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"".join(chunks))


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "w": rng.normal(size=(3, 4)).astype(np.float32),
        "ids": np.arange(5, dtype=np.int64),
        "h": rng.normal(size=(2,)).astype(np.float16),
    }
    _write(tmp_path / "m.safetensors", tensors)
    out = read_safetensors(tmp_path / "m.safetensors")
    assert sorted(out) == sorted(tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(out[k], v)
        assert out[k].dtype == v.dtype


def test_truncated_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 10_000) + b"{}")
    with pytest.raises(ValueError, match="header length"):
        read_safetensors(tmp_path / "bad.safetensors")
