"""TF Serving's server-side batching must not change answers (saved_models/batching.config)."""

import re

import numpy as np
import pytest

from kmm.serving.client import LocalClient, connect, fit_request
from kmm.serving.export import read_metadata
from tests.serving.conftest import clips
from tests.serving.fake_tf_serving import ModelStore


@pytest.fixture(scope="module")
def store(exported):
    return ModelStore(exported[2])


def _alone(store, frames):
    return store.run("tiny", None, "embed_video", {"frames": frames})[1]["embedding"]


def test_padding_changes_answers_so_the_config_turns_it_off(exported, store):
    base = exported[2]
    short, long = clips(1, 3, 40, 40, seed=1), clips(1, 11, 64, 72, seed=2)
    padded = store.run_batched("tiny", None, "embed_video", [{"frames": short}, {"frames": long}], True)
    # TF Serving's padding gives the short clip 8 extra frames of one colour: another answer.
    assert np.abs(padded[0]["embedding"] - _alone(store, short)).max() > 1e-3
    config = (base / "batching.config").read_text()
    assert re.search(r"^pad_variable_length_inputs: false$", config, re.M), config
    with pytest.raises(ValueError, match="padding is turned off"):
        store.run_batched("tiny", None, "embed_video", [{"frames": short}, {"frames": long}], False)


def test_requests_fitted_by_the_client_batch_without_padding_and_equal_unbatched(exported, store):
    _, path, _, _ = exported
    meta = read_metadata(path)
    shape = (meta["num_frames"], meta["frame_size"])
    raw = [clips(1, 3, 40, 40, seed=1), clips(2, 11, 64, 72, seed=2), clips(1, 30, 90, 160, seed=3)]
    fitted = [fit_request(r, *shape) for r in raw]
    assert {f.shape[1:] for f in fitted} == {(shape[0], shape[1], shape[1], 3)}
    batched = store.run_batched("tiny", None, "embed_video", [{"frames": f} for f in fitted], False)
    for one, frames in zip(batched, fitted, strict=True):
        np.testing.assert_allclose(one["embedding"], _alone(store, frames), atol=1e-5)
    # ... and fitting in the client is the graph's own fitting, up to the resize filters.
    client, fitting = LocalClient(path), connect(path, frame_shape=shape)
    for frames in raw:
        np.testing.assert_allclose(fitting.embed_video(frames), client.embed_video(frames), atol=0.05)
