"""Training loops on `model.fit`: staged (frozen encoders on cached features, then optional
fine-tuning of everything at a lower learning rate) and joint (everything from the start),
as in the seed article's section 3.3.
"""

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kmm import run_folder, specs, tasks
from kmm.data.shards import is_shard_folder
from kmm.models.builder import build_end_to_end, build_feature_model, build_parts, with_encoder_grid
from kmm.models.config import ModelConfig
from kmm.specs import VIDEO_FEATURES
from kmm.train.batches import features_dataset
from kmm.train.callbacks import BackupAndRestore, ResumableCSVLogger, RetrievalEvaluation
from kmm.train.distribute import STRATEGIES, distribute, fit, is_chief, make_strategy, worker_dir

TRAINING_MODES = ("staged", "joint")


# Fields of kmm 0.1.0 that measured no better than the default (BENCHMARKS.md keeps the numbers).
REMOVED_TRAIN_FIELDS = {
    "neighbours": "hard-negative batches of caption neighbours ended level with random batches; "
    "delete the field (reversal_pairs gives hard negatives where time reversal applies)",
}


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; nothing was saved."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimization settings. `mode`: staged (stage 1 on cached features; `finetune_epochs`
    of stage 2 with trainable encoders) or joint (encoders trainable from the start)."""

    mode: str = "staged"  # Choose from ['staged', 'joint']
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 1e-3
    # Linear warm-up to `learning_rate` over the first epochs, then cosine decay to 5% of it.
    warmup_epochs: int = 0
    weight_decay: float = 1e-4
    # Stop after `patience` epochs without progress on `early_stopping_metric`.
    patience: int = 10
    # Keep the last epoch's weights (the cosine schedule ends at a low rate) rather than the
    # best epoch by `early_stopping_metric`.
    restore_best: bool = False
    # Stage-1 augmentation: (label, reversed_label) pairs; see batches.features_dataset.
    time_reversal: tuple = ()
    # Stage-1 hard negatives from time reversal: this many clips of each batch also play
    # backwards, with the reversed caption (batches.features_dataset).
    reversal_pairs: int = 0
    finetune_epochs: int = 0
    finetune_learning_rate: float = 1e-5
    seed: int = 0
    # `tf.distribute`: one device, "mirrored" (this machine's devices) or "multi_worker"
    # (TF_CONFIG); `batch_size` stays the global batch (kmm.train.distribute).
    strategy: str = "one"  # Choose from ['one', 'mirrored', 'multi_worker']

    @classmethod
    def from_dict(cls, data):
        """A `TrainConfig` from a run config's `"train"` object; a field this version does not
        have is an error that says so (and why, for a field an earlier version had)."""
        known = {field.name for field in dataclasses.fields(cls)}
        for name in data:
            if name in REMOVED_TRAIN_FIELDS:
                raise ValueError(f'"train": {{"{name}": ...}} was removed in kmm 0.2.0: {REMOVED_TRAIN_FIELDS[name]}')
            if name not in known:
                raise ValueError(f'"train": unknown field {name!r}; TrainConfig has {sorted(known)}')
        return cls(**data)

    def __post_init__(self):
        if self.mode not in TRAINING_MODES:
            raise ValueError(f"TrainConfig.mode must be one of {TRAINING_MODES}, got {self.mode!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"TrainConfig.strategy must be one of {STRATEGIES}, got {self.strategy!r}")


def learning_rate_schedule(learning_rate, steps, warmup_steps=0):
    """Cosine decay from `learning_rate` to 5% of it over `steps`, after a linear warm-up
    from 5% over the first `warmup_steps` (a high rate from the first step can collapse the
    retrieval embeddings; measured on kmm-shapes at 2e-3)."""
    schedule = keras.optimizers.schedules.CosineDecay
    if warmup_steps <= 0:
        return schedule(learning_rate, decay_steps=max(steps, 1), alpha=0.05)
    decay_steps = max(steps - warmup_steps, 1)
    return schedule(
        0.05 * learning_rate, decay_steps, alpha=0.05, warmup_target=learning_rate, warmup_steps=warmup_steps
    )


def _compile(model, config, learning_rate, weight_decay, steps, warmup_steps=0):
    losses, weights, metrics = tasks.compile_arguments(config)
    view = keras.Model(model.input, {k: model.output[k] for k in losses}, name=model.name + "_train")
    schedule = learning_rate_schedule(learning_rate, steps, warmup_steps)
    view.compile(keras.optimizers.AdamW(schedule, weight_decay=weight_decay), losses, weights, metrics=metrics)
    return view


def backup_dir(run_dir, stage, parts, train_config, config=None):
    """`run_dir/backup/<stage>-<key>`: the key hashes the model and training configs, so a
    backup left by a run with other settings is never restored into this one."""
    config = config or parts.config
    key = hashlib.sha256((config.to_json() + json.dumps(dataclasses.asdict(train_config))).encode())
    return Path(run_dir) / run_folder.BACKUP / f"{stage}-{key.hexdigest()[:12]}"


def resume_epoch(backup):
    """The epoch `BackupAndRestore` will resume `fit` at from `backup` (0: a fresh start)."""
    metadata = Path(backup) / "training_metadata.json"
    return int(json.loads(metadata.read_text())["epoch"]) if metadata.exists() else 0


def early_stopping_metric(config, retrieval_logged):
    """`(monitor, mode)` for early stopping: what the model is for, not `val_loss`.

    The classification loss on val rises as the model grows confident while its accuracy
    and retrieval still improve, so the lowest `val_loss` is usually an early epoch. Watched
    instead: text->video R@1 on val when it is logged (`RetrievalEvaluation`), else val
    accuracy, else (retrieval alone, without the R@1 pass) the val InfoNCE loss, which
    falls as retrieval improves.
    """
    if retrieval_logged:
        return "val_t2v_r1", "max"
    if "classification" in config.tasks:  # Keras prefixes a metric with its output's name only when there are several
        output = tasks.REGISTRY["classification"].output
        return (f"val_{tasks.ACCURACY}" if len(config.tasks) == 1 else f"val_{output}_{tasks.ACCURACY}"), "max"
    return "val_loss", "min"


def _callbacks(run_dir, parts, val_arrays, train_config, stage):
    """The callbacks of one stage's `fit`. Order matters at each epoch's end: the logs are
    complete (retrieval metrics) before they are written, and the history row is written
    before the backup, so a kill between them redoes the epoch and `ResumableCSVLogger`
    drops its earlier row: every epoch is in the history once.

    A worker other than the chief writes into its `worker_dir` and resumes from the chief's
    backup, so that all workers restart at the same epoch."""
    chief_backup = backup_dir(run_dir, stage, parts, train_config)
    run_dir = worker_dir(run_dir)
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if val_arrays is not None and parts.text_tower is not None:
        callbacks.append(RetrievalEvaluation(parts, val_arrays))
    monitor, mode = early_stopping_metric(parts.config, retrieval_logged=len(callbacks) > 1)
    callbacks += [
        keras.callbacks.EarlyStopping(
            monitor, mode=mode, patience=train_config.patience, restore_best_weights=train_config.restore_best
        ),
        keras.callbacks.TensorBoard(str(run_dir / run_folder.TENSORBOARD / stage)),
        ResumableCSVLogger(str(run_folder.history(run_dir, stage))),
        BackupAndRestore(str(backup_dir(run_dir, stage, parts, train_config)), restore_dir=str(chief_backup)),
    ]
    return callbacks


def check_finite(model, what):
    """Raises `TrainingDivergedError` when any of `model`'s weights is NaN or infinite."""
    bad = [w.path for w in model.weights if not np.isfinite(keras.ops.convert_to_numpy(w)).all()]
    if bad:
        raise TrainingDivergedError(
            f"{what}: {len(bad)} weight tensor(s) are NaN or infinite (first: {bad[0]}): training diverged, so "
            "nothing was saved. Lower the learning rate, or check the data for NaN features."
        )


