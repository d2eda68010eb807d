"""Kill and resume, and NaN: `kmm train` killed mid-run picks up where its backup left off;
a diverged run saves nothing."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from kmm.cli import main
from kmm.data.synth import generate
from kmm.features import cache as feats
from kmm.features.arrays import predict_arrays
from kmm.train.trainer import TrainConfig, TrainingDivergedError, load_run, train_on_features

pytestmark = pytest.mark.slow  # kmm train runs, killed and resumed

EPOCHS = 3
KILLED = """
import os, signal, sys
import keras
from kmm.train import trainer

class KillAfterSecondEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:  # after the history row, before the backup: the worst moment
            os.kill(os.getpid(), signal.SIGKILL)

callbacks = trainer._callbacks
def with_kill(*args, **kwargs):
    found = callbacks(*args, **kwargs)
    assert type(found[-1]).__name__ == "BackupAndRestore"
    return found[:-1] + [KillAfterSecondEpoch(), found[-1]]
trainer._callbacks = with_kill
from kmm.cli import main

sys.exit(main(["train", "--config", sys.argv[1]]))
"""


@pytest.fixture(scope="module")
def data(tiny_encoders, tmp_path_factory):
    """`(manifest, features folder)`: the features `kmm train` would extract, extracted once."""
    from kmm.data.pipeline import data_summary
    from kmm.train.run import model_config_from

    root = tmp_path_factory.mktemp("resume")
    manifest = generate.generate(root / "shapes", generate.PRESETS["tiny"], workers=1, progress=False)
    summary = data_summary(manifest)
    splits = ["train", "val"] + sorted(set(summary) - {"train", "val"})
    config = model_config_from({"model": {"preset": "tiny"}}, summary)
    feats.extract_features(manifest, config, root / "features", splits, batch_size=8, progress=False)
    return manifest, root / "features"


def _config(data, run_dir):
    manifest, features = data
    shutil.copytree(features, run_dir / "features")  # a valid cache: `kmm train` reuses it
    config = {"manifest": str(manifest), "run_dir": str(run_dir), "model": {"preset": "tiny"},
              "train": {"epochs": EPOCHS, "batch_size": 8}}  # fmt: skip
    path = run_dir.parent / f"{run_dir.name}.json"
    path.write_text(json.dumps(config))
    return path


def _epochs(run_dir):
    with open(run_dir / "history_stage1.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_a_killed_kmm_train_resumes_and_ends_as_an_uninterrupted_run(data, tmp_path, capsys):
    killed = tmp_path / "killed"
    config = _config(data, killed)
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-c", KILLED, str(config)], env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert run.returncode == -9, run.stderr[-3000:]
    assert _epochs(killed) == [0, 1] and not (killed / "model.weights.h5").exists()
    (backup,) = (killed / "backup").iterdir()
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1  # epoch 1 is redone
    # A backup left by other settings in the same run folder is not restored.
    (killed / "backup" / "stage1-0123456789ab").mkdir()
    assert main(["train", "--config", str(config)]) == 0
    assert _epochs(killed) == list(range(EPOCHS))  # each epoch once
    straight = tmp_path / "straight"
    assert main(["train", "--config", str(_config(data, straight))]) == 0
    capsys.readouterr()
    with open(killed / "history_stage1.csv") as a, open(straight / "history_stage1.csv") as b:
        for x, y in zip(csv.DictReader(a), csv.DictReader(b), strict=True):
            assert abs(float(x["loss"]) - float(y["loss"])) < 1e-3 * max(1.0, abs(float(y["loss"]))), (x, y)
    val = feats.load_features(straight / "features" / "val.npz")
    p_killed, _ = predict_arrays(load_run(killed), val)
    p_straight, _ = predict_arrays(load_run(straight), val)
    np.testing.assert_allclose(p_killed, p_straight, atol=1e-3)


def test_nan_stops_training_and_nothing_is_saved(data, tmp_path):
    from kmm.models.config import PRESETS

    train, val = (feats.load_features(data[1] / f"{s}.npz") for s in ("train", "val"))
    train["video_features"][3, 0, 0] = np.nan  # one corrupt feature
    config = PRESETS["tiny"].replace(labels=tuple(generate.label_names()))
    with pytest.raises(TrainingDivergedError, match="NaN or infinite .* nothing was saved"):
        train_on_features(config, train, val, TrainConfig(epochs=3, batch_size=8), tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "model.weights.h5").exists()
    assert len(_epochs(tmp_path / "run")) == 1  # TerminateOnNaN stopped it in the first epoch
