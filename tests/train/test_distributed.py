"""`tf.distribute` training: MirroredStrategy equals one device; two real worker processes
train together, and resume together after one is killed.

Each run is a subprocess: a strategy (logical CPUs, TF_CONFIG) must be set up before
TensorFlow initializes, which it already has in the test process.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from kmm.data.synth import generate
from kmm.features import cache as feats
from kmm.train.distribute import local_tf_configs

pytestmark = pytest.mark.slow  # several worker processes train

MIRRORED_STEP = """
import json, sys
from kmm.train.distribute import use_logical_cpus
use_logical_cpus(2)
import numpy as np
from kmm.models.builder import build_feature_model
from kmm.models.config import ModelConfig
from kmm.features import cache as feats
from kmm.train.distribute import local_tf_configs
from kmm.train.distribute import make_strategy
from kmm.train.trainer import TrainConfig, train_on_features

features, config_path, out = sys.argv[1:]
config = ModelConfig.from_json(open(config_path).read())
train, val = (feats.load_features(f"{features}/{s}.npz") for s in ("train", "val"))
result = {"replicas": make_strategy("mirrored").num_replicas_in_sync}
for name in ("one", "mirrored"):
    batch = len(train["label_id"])  # one step of the whole train split
    parts, history = train_on_features(config, train, val, TrainConfig(epochs=1, batch_size=batch, strategy=name),
                                       f"{out}/{name}", verbose=0)
    model = build_feature_model(parts, train["video_features"].shape[-1], train["text_tokens"].shape[-1])
    np.savez(f"{out}/{name}.npz", *[np.asarray(w) for w in model.get_weights()])
    result[name] = history.history["loss"][0]
import keras
from kmm.models.builder import build_parts

keras.utils.set_random_seed(0)  # what training started from (TrainConfig.seed)
fresh = build_parts(config, train["video_features"].shape[-1], train["text_tokens"].shape[-1])
model = build_feature_model(fresh, train["video_features"].shape[-1], train["text_tokens"].shape[-1])
np.savez(f"{out}/fresh.npz", *[np.asarray(w) for w in model.get_weights()])
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def data(tiny_encoders, tmp_path_factory):
    """`(shard folder, features folder, model config)`: the tiny kmm-shapes set in 4 TFRecord
    files per split (each of 2 workers reads its own), features extracted from them once."""
    from kmm.data.pipeline import data_summary
    from kmm.data.shards import write_shards
    from kmm.train.run import model_config_from

    root = tmp_path_factory.mktemp("distributed")
    manifest = generate.generate(root / "shapes", generate.PRESETS["tiny"], workers=1, progress=False)
    write_shards(manifest, root / "shards", num_shards=4, frames=4, size=32, progress=False)
    summary = data_summary(root / "shards")
    config = model_config_from({"model": {"preset": "tiny", "dropout": 0.0}}, summary)
    splits = ["train", "val"] + sorted(set(summary) - {"train", "val"})
    feats.extract_features(root / "shards", config, root / "features", splits, batch_size=8, progress=False)
    return root / "shards", root / "features", config