def train_on_features(config, train_arrays, val_arrays, train_config, run_dir, verbose=1):
    """Stage 1: fits towers and heads on cached encoder outputs; returns `(parts, history)`.

    Under `train_config.strategy`, every worker passes the same arrays; each replica takes
    its share of every global batch. Only the chief saves the run.
    """
    keras.utils.set_random_seed(train_config.seed)
    strategy = make_strategy(train_config.strategy)
    config = with_encoder_grid(config) if config.spatial_cells is None else config  # outside the scope
    feature_dim = train_arrays[VIDEO_FEATURES].shape[-1]
    text_dim = train_arrays[specs.TEXT_TOKENS].shape[-1]
    batch = train_config.batch_size
    per_epoch = len(train_arrays[specs.LABEL_ID]) // batch
    first_epoch = resume_epoch(backup_dir(run_dir, "stage1", None, train_config, config))

    def train_batches():
        return features_dataset(
            train_arrays, config, batch, training=True, seed=train_config.seed,
            time_reversal=train_config.time_reversal,
            reversal_pairs=train_config.reversal_pairs, first_epoch=first_epoch,
        ).repeat()  # fmt: skip

    val_batch = _even_batch(len(val_arrays[specs.LABEL_ID]), batch, strategy)

    def val_batches():
        ds = features_dataset(val_arrays, config, val_batch)
        return _full_batches(ds, val_batch) if strategy.num_replicas_in_sync > 1 else ds

    with strategy.scope():
        parts = build_parts(config, feature_dim, text_dim)
        model = build_feature_model(parts, feature_dim, text_dim)
        warmup = train_config.warmup_epochs * per_epoch
        view = _compile(
            model, config, train_config.learning_rate, train_config.weight_decay, train_config.epochs * per_epoch,
            warmup,
        )  # fmt: skip
    # One iterator for the whole fit (`repeat` + `steps_per_epoch`; the batches' generator
    # reshuffles at each repetition, as it did for each epoch): `fit` re-creates a finite
    # dataset's iterator every epoch, which stalls when the pipeline holds the feature arrays.
    history = fit(
        view, strategy, x=distribute(strategy, train_batches, batch), steps_per_epoch=per_epoch,
        validation_data=distribute(strategy, val_batches, val_batch),
        epochs=train_config.epochs, verbose=verbose if is_chief() else 0,
        callbacks=_callbacks(run_dir, parts, val_arrays, train_config, "stage1"),
    )  # fmt: skip
    # The chief saves the run; another worker saves into its own folder (refuses non-finite weights).
    save_run(worker_dir(run_dir), parts, feature_dim, text_dim, train_config)
    return parts, history


