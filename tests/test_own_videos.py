"""The path of a user with a folder of labelled real clips, through `kmm`'s command line:
manifest -> train (I3D features) -> evaluate -> export -> classify."""

import collections
import json

import pytest

from kmm.cli import main
from kmm.data.manifest import read_manifest
from tests.data.clips import real_class_folders

pytestmark = pytest.mark.slow


def test_own_labelled_videos_end_to_end(real_encoders, tmp_path, capsys):
    folder = real_class_folders(tmp_path / "my clips")
    manifest = tmp_path / "manifest.csv"
    assert main(["data", "manifest", str(folder), "--out", str(manifest)]) == 0
    rows = read_manifest(manifest)
    splits = collections.Counter((r.label, r.split) for r in rows)
    for label in ("cartoon", "street", "car ride"):  # stratified: every label in every split
        assert all(splits[label, split] >= 1 for split in ("train", "val", "test")), splits
    assert "3 labels: car ride, cartoon, street" in capsys.readouterr().out

    config = {
        "manifest": str(manifest),
        "run_dir": str(tmp_path / "run"),
        "model": {"preset": "i3d", "fusion": "concat", "video_embedding": "temporal", "dropout": 0.0},
        "train": {"epochs": 12, "batch_size": 8, "learning_rate": 3e-3},
    }
    (tmp_path / "run.json").write_text(json.dumps(config))
    assert main(["train", "--config", str(tmp_path / "run.json")]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["tasks"] == ["classification"] and saved["frame_encoder"] == "kmm://i3d-kinetics-400"
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["test"]["classification"]["accuracy"] == 1.0, metrics["test"]  # three very different scenes

    base = tmp_path / "saved_models"
    assert main(["export", str(tmp_path / "run"), "--base-dir", str(base), "--name", "mine"]) == 0
    test_clips = [r for r in rows if r.split == "test"]
    capsys.readouterr()
    assert main(["classify", *[r.video for r in test_clips], "--model", str(base / "mine")]) == 0
    out = capsys.readouterr().out.splitlines()
    for row in test_clips:
        top = out[out.index(row.video) + 1]
        assert top.split()[-1] == row.label.split()[-1], (row.video, top)
