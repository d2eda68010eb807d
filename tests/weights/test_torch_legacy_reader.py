"""The restricted legacy `.pth` reader: correct tensors, and no code execution."""

import collections
import os
import pickle
import struct
import sys
import types

import numpy as np
import pytest

from kmm.weights import UnsafePickleError, read_torch_legacy
from kmm.weights.torch_legacy_reader import _MAGIC_NUMBER


class _FakeTorch:
    """Installs a stand-in `torch` module so that `pickle` writes the genuine global names
    (`torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`) without PyTorch."""

    def __enter__(self):
        torch = types.ModuleType("torch")
        utils = types.ModuleType("torch._utils")

        class FloatStorage:
            pass

        class LongStorage:
            pass

        def _rebuild_tensor_v2(*args):
            raise AssertionError("never called while writing")

        FloatStorage.__module__ = LongStorage.__module__ = "torch"
        FloatStorage.__qualname__, LongStorage.__qualname__ = "FloatStorage", "LongStorage"
        _rebuild_tensor_v2.__module__ = "torch._utils"
        _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
        torch.FloatStorage, torch.LongStorage, torch._utils = FloatStorage, LongStorage, utils
        utils._rebuild_tensor_v2 = _rebuild_tensor_v2
        self.saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
        sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
        return torch

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Tensor:
    def __init__(self, key, storage_type, offset, size, stride):
        self.args = (key, storage_type, offset, size, stride)

    def __reduce__(self):
        key, storage_type, offset, size, stride = self.args
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (_StorageRef(key, storage_type), offset, size, stride, False, collections.OrderedDict())


class _StorageRef:
    def __init__(self, key, storage_type):
        self.key, self.storage_type = key, storage_type


def write_legacy(path, storages, layout, payload=None):
    """Writes the legacy format: `storages` {key: 1-D array}, `layout` {name: (key, offset, size, stride)}."""
    with _FakeTorch() as torch:

        class P(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _StorageRef):
                    return ("storage", obj.storage_type, obj.key, "cpu", storages[obj.key].size)
                return None

        def dump(obj, f):
            P(f, protocol=2).dump(obj)

        types_ = {np.float32: torch.FloatStorage, np.int64: torch.LongStorage}
        state = payload or collections.OrderedDict(
            (name, _Tensor(key, types_[storages[key].dtype.type], off, size, stride))
            for name, (key, off, size, stride) in layout.items()
        )
        with open(path, "wb") as f:
            dump(_MAGIC_NUMBER, f)
            dump(1001, f)
            dump({"little_endian": True}, f)
            dump(state, f)
            dump(list(storages), f)
            for a in storages.values():
                f.write(struct.pack("<q", a.size))
                f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())


def test_reads_tensors_views_and_offsets(tmp_path):
    base = np.arange(24, dtype=np.float32)
    ids = np.array([7], dtype=np.int64)
    write_legacy(
        tmp_path / "m.pth",
        {"0": base, "1": ids},
        {
            "w": ("0", 0, (2, 3), (3, 1)),
            "w_t": ("0", 0, (3, 2), (1, 3)),  # a transposed (non-contiguous) view
            "tail": ("0", 20, (4,), (1,)),  # an offset into the shared storage
            "count": ("1", 0, (), ()),
        },
    )
    state = read_torch_legacy(tmp_path / "m.pth")
    np.testing.assert_array_equal(state["w"], base[:6].reshape(2, 3))
    np.testing.assert_array_equal(state["w_t"], base[:6].reshape(2, 3).T)
    np.testing.assert_array_equal(state["tail"], base[20:24])
    assert state["count"] == 7 and state["count"].dtype == np.int64


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["magic", "state"])
def test_refuses_a_pickle_that_runs_code(tmp_path, where):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    if where == "magic":
        with open(path, "wb") as f:
            pickle.dump(_RunsCode(marker), f, protocol=2)
    else:
        write_legacy(path, {}, {}, payload={"weight": _RunsCode(marker)})
    with pytest.raises(UnsafePickleError, match=r"refusing to load global '(posix|os)\.system'"):
        read_torch_legacy(path)
    assert not marker.exists(), "the crafted pickle ran code"


def test_zip_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "new.pth").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match="zip-format"):
        read_torch_legacy(tmp_path / "new.pth")


def test_real_efficientnet_lite0_file():
    from kmm.encoders.builtin import package_dir

    state = read_torch_legacy(package_dir("efficientnet-lite0") / "models" / "efficientnet-lite0-57934424.pth")
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    n_params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert n_params == 4_694_024  # weights + BN statistics; equals the Keras port's count_params()


CRAFTED = """
import sys
from kmm.weights import read_torch_legacy
try:
    read_torch_legacy(sys.argv[1])
except ValueError as e:
    print("refused:", e)
"""


@pytest.mark.parametrize(
    "layout, problem",
    [
        ({"w": ("0", 1 << 40, (4,), (1,))}, "reaches element"),  # offset far past the storage
        ({"w": ("0", 0, (1 << 20, 1 << 20), (1 << 30, 1))}, "reaches element"),  # strides into the heap
        ({"w": ("0", 20, (5,), (1,))}, "reaches element 24 of a storage of 24"),  # one past the end
        ({"w": ("0", -1, (2,), (1,))}, "invalid view"),
        ({"w": ("0", 0, (2, 2), (1,))}, "invalid view"),
    ],
)
def test_views_outside_their_storage_are_refused_in_a_subprocess(tmp_path, layout, problem):
    """Each file would make `as_strided` read heap memory (or segfault) without the bounds check."""
    import subprocess

    path = tmp_path / "crafted.pth"
    write_legacy(path, {"0": np.arange(24, dtype=np.float32)}, layout)
    run = subprocess.run([sys.executable, "-c", CRAFTED, str(path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]  # no segfault (-11), no traceback
    assert "refused:" in run.stdout and problem in run.stdout, run.stdout


def test_storage_sizes_must_agree_with_the_declared_ones(tmp_path):
    path = tmp_path / "m.pth"
    write_legacy(path, {"0": np.arange(6, dtype=np.float32)}, {"w": ("0", 0, (6,), (1,))})
    raw = bytearray(path.read_bytes())
    count = raw.rindex(struct.pack("<q", 6))
    raw[count : count + 8] = struct.pack("<q", 1 << 40)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="holds 1099511627776 elements; its tensors declared 6"):
        read_torch_legacy(path)
