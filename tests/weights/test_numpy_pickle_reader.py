import os
import pickle

import numpy as np
import pytest

from kmm.weights import UnsafePickleError, read_numpy_pickle


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_reads_nested_dicts_of_numeric_arrays(tmp_path):
    tree = {"params": {"conv": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}, "stats": {"n": np.array(3)}}
    path = tmp_path / "ok.ckpt"
    path.write_bytes(pickle.dumps(tree))
    read = read_numpy_pickle(path)
    np.testing.assert_array_equal(read["params"]["conv"]["kernel"], tree["params"]["conv"]["kernel"])
    assert read["params"]["conv"]["kernel"].dtype == np.float32


@pytest.mark.parametrize(
    "payload, match",
    [
        ({"w": _RunsCode()}, "refusing to load global 'posix.system'"),
        ({"w": np.array(["text"], dtype=object)}, "non-numeric array dtype"),
        ({"w": np.array(["abc"])}, "non-numeric array dtype"),
    ],
)
def test_refuses_code_and_non_numeric_arrays(tmp_path, payload, match):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafePickleError, match=match):
        read_numpy_pickle(path)


def test_other_objects_and_truncation_are_clear_errors(tmp_path):
    path = tmp_path / "list.ckpt"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="expected a numeric numpy array, found list"):
        read_numpy_pickle(path)
    data = pickle.dumps({"w": np.zeros(100, np.float32)})
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable pickle of numpy arrays"):
        read_numpy_pickle(path)