def _even_batch(n, batch_size, strategy):
    """The evaluation batch under `strategy`: at most `batch_size` and `n`, a multiple of the
    replicas (every replica gets the same number of full batches)."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return batch_size
    even = min(batch_size, n) // replicas * replicas
    if even == 0:
        raise ValueError(f"{n} validation clips cannot be split over {replicas} replicas.")
    return even


def _full_batches(ds, batch_size):
    """`ds` re-batched to full batches only (the last partial one dropped)."""
    return ds.unbatch().batch(batch_size, drop_remainder=True)


def _raw_dataset(manifest, config, split, batch_size, training, seed, video_root=None, share=None, first_epoch=None,
                 drop_remainder=False):  # fmt: skip
    """`(x, y)` batches of raw clips; `share=(pipelines, index)`: this input pipeline's files
    of a shard folder (`kmm.data.shards.worker_files`); `first_epoch`: a stream of epochs
    (`kmm.data.pipeline.build_dataset`)."""
    from kmm.data.pipeline import DataConfig, dataset_from_manifest
    from kmm.data.shards import shard_dataset

    sampling = "random_segment" if training else "uniform"
    data_config = DataConfig(config.num_frames, config.frame_size, sampling, batch_size=batch_size, seed=seed,
                             video_root=video_root, drop_remainder=drop_remainder)  # fmt: skip
    require = ("caption",) if tasks.needs_captions(config) else ()
    if share is None:
        ds, report = dataset_from_manifest(
            manifest,
            list(config.labels),
            data_config,
            training=training,
            split=split,
            require=require,
            first_epoch=first_epoch,
        )
    else:
        ds, report = shard_dataset(manifest, list(config.labels), data_config, training, split, require, *share)

    def to_xy(batch):
        x = {specs.FRAMES: batch[specs.FRAMES], specs.TEXT: batch[specs.TEXT]}
        if tasks.needs_captions(config):
            x[specs.CAPTION] = batch[specs.CAPTION]
        # Equal captions in a batch are one group (a hash: no vocabulary needed in the graph).
        groups = tf.cast(tf.strings.to_hash_bucket_fast(batch[specs.CAPTION], 2**24), tf.float32)
        return x, tasks.targets(config, batch[specs.LABEL_ID], groups)

    return ds.map(to_xy), report


def train_end_to_end(parts, manifest, train_config, run_dir, epochs, learning_rate, verbose=1, video_root=None):
    """Stage 2 (or joint training): encoders trainable, raw frames and strings in.

    `manifest`: a manifest or a shard folder. `video_root`: the folder every video must be in
    (default: the manifest's folder). Under a strategy, every worker reads the same stream of
    global batches and keeps its share. Returns the `EndToEnd` models and the history.
    """
    keras.utils.set_random_seed(train_config.seed)
    strategy = make_strategy(train_config.strategy)
    config, batch = parts.config, train_config.batch_size
    with strategy.scope():  # TF-Hub encoders load inside it, so their variables are mirrored
        models = build_end_to_end(parts, trainable_encoders=True)
    full = strategy.num_replicas_in_sync > 1  # full global batches only, so every replica runs the same steps
    # The clips come as a stream of epochs from the one a resumed fit starts at, each shuffled
    # and sampled from (seed, epoch): a resumed fit reads what an uninterrupted one did. (Not
    # yet for a shard folder under several replicas: each pipeline reads its own files below.)
    sharded = full and is_shard_folder(manifest)
    first_epoch = None if sharded else resume_epoch(backup_dir(run_dir, "stage2", parts, train_config))
    raw_train, report = _raw_dataset(manifest, config, "train", batch, True, train_config.seed, video_root,
                                     first_epoch=first_epoch, drop_remainder=full)  # fmt: skip
    raw_val, val_report = _raw_dataset(manifest, config, "val", batch, False, train_config.seed, video_root)
    # Steps from the probe's count: iterating the dataset to count would decode every clip once more.
    steps = report.rows_used // batch if full else math.ceil(report.rows_used / batch)
    per_epoch, train_ds, val_ds = max(1, steps), raw_train, raw_val
    if full:
        if sharded:  # each input pipeline reads its own files
            train_ds, steps = _sharded_input(manifest, config, train_config, strategy)
        else:  # every pipeline reads the whole stream and keeps its slice of each global batch
            train_ds = distribute(strategy, lambda: raw_train, batch)
        per_epoch = steps
        if not steps:
            raise ValueError(f"{report.rows_used} usable training clips: fewer than one global batch of {batch}.")
        val_batch = _even_batch(val_report.rows_used, batch, strategy)
        val_ds = distribute(strategy, lambda: _full_batches(raw_val, val_batch), val_batch)
    with strategy.scope():
        warmup = train_config.warmup_epochs * per_epoch
        view = _compile(models.trainer, config, learning_rate, train_config.weight_decay, epochs * per_epoch, warmup)
    history = fit(
        view, strategy, x=train_ds, steps_per_epoch=steps, validation_data=val_ds, epochs=epochs,
        verbose=verbose if is_chief() else 0, callbacks=_callbacks(run_dir, parts, None, train_config, "stage2"),
    )  # fmt: skip
    check_finite(models.trainer, "stage 2")
    return models, history


def _sharded_input(folder, config, train_config, strategy):
    """Stage 2's training input from a shard folder under a multi-replica strategy: each
    input pipeline (one per worker) reads its own files (`worker_files`) in batches of
    `batch_size / pipelines`, split into per-replica batches. Returns `(dataset, steps)`:
    steps per epoch from the worker with the fewest clips, so all run the same steps."""
    from kmm.data.report import DataReport
    from kmm.data.shards import split_files, worker_files

    batch = train_config.batch_size
    cluster = getattr(strategy, "cluster_resolver", None)
    spec = cluster.cluster_spec().as_dict() if cluster is not None else {}
    pipelines = max(1, sum(len(spec.get(kind, [])) for kind in ("chief", "worker")))
    if batch % pipelines:
        raise ValueError(f"batch_size {batch} must be a multiple of the {pipelines} workers.")
    require = ("caption",) if tasks.needs_captions(config) else ()
    _, intact = split_files(folder, "train", DataReport(), require)
    clips = []
    for index in range(pipelines):
        mine, by_record = worker_files([path for path, _ in intact], pipelines, index)
        rows = sum(len(entry["rows"]) - len(entry["no_caption"] if require else []) for path, entry in intact
                   if path in mine)  # fmt: skip
        clips.append(rows // pipelines if by_record else rows)
    steps = min(clips) // (batch // pipelines)

    def dataset_fn(context):
        share = (context.num_input_pipelines, context.input_pipeline_id)
        ds, _ = _raw_dataset(folder, config, "train", batch // pipelines, True, train_config.seed, share=share)
        per_replica = context.get_per_replica_batch_size(batch)
        return ds.unbatch().batch(per_replica, drop_remainder=True).repeat()

    return strategy.distribute_datasets_from_function(dataset_fn), steps


def save_run(run_dir, parts, feature_dim, text_dim, train_config=None):
    """Writes `config.json` and `model.weights.h5` (towers + heads) into `run_dir`."""
    run_dir = Path(run_dir)
    model = build_feature_model(parts, feature_dim, text_dim)
    check_finite(model, f"the model for {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / run_folder.CONFIG).write_text(parts.config.to_json() + "\n")
    meta = {"feature_dim": int(feature_dim), "text_dim": int(text_dim)}
    if train_config is not None:
        meta["train"] = dataclasses.asdict(train_config)
    (run_dir / run_folder.META).write_text(json.dumps(meta, indent=2) + "\n")
    model.save_weights(run_dir / run_folder.WEIGHTS)


def load_run(run_dir):
    """Rebuilds the `Parts` saved by `save_run`."""
    run_dir = Path(run_dir)
    if not (run_dir / run_folder.WEIGHTS).exists():
        raise FileNotFoundError(f"{run_dir}: no trained model (model.weights.h5); run `kmm train` first.")
    config = ModelConfig.from_json((run_dir / run_folder.CONFIG).read_text(), source=str(run_dir / run_folder.CONFIG))
    from kmm.hub.handles import check_stored_handle

    for handle in (config.frame_encoder, config.text_encoder):
        check_stored_handle(handle, f"the run folder {run_dir}")
    meta = json.loads((run_dir / run_folder.META).read_text())
    parts = build_parts(config, meta["feature_dim"], meta["text_dim"])
    model = build_feature_model(parts, meta["feature_dim"], meta["text_dim"])
    model.load_weights(run_dir / run_folder.WEIGHTS)
    return parts
