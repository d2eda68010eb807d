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

import contextlib
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from kmm import run_folder, specs
from kmm.data.pipeline import data_summary
from kmm.eval.evaluate import evaluate_run
from kmm.features import cache as feats
from kmm.models.builder import build_parts, make_encoders, with_encoder_grid
from kmm.models.config import PRESETS
from kmm.specs import TEXT_TOKENS, VIDEO_FEATURES
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
    """Trains as a run config says, then evaluates; returns `(parts, run_dir, split_arrays)`."""
    train_config = TrainConfig.from_dict(data.get("train", {}))
    make_strategy(train_config.strategy)  # a multi-worker strategy must come before any other TF op
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
    parts, run_dir, arrays, _ = train_and_evaluate(
        manifest, config, train_config, run_dir, ordered, video_root=video_root, verbose=verbose
    )
    return parts, run_dir, arrays


@contextlib.contextmanager
def _quiet(name, message):
    yield


def train_and_evaluate(manifest, config, train_config, run_dir, splits, feature_dir=None, video_root=None,
                       reverse_caption=None, caption_group=None, verbose=1, phase=_quiet, log=print):  # fmt: skip
    """The training pipeline behind `kmm train`, `kmm quickstart` and the Python API.

    Staged: stage-1 features (cached, `kmm.features.cache`) -> `model.fit` on them ->
    optional fine-tuning of everything (`finetune_epochs`). Joint: everything from the
    start. Then the chief evaluates every split but `splits[0]` (the training split) and
    writes the run folder. Returns `(parts, run_dir, split_arrays, results)`; on a worker
    other than the chief, `(parts, its worker folder, None, None)`.

    Args:
        manifest: a manifest or a shard folder (`kmm data shard`).
        splits: `["train", "val", ...]`: train first, then the validation split.
        feature_dir: where the stage-1 features are cached (default: `run_dir/features`).
        reverse_caption, caption_group: see `kmm.features.cache.extract_features`.
        phase: `phase(name, message)` -> context manager around each of `features`,
            `training` and `evaluation` (the quickstart times and numbers them).

    Example:

        >>> parts, run_dir, arrays, results = train_and_evaluate(  # doctest: +SKIP
        ...     "data/manifest.csv", PRESETS["default"].replace(labels=("run", "jump")), TrainConfig(),
        ...     "runs/mine", ["train", "val", "test"])
    """
    run_dir = Path(run_dir)
    config = with_encoder_grid(config)  # derived or checked once, before any strategy scope (an eager probe)
    feature_dir = Path(feature_dir) if feature_dir else worker_dir(run_dir) / "features"  # each worker its own
    extract = dict(progress=verbose > 0, video_root=video_root, reverse_caption=reverse_caption,
                   caption_group=caption_group)  # fmt: skip
    stage = "joint" if train_config.mode == "joint" else "staged, stage 1"
    models = arrays = None
    if train_config.mode != "joint":
        with phase("features", f"Stage-1 features: {config.num_frames} frames a clip through {config.frame_encoder}, "
                               f"texts through {config.text_encoder}"):  # fmt: skip
            reports = feats.extract_features(manifest, config, feature_dir, splits, **extract)
            for split, (_, report) in reports.items():
                if report is not None and report.skipped:
                    log(f"      {split}: {report.summary()}")
            arrays = {s: feats.load_features(reports[s][0]) for s in splits}
    with phase("training", f"Training ({stage}): temporal={config.temporal}, fusion={config.fusion}, "
                           f"tasks={'+'.join(config.tasks)}, up to {train_config.epochs} epochs"):  # fmt: skip
        if arrays is None:
            feature_dim, text_dim = _encoder_dims(config)
            with make_strategy(train_config.strategy).scope():
                parts = build_parts(config, feature_dim, text_dim)
        else:
            feature_dim, text_dim = (
                arrays[splits[0]][VIDEO_FEATURES].shape[-1],
                arrays[splits[0]][TEXT_TOKENS].shape[-1],
            )
            parts, _ = train_on_features(config, arrays[splits[0]], arrays[splits[1]], train_config, run_dir, verbose)
        epochs, lr = (
            (train_config.epochs, train_config.learning_rate) if arrays is None
            else (train_config.finetune_epochs, train_config.finetune_learning_rate)
        )  # fmt: skip
        if epochs:
            models, _ = train_end_to_end(parts, manifest, train_config, run_dir, epochs, lr, verbose, video_root)
            save_run(worker_dir(run_dir), parts, feature_dim, text_dim, train_config)
    if not is_chief():
        return parts, worker_dir(run_dir), None, None  # the chief evaluates and writes the run folder
    if models is not None:
        # The encoders changed: keep them (the .keras file stores their fine-tuned values),
        # and evaluate on features computed with them, not with the frozen originals.
        models.trainer.save(run_dir / run_folder.END_TO_END)
        feature_dir = run_dir / "features-finetuned"
        reports = feats.extract_features(manifest, config, feature_dir, splits, encoders=(models.video_encoder,
                                         models.text_encoder), **extract)  # fmt: skip
        arrays = {s: feats.load_features(reports[s][0]) for s in splits}
    (run_dir / run_folder.FEATURES_POINTER).write_text(str(feature_dir) + "\n")
    with phase("evaluation", f"Evaluation on {' / '.join(splits[1:])}"):
        evaluation = run_dir / run_folder.EVAL
        results = evaluate_run(parts, {s: arrays[s] for s in splits[1:]}, evaluation, run_folder.histories(run_dir))
    return parts, run_dir, arrays, results


def evaluate_saved_run(run_dir, feature_dir=None):
    """Re-evaluates a saved run on its cached features (every split but train)."""
    run_dir = Path(run_dir)
    parts = load_run(run_dir)
    feature_dir = feature_dir or run_folder.feature_dir(run_dir)
    splits = sorted(p.stem for p in Path(feature_dir).glob("*.npz") if p.stem != "train")
    arrays = {s: feats.load_features(Path(feature_dir) / f"{s}.npz") for s in splits}
    return evaluate_run(parts, arrays, run_dir / run_folder.EVAL, run_folder.histories(run_dir))
