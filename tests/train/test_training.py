import json

import numpy as np
import pytest

from kmm.data.synth import generate, vocab
from kmm.features import cache as feats
from kmm.models.config import PRESETS
from kmm.train.trainer import TrainConfig, load_run, train_end_to_end, train_on_features

pytestmark = pytest.mark.slow  # each test trains

SPLITS = ("train", "val", "test")


def tiny_encoders_text(config):
    from kmm.models.builder import make_encoders

    return make_encoders(config)[1]


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, tiny_encoders):
    root = tmp_path_factory.mktemp("train")
    manifest = generate.generate(root / "shapes", generate.PRESETS["tiny"], workers=1, progress=False)
    config = PRESETS["tiny"].replace(labels=tuple(generate.label_names()))
    paths = feats.extract_features(
        manifest, config, root / "features", SPLITS, batch_size=8, progress=False,
        reverse_caption=vocab.reverse_caption, caption_group=vocab.caption_content,
    )  # fmt: skip
    return root, manifest, config, {s: feats.load_features(paths[s][0]) for s in SPLITS}


def test_features_are_cached_and_consistent(tiny_setup):
    root, manifest, config, arrays = tiny_setup
    train = arrays["train"]
    assert train["video_features"].shape == (24, 4, 64 * 16)  # 64 cells x 16 channels (tiny CNN, 32 px)
    assert train["text_tokens"].shape == (24, config.max_text_tokens, 32)
    empty = np.array([t == b"" for t in train["text"]])
    assert (train["text_padding_mask"][empty].sum(1) == 2).all()  # [CLS] [SEP]
    # The train split also holds the captions of its clips played backwards.
    reversed_captions = [vocab.reverse_caption(c.decode()) for c in train["caption"]]
    assert any(r != c.decode() for r, c in zip(reversed_captions, train["caption"], strict=True))
    table = feats.encode_texts(tiny_encoders_text(config), reversed_captions, config.max_caption_tokens)
    np.testing.assert_allclose(
        train["reversed_caption_tokens"], np.stack([table[c][0] for c in reversed_captions]), atol=2e-3
    )
    assert "reversed_caption_tokens" not in arrays["val"]
    # What each caption (and reversed caption) says, for the retrieval loss's caption groups.
    assert train["reversed_caption"].tolist() == [c.encode() for c in reversed_captions]
    assert train["caption_group"].tolist() == [vocab.caption_content(c.decode()).encode() for c in train["caption"]]
    assert train["reversed_caption_group"].tolist() == [vocab.caption_content(c).encode() for c in reversed_captions]
    again = feats.extract_features(
        manifest, config, root / "features", SPLITS, progress=False,
        reverse_caption=vocab.reverse_caption, caption_group=vocab.caption_content,
    )  # fmt: skip
    assert all(report is None for _, report in again.values()), "a matching cache is reused"
    # The cache holds what the encoder gives for the same clips (float16 storage).
    from kmm.data.pipeline import DataConfig, dataset_from_manifest
    from kmm.hub.encoders import VideoEncoder

    ds, _ = dataset_from_manifest(manifest, config.labels, DataConfig(config.num_frames, config.frame_size, batch_size=8),
                                  split="train")  # fmt: skip
    batch = next(iter(ds))
    direct = VideoEncoder(config.frame_encoder, config.frame_convention)(batch["frames"])["video_tokens"]
    np.testing.assert_allclose(train["video_features"][:8], direct, rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(train["label_id"][:8], batch["label_id"])


def test_staged_training_writes_a_reloadable_run(tiny_setup, tmp_path):
    from kmm.eval.evaluate import evaluate_run
    from kmm.features.arrays import predict_arrays

    _, _, config, arrays = tiny_setup
    run = tmp_path / "run"
    parts, history = train_on_features(
        config, arrays["train"], arrays["val"], TrainConfig(epochs=2, batch_size=8), run, verbose=0
    )
    assert len(history.history["loss"]) == 2 and "val_t2v_r1" in history.history
    for name in ("config.json", "run.json", "model.weights.h5", "history_stage1.csv"):
        assert (run / name).exists(), name
    assert any((run / "tensorboard" / "stage1").rglob("*tfevents*"))
    reloaded = load_run(run)
    np.testing.assert_allclose(
        predict_arrays(reloaded, arrays["val"])[0], predict_arrays(parts, arrays["val"])[0], atol=1e-5
    )
    results = evaluate_run(
        parts, {"val": arrays["val"], "test": arrays["test"]}, run / "eval", [run / "history_stage1.csv"]
    )
    probabilities = predict_arrays(parts, arrays["test"])[0]
    expected = np.mean(probabilities.argmax(-1) == arrays["test"]["label_id"])
    assert results["test"]["classification"]["accuracy"] == pytest.approx(expected)
    assert set(results["test"]["retrieval"]) == {"text_to_video", "video_to_text"}
    for name in ("metrics.json", "metrics.md", "confusion_test.png", "recall.png", "training_curves.png"):
        assert (run / "eval" / name).exists(), name
    # Captions that say the same thing: any clip of the group is also reported as a hit.
    from kmm.eval.evaluate import evaluate_split

    n = len(arrays["test"]["label_id"])
    unique = dict(arrays["test"], caption_group=np.array([str(i).encode() for i in range(n)]))
    assert "retrieval_groups" not in evaluate_split(parts, unique)
    twins = dict(unique, caption_group=np.array([b"twins"] * 2 + [str(i).encode() for i in range(n - 2)]))
    grouped = evaluate_split(parts, twins)["retrieval_groups"]["text_to_video"]
    assert grouped["expected_R@1_ceiling"] == pytest.approx(100 * (n - 1) / n)
    assert grouped["R@1"] >= results["test"]["retrieval"]["text_to_video"]["R@1"]


def test_evaluation_traces_its_predict_function_once(tiny_setup, tmp_path, monkeypatch):
    # A new model per split traced a new predict function each time (the quickstart printed
    # TensorFlow's "triggered tf.function retracing" warnings): one model serves every split.
    from kmm.eval import evaluate
    from kmm.features.arrays import feature_model

    _, _, config, arrays = tiny_setup
    parts, _ = train_on_features(config, arrays["train"], arrays["val"], TrainConfig(epochs=1, batch_size=8), tmp_path,
                                 verbose=0)  # fmt: skip
    built = []
    monkeypatch.setattr(evaluate, "feature_model", lambda *a: built.append(feature_model(*a)) or built[-1])
    evaluate.evaluate_run(parts, {f"split{i}": arrays["test" if i % 2 else "val"] for i in range(6)}, tmp_path / "eval")
    assert len(built) == 1
    # Traced for the first batch shape, then once more with the shapes relaxed (reduce_retracing).
    assert built[0].predict_function.experimental_get_tracing_count() <= 2


def test_stage2_fine_tunes_the_encoders(tiny_setup, tmp_path):
    _, manifest, config, arrays = tiny_setup
    parts, _ = train_on_features(
        config, arrays["train"], arrays["val"], TrainConfig(epochs=1, batch_size=8), tmp_path, verbose=0
    )
    train_config = TrainConfig(batch_size=8)
    models, history = train_end_to_end(parts, manifest, train_config, tmp_path, epochs=1, learning_rate=1e-3, verbose=0)
    encoder_vars = models.video_encoder.module._module.trainable_variables
    assert models.video_encoder.trainable and len(models.trainer.trainable_weights) > len(
        parts.video_tower.trainable_weights
    )
    assert np.isfinite(history.history["loss"][0])
    # The module's own variables moved (they are the ones Keras trained).
    from kmm.hub.handles import load_module

    fresh = load_module(config.frame_encoder).trainable_variables
    assert any(not np.allclose(a.numpy(), b.numpy()) for a, b in zip(encoder_vars, fresh, strict=True))


def test_joint_and_staged_training_from_a_shard_folder(tiny_setup, tmp_path):
    """A run config whose "manifest" is a `kmm data shard` folder: joint training, then
    staged training whose features match the manifest's."""
    from kmm.data.shards import write_shards
    from kmm.train.run import evaluate_saved_run, train_from_config

    _, manifest, config, arrays = tiny_setup
    # The tiny set's own frame count and size: the shards keep exactly the frames training samples.
    write_shards(manifest, tmp_path / "shards", num_shards=3, frames=config.num_frames, size=32, progress=False)
    data = {
        "manifest": str(tmp_path / "shards"),
        "run_dir": str(tmp_path / "joint"),
        "model": {"preset": "tiny", "fusion": "concat"},
        "train": {"mode": "joint", "epochs": 1, "batch_size": 8},
    }
    parts, run_dir, _ = train_from_config(data, verbose=0)
    assert parts.config.fusion == "concat" and (run_dir / "model.weights.h5").exists()
    # Labels and tasks come from shards.json as they would from the manifest.
    assert parts.config.labels == tuple(sorted(config.labels)) and parts.config.tasks == config.tasks
    # Fine-tuned encoders are kept, and evaluation used them.
    assert (run_dir / "end_to_end.keras").exists()
    assert (run_dir / "features.txt").read_text().strip().endswith("features-finetuned")
    assert json.loads((run_dir / "run.json").read_text())["train"]["mode"] == "joint"
    staged = dict(data, run_dir=str(tmp_path / "staged"), train={"epochs": 1, "batch_size": 8})
    parts, staged_dir, sharded = train_from_config(staged, verbose=0)
    for split in SPLITS:  # the same clips and labels as features extracted from the manifest
        mine, theirs = sharded[split], arrays[split]
        names = dict(zip(mine["row"].tolist(), np.array(parts.config.labels)[mine["label_id"]], strict=True))
        assert names == dict(zip(theirs["row"].tolist(), np.array(config.labels)[theirs["label_id"]], strict=True))
    results = evaluate_saved_run(staged_dir)
    assert {"val", "test", "compositional"} <= set(results)


@pytest.mark.parametrize("tasks, monitor", [(("classification",), "val_acc"), (("retrieval",), "val_t2v_r1")])
def test_single_task_variants_train_and_stop_early_on_a_logged_metric(tiny_setup, tmp_path, tasks, monitor):
    from kmm.train.trainer import early_stopping_metric

    _, _, config, arrays = tiny_setup
    config = config.replace(tasks=tasks)
    assert early_stopping_metric(config, retrieval_logged="retrieval" in tasks) == (monitor, "max")
    # A learning rate of 0 never improves the metric: patience 1 stops after the second epoch.
    # (A monitor name that is not logged only warns in Keras, and all 4 epochs would run.)
    parts, history = train_on_features(
        config, arrays["train"], arrays["val"], TrainConfig(epochs=4, batch_size=8, patience=1, learning_rate=0.0),
        tmp_path, verbose=0,
    )  # fmt: skip
    assert monitor in history.history and len(history.history["loss"]) == 2
    assert np.isfinite(history.history["loss"]).all()
    assert (parts.head is None) == (tasks == ("retrieval",)) and (parts.text_tower is None) == (
        tasks == ("classification",)
    )


def test_a_run_config_with_a_removed_or_unknown_train_field_is_a_clear_error():
    assert TrainConfig.from_dict({"epochs": 3}).epochs == 3
    with pytest.raises(ValueError, match=r'"neighbours": \.\.\.} was removed in kmm 0\.2\.0: hard-negative'):
        TrainConfig.from_dict({"epochs": 3, "neighbours": 4})
    with pytest.raises(ValueError, match=r"unknown field 'epoch'; TrainConfig has \[.*'epochs'"):
        TrainConfig.from_dict({"epoch": 3})


def test_learning_rate_warms_up_linearly_then_decays_by_cosine():
    from kmm.train.trainer import learning_rate_schedule

    warm = learning_rate_schedule(2e-3, steps=100, warmup_steps=10)
    rates = np.array([float(warm(step)) for step in range(101)])
    np.testing.assert_allclose(rates[[0, 5, 10]], [1e-4, 1.05e-3, 2e-3], rtol=1e-4)  # 5% -> 100%, linear
    assert (np.diff(rates[:11]) > 0).all() and (np.diff(rates[10:]) <= 0).all()
    np.testing.assert_allclose(rates[100], 1e-4, rtol=1e-4)  # cosine down to 5%
    plain = learning_rate_schedule(2e-3, steps=100)
    np.testing.assert_allclose([float(plain(0)), float(plain(100))], [2e-3, 1e-4], rtol=1e-4)