def _env(**extra):
    return {**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def test_a_mirrored_step_on_two_replicas_equals_the_single_device_step(data, tmp_path):
    _, features, config = data
    (tmp_path / "config.json").write_text(config.to_json())
    run = subprocess.run([sys.executable, "-c", MIRRORED_STEP, str(features), str(tmp_path / "config.json"),
                          str(tmp_path)], env=_env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert abs(result["one"] - result["mirrored"]) < 1e-5, result
    with (np.load(tmp_path / "one.npz") as one, np.load(tmp_path / "mirrored.npz") as mirrored,
          np.load(tmp_path / "fresh.npz") as fresh):  # fmt: skip
        assert len(one.files) == len(mirrored.files) == len(fresh.files) > 10
        for key in one.files:
            np.testing.assert_allclose(mirrored[key], one[key], atol=1e-5, err_msg=key)
        # ... and the step did move them from where both started.
        moved = sum(not np.allclose(one[k], fresh[k], atol=1e-6) for k in one.files)
        assert moved > len(one.files) // 2, (moved, len(one.files))


EPOCHS = 3


def _run_config(data, run_dir, strategy="multi_worker", **train):
    shards, features, _ = data
    train = {"epochs": EPOCHS, "batch_size": 8, "strategy": strategy, **train}
    config = {
        "manifest": str(shards),
        "run_dir": str(run_dir),
        "model": {"preset": "tiny", "dropout": 0.0},
        "train": train,
    }
    path = run_dir.parent / f"{run_dir.name}.json"
    path.write_text(json.dumps(config))
    return path


def _start_workers(config, tf_configs, timeout_s=20):
    code = "import sys; from kmm.cli import main; sys.exit(main(['train', '--config', sys.argv[1]]))"
    workers = []
    for tf_config in tf_configs:
        env = _env(TF_CONFIG=tf_config, KMM_COLLECTIVE_TIMEOUT_S=str(timeout_s), TF_NUM_INTRAOP_THREADS="1",
                   TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1")  # fmt: skip
        workers.append(subprocess.Popen([sys.executable, "-c", code, str(config)], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))  # fmt: skip
    return workers


def _history(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _weights(path):
    import h5py

    values = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, item: values.__setitem__(name, item[()]) if hasattr(item, "shape") else None)
    return values


def test_two_worker_processes_train_together_like_one_process(data, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    worker1 = tmp_path / ".run.worker1"
    for folder in (run_dir, worker1):  # a valid feature cache: the workers skip extraction
        shutil.copytree(data[1], folder / "features")
    workers = _start_workers(_run_config(data, run_dir), local_tf_configs(2))
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-4000:]
    # The chief wrote the run folder; the other worker only its own folder.
    assert (run_dir / "model.weights.h5").exists() and (run_dir / "eval" / "metrics.json").exists()
    assert (worker1 / "model.weights.h5").exists() and not (worker1 / "eval").exists()
    assert not (run_dir / "backup").exists() or not any((run_dir / "backup").glob("*/worker*"))
    chief, other = _weights(run_dir / "model.weights.h5"), _weights(worker1 / "model.weights.h5")
    assert chief.keys() == other.keys()
    for key in chief:
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)  # identical on every worker
    history = _history(run_dir / "history_stage1.csv")
    assert [int(r["epoch"]) for r in history] == list(range(EPOCHS))
    assert float(history[-1]["loss"]) < float(history[0]["loss"])
    # One process with the same global batch gets the same model (sums in another order).
    from kmm.cli import main

    single = tmp_path / "single"
    shutil.copytree(data[1], single / "features")
    assert main(["train", "--config", str(_run_config(data, single, "one"))]) == 0
    alone = _weights(single / "model.weights.h5")
    for key in chief:
        np.testing.assert_allclose(chief[key], alone[key], atol=2e-4, err_msg=key)
    for a, b in zip(history, _history(single / "history_stage1.csv"), strict=True):
        assert abs(float(a["loss"]) - float(b["loss"])) < 1e-4


def test_a_killed_worker_fails_the_other_clearly_and_both_resume(data, tmp_path):
    """... then fine-tune (stage 2), each worker reading its own shard files."""
    import shutil

    run_dir = tmp_path / "run"
    worker1 = tmp_path / ".run.worker1"
    for folder in (run_dir, worker1):
        shutil.copytree(data[1], folder / "features")
    config = _run_config(data, run_dir, finetune_epochs=1)
    tf_configs = local_tf_configs(2)
    workers = _start_workers(config, tf_configs, timeout_s=15)
    deadline = time.monotonic() + 300
    while not list(worker1.glob("backup/stage1-*/training_metadata.json")):  # after its first epoch
        assert time.monotonic() < deadline and workers[1].poll() is None, workers[1].stderr.read()[-3000:]
        time.sleep(0.05)
    workers[1].send_signal(signal.SIGKILL)
    start = time.monotonic()
    _, err = workers[0].communicate(timeout=300)
    assert workers[0].returncode == 2, err[-3000:]
    assert "kmm: error: a worker of this multi-worker run stopped answering" in err
    assert time.monotonic() - start < 120
    workers[1].communicate()
    assert not (run_dir / "model.weights.h5").exists()
    done = json.loads(next(run_dir.glob("backup/stage1-*/training_metadata.json")).read_text())["epoch"]
    assert 1 <= done < EPOCHS
    workers = _start_workers(config, tf_configs)
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-4000:]
    assert [int(r["epoch"]) for r in _history(run_dir / "history_stage1.csv")] == list(range(EPOCHS))
    assert len(_history(run_dir / "history_stage2.csv")) == 1 and (run_dir / "end_to_end.keras").exists()
    chief, other = _weights(run_dir / "model.weights.h5"), _weights(worker1 / "model.weights.h5")
    for key in chief:  # after stage 2 on different files, still one model
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)


@pytest.mark.parametrize(
    ("tf_config", "chief", "folder"),
    [
        (None, True, "run"),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True, "run"),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False, ".run.worker1"),
        (
            {"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
            False,
            ".run.worker0",
        ),  # fmt: skip
        ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True, "run"),
    ],
)
def test_the_chief_writes_the_run_folder_and_the_others_a_sibling(tf_config, chief, folder, tmp_path, monkeypatch):
    from kmm.train.distribute import is_chief, make_strategy, worker_dir

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert is_chief() is chief and worker_dir(tmp_path / "run") == tmp_path / folder
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        make_strategy("multi_worker")
    with pytest.raises(ValueError, match="strategy must be one of"):
        make_strategy("parameter_server")
