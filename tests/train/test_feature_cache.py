"""The feature cache is never reused when it is stale, cut short or half rebuilt."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kmm.data.synth import generate
from kmm.features import cache as feats
from kmm.models.config import PRESETS

SPLITS = ("train", "val", "test")

KILLED = """
import os, signal, sys
from kmm.models.config import PRESETS
from kmm.data.synth import generate
from kmm.features import cache as feats

write = feats._write_npz
def write_then_die(path, arrays):
    write(path, arrays)
    os.kill(os.getpid(), signal.SIGKILL)  # killed after the first new file, mid re-extraction
feats._write_npz = write_then_die
config = PRESETS["tiny"].replace(labels=tuple(generate.label_names()))
feats.extract_features(sys.argv[1], config, sys.argv[2], ("train", "val", "test"), batch_size=8, progress=False)
"""


@pytest.fixture()
def cached(tiny_encoders, tmp_path):
    manifest = generate.generate(tmp_path / "shapes", generate.PRESETS["tiny"], workers=1, progress=False)
    config = PRESETS["tiny"].replace(labels=tuple(generate.label_names()))
    out = tmp_path / "features"
    first = feats.extract_features(manifest, config, out, SPLITS, batch_size=8, progress=False)
    assert all(report is not None for _, report in first.values())
    return manifest, config, out


def _extract(manifest, config, out):
    """`{split: reused?}` of one more extraction."""
    results = feats.extract_features(manifest, config, out, SPLITS, batch_size=8, progress=False)
    return {split: report is None for split, (_, report) in results.items()}


def test_a_valid_cache_is_reused_and_records_checksums_and_encoder_builds(cached):
    manifest, config, out = cached
    assert _extract(manifest, config, out) == dict.fromkeys(SPLITS, True)
    meta = json.loads((out / "features.json").read_text())
    assert sorted(meta["sha256"]) == [f"{s}.npz" for s in sorted(SPLITS)]
    assert meta["signature"]["encoder_builds"][0]["name"] == "tiny-frames"
    assert not list(out.glob(".*.tmp"))


def test_a_truncated_or_changed_file_is_rebuilt(cached):
    manifest, config, out = cached
    data = (out / "val.npz").read_bytes()
    (out / "val.npz").write_bytes(data[: len(data) // 2])
    assert _extract(manifest, config, out) == dict.fromkeys(SPLITS, False)
    assert feats.load_features(out / "val.npz")["video_features"].shape[0] > 0
    arrays = dict(np.load(out / "test.npz"))
    arrays["label_id"] = arrays["label_id"][::-1].copy()  # same size, other content
    np.savez(out / "test.npz", **arrays)
    assert _extract(manifest, config, out) == dict.fromkeys(SPLITS, False)


@pytest.mark.slow  # a fresh process
def test_sigkill_during_re_extraction_leaves_no_cache_that_looks_complete(cached):
    manifest, config, out = cached
    video = next((manifest.parent).rglob("*.mp4"))
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))  # the data set changed
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-c", KILLED, str(manifest), str(out)], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == -9, run.stderr[-2000:]
    assert not (out / "features.json").exists()  # removed before the first new file was written
    assert _extract(manifest, config, out) == dict.fromkeys(SPLITS, False)  # rebuilt, not reused
    assert _extract(manifest, config, out) == dict.fromkeys(SPLITS, True)
