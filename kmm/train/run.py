"""`kmm train --config run.json` and `kmm evaluate RUN_DIR`: training from a JSON file.

The config file:

```json
{
  "manifest": "path/to/manifest.csv",
  "run_dir": "runs/my-run",
  "model": {"preset": "default", "temporal": "lstm", "fusion": "concat", "labels": ["a", "b"]},
  "train": {"mode": "staged", "epochs": 30, "finetune_epochs": 0}
}
```

`"manifest"` may also be a shard folder from `kmm data shard` (TFRecord files, any
`tf.io.gfile` path). `"video_root"` (optional) is the folder every video must be in; it
defaults to the manifest's folder, and rows outside it are skipped as `outside_root`.
`"train": {"strategy": "multi_worker"}` (or `kmm train --strategy`) trains on every machine
of `TF_CONFIG`'s cluster (`kmm.train.distribute`).
`model` takes any `ModelConfig` field (plus `preset`: `default`, `i3d` for real video,
`tiny`); `labels` default to the sorted labels of the manifest's train split, `tasks` to
classification (if the train rows have labels) and retrieval (if they have captions). `train` takes any `TrainConfig` field. Splits are `train`,
`val` (early stopping and retrieval monitoring) and any others present (evaluated).
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from kmm import specs
from kmm.data.pipeline import data_summary
from kmm.features import cache as feats
from kmm.models.builder import build_parts, make_encoders
from kmm.models.config import PRESETS
from kmm.train.distribute import is_chief, make_strategy, worker_dir
from kmm.train.trainer import TrainConfig, load_run, save_run, train_end_to_end, train_on_features


def load_run_config(path):
    data = json.loads(Path(path).read_text())
    if "manifest" not in data:
        raise ValueError(f"{path}: a run config needs 'manifest'")
    return data


def _encoder_dims(config):
    """Feature width of the video encoder and text width of the text encoder, by probing them."""
    probe = np.zeros((1, config.num_frames, config.frame_size, config.frame_size, 3), np.uint8)
    video_encoder, text_encoder = make_encoders(config)
    video = video_encoder(tf.constant(probe))
    text = text_encoder(tf.constant(["x"]))
    return video[specs.VIDEO_TOKENS].shape[-1], text[specs.TEXT_EMBEDDING].shape[-1]


def model_config_from(data, summary):
    """The `ModelConfig` a run config asks for, given the data's `data_summary`.

    Labels default to the train split's; tasks to what the data supports: classification
    when the train clips have labels, retrieval when they have captions.
    """
    model = dict(data.get("model", {}))
    preset = model.pop("preset", "default")
    if preset not in PRESETS:
        raise ValueError(f"Unknown model preset {preset!r}; choose from {sorted(PRESETS)}.")
    train = summary.get("train", {"labels": {}, "captioned": 0})
    if "labels" not in model:
        model["labels"] = sorted(train["labels"])
    model["labels"] = tuple(model["labels"])
    if "tasks" not in model:
        supported = (("classification", bool(model["labels"])), ("retrieval", train["captioned"] > 0))
        model["tasks"] = [task for task, ok in supported if ok]
        if not model["tasks"]:
            raise ValueError("The train rows have neither labels nor captions: nothing to learn.")
    model["tasks"] = tuple(model["tasks"])
    return PRESETS[preset].replace(**model)


def train_from_config(data, verbose=1):
    """Trains as the config says, then evaluates; returns `(parts, run_dir, split_arrays)`."""
    from kmm.eval.evaluate import evaluate_run

    train_config = TrainConfig.from_dict(data.get("train", {}))
    strategy = make_strategy(train_config.strategy)  # a multi-worker strategy must come before any other TF op
    source = str(data["manifest"])
    manifest = source if "://" in source else Path(source).resolve()  # e.g. gs:// shards
    run_dir = Path(data.get("run_dir", "runs/" + Path(source.rstrip("/")).parent.name)).resolve()
    video_root = Path(data["video_root"]).resolve() if data.get("video_root") else None
    summary = data_summary(manifest, video_root)
    splits = sorted(s for s in summary if s)
    if "train" not in splits or "val" not in splits:
        raise ValueError(f"{manifest}: needs 'train' and 'val' rows in its split column, found {splits}")
    config = model_config_from(data, summary)
    ordered = ["train", "val"] + [s for s in splits if s not in ("train", "val")]
    feature_dir = worker_dir(run_dir) / "features"  # each worker extracts (the same) features

    models = None
    if train_config.mode == "joint":
        feature_dim, text_dim = _encoder_dims(config)
        with strategy.scope():
            parts = build_parts(config, feature_dim, text_dim)
        lr = train_config.learning_rate
        models, _ = train_end_to_end(parts, manifest, train_config, run_dir, train_config.epochs, lr, verbose,
                                     video_root)  # fmt: skip
        save_run(worker_dir(run_dir), parts, feature_dim, text_dim, train_config)
    else:
        paths = feats.extract_features(manifest, config, feature_dir, ordered, progress=verbose > 0,
                                       video_root=video_root)  # fmt: skip
        arrays = {s: feats.load_features(paths[s][0]) for s in ordered}
        parts, _ = train_on_features(config, arrays["train"], arrays["val"], train_config, run_dir, verbose)
        if train_config.finetune_epochs:
            lr = train_config.finetune_learning_rate
            models, _ = train_end_to_end(
                parts, manifest, train_config, run_dir, train_config.finetune_epochs, lr, verbose, video_root
            )
            save_run(worker_dir(run_dir), parts, *_encoder_dims(config), train_config)
    if not is_chief():
        return parts, worker_dir(run_dir), None  # the chief evaluates and writes the run folder
    if models is not None:
        # The encoders changed: keep them (the .keras file stores their fine-tuned values),
        # and evaluate on features computed with them, not with the frozen originals.
        models.trainer.save(run_dir / "end_to_end.keras")
        feature_dir = run_dir / "features-finetuned"
        encoders = (models.video_encoder, models.text_encoder)
        paths = feats.extract_features(manifest, config, feature_dir, ordered, progress=verbose > 0, encoders=encoders,
                                       video_root=video_root)  # fmt: skip
    arrays = {s: feats.load_features(paths[s][0]) for s in ordered}
    (run_dir / "features.txt").write_text(str(feature_dir) + "\n")
    histories = [run_dir / "history_stage1.csv", run_dir / "history_stage2.csv"]
    evaluate_run(parts, {s: arrays[s] for s in ordered[1:]}, run_dir / "eval", histories)
    return parts, run_dir, arrays


def evaluate_saved_run(run_dir, feature_dir=None):
    """Re-evaluates a saved run on its cached features (every split but train)."""
    from kmm.eval.evaluate import evaluate_run

    run_dir = Path(run_dir)
    parts = load_run(run_dir)
    if feature_dir is None:
        pointer = run_dir / "features.txt"
        if not pointer.exists():
            raise FileNotFoundError(f"{run_dir}: no features.txt; pass --features DIR")
        feature_dir = Path(pointer.read_text().strip())
    splits = sorted(p.stem for p in Path(feature_dir).glob("*.npz") if p.stem != "train")
    arrays = {s: feats.load_features(Path(feature_dir) / f"{s}.npz") for s in splits}
    histories = [run_dir / "history_stage1.csv", run_dir / "history_stage2.csv"]
    return evaluate_run(parts, arrays, run_dir / "eval", histories)
