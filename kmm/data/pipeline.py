"""Manifest rows -> `tf.data.Dataset` of dicts, decoding video in parallel.

Each element (before batching) is
`{frames: uint8 (T, S, S, 3), text: string, caption: string, label_id: int32, row: int64}`.

Videos are probed up front (threads; no decoding): unusable files are skipped and
recorded in the `DataReport` before training starts. A stream that turns out corrupt only
while decoding is dropped from the dataset and recorded too (once), so that after a pass
`report.rows_read == report.rows_used + len(report.skipped)` holds.

Decoding runs in Python (OpenCV releases the GIL) through `tf.numpy_function`; this is fine
for training but never enters an exported serving graph.
"""

import numpy as np
import tensorflow as tf

from kmm import specs
from kmm.data import sampling
from kmm.data.config import DataConfig, stream_of_epochs
from kmm.data.decoder import probe_rows, read_frames
from kmm.data.report import DataReport
from kmm.data.shards import is_shard_folder, read_marker, shard_dataset
from kmm.data.video_io import VideoDecodeError


class _ClipLoader:
    """The Python side of the decode step; records decode-time failures once per row."""

    def __init__(self, infos, config, report, strict, training):
        self.infos, self.config, self.report, self.strict = infos, config, report, strict
        self.training = training
        self.failed = set()
        self.empty = np.zeros((config.num_frames, config.frame_size, config.frame_size, 3), np.uint8)

    def __call__(self, row, seed):
        row, c = int(row), self.config
        info = self.infos[row]
        if self.training:
            rng = np.random.default_rng(int(seed) & 0x7FFFFFFF)
        else:  # evaluation is deterministic: a fixed draw per row, and centred dense clips
            rng = np.random.default_rng(row) if c.sampling == "random_segment" else None
        try:
            idx = sampling.sample_indices(info.num_frames, c.num_frames, c.sampling, rng=rng, stride=c.dense_stride)
            return read_frames(info.path, idx, c.frame_size, c.resize, info=info), np.bool_(True)
        except VideoDecodeError as e:
            if self.strict:
                raise
            if row not in self.failed:
                self.failed.add(row)
                self.report.unuse()
                self.report.skip(row, info.path, e.reason, e.detail)
            return self.empty, np.bool_(False)


def build_dataset(rows, label_names=None, config=DataConfig(), training=False, report=None, strict=False,
                  first_epoch=None):  # fmt: skip
    """Builds the batched, prefetched dataset for `rows`.

    Args:
        rows: list of `kmm.data.manifest.Row`.
        label_names: list of str or None. Label -> id order; rows without a label get -1.
        config: `DataConfig`.
        training: bool. Shuffle each epoch (seeded) and, with `sampling="random_segment"` or
            `"dense"`, draw new frames each epoch.
        report: `DataReport` or None. Receives used/skipped counts.
        strict: bool. Raise on the first unusable video instead of skipping it.
        first_epoch: int or None. With `training`: an endless stream of epochs from this
            one, each shuffled and sampled from `(seed, epoch)` and batched on its own, so
            a fit resumed at epoch k (`steps_per_epoch` = batches an epoch) reads what an
            uninterrupted fit read there. None: one epoch an iteration, reshuffled each time.

    Returns:
        `tf.data.Dataset` of dicts with batched `frames`, `text`, `caption`, `label_id`, `row`.

    Example:

        >>> rows = read_manifest("manifest.csv")  # doctest: +SKIP
        >>> ds = build_dataset(rows, ["run", "jump"], DataConfig(num_frames=8))  # doctest: +SKIP
    """
    report = report if report is not None else DataReport()
    usable = probe_rows(rows, report, strict=strict)
    report.used(len(usable))
    if not usable:
        raise ValueError(f"No usable videos among {len(rows)} rows:\n{report.summary()}")
    label_ids = {name: i for i, name in enumerate(label_names or [])}
    loader = _ClipLoader({row.index: info for row, info in usable}, config, report, strict, training)
    table = {
        specs.ROW: np.array([r.index for r, _ in usable], np.int64),
        specs.TEXT: np.array([r.text for r, _ in usable], object),
        specs.CAPTION: np.array([r.caption for r, _ in usable], object),
        specs.LABEL_ID: np.array([label_ids.get(r.label, -1) for r, _ in usable], np.int32),
    }
    shape = (config.num_frames, config.frame_size, config.frame_size, 3)

    def decode(element, seed):
        frames, ok = tf.numpy_function(loader, [element[specs.ROW], seed], [tf.uint8, tf.bool], stateful=False)
        frames.set_shape(shape)
        ok.set_shape(())
        return {**element, specs.FRAMES: frames}, ok

    def clips(ds, seeds):
        ds = tf.data.Dataset.zip(ds, seeds).map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.filter(_is_ok).map(_drop_flag)

    if training and first_epoch is not None:
        if config.cache:
            raise ValueError("cache=True would freeze the sampling of a stream of training epochs.")
        columns = {k: tf.constant(v) for k, v in table.items()}

        def epoch_clips(key):
            order = tf.random.experimental.stateless_shuffle(tf.range(len(usable), dtype=tf.int64), seed=key)
            seeds = tf.random.stateless_uniform([len(usable)], seed=key, minval=None, maxval=None, dtype=tf.int64)
            rows = tf.data.Dataset.from_tensor_slices(order).map(
                lambda i: {k: tf.gather(v, i) for k, v in columns.items()}
            )
            return clips(rows, tf.data.Dataset.from_tensor_slices(seeds)).batch(
                config.batch_size, config.drop_remainder
            )

        return stream_of_epochs(config.seed, first_epoch, epoch_clips).prefetch(tf.data.AUTOTUNE)
    rows = tf.data.Dataset.from_tensor_slices(table)
    rows = rows.shuffle(len(usable), seed=config.seed, reshuffle_each_iteration=True) if training else rows
    ds = clips(rows, tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=training))
    if config.cache:
        if training and config.sampling != "uniform":
            raise ValueError("cache=True would freeze the random frame sampling of a training pipeline.")
        ds = ds.cache()
    return ds.batch(config.batch_size, config.drop_remainder).prefetch(tf.data.AUTOTUNE)


def _is_ok(element, ok):
    return ok


def _drop_flag(element, ok):
    return element


def dataset_from_manifest(
    path, label_names=None, config=DataConfig(), training=False, split=None, strict=False, require=(), first_epoch=None
):
    """`read_manifest` + `build_dataset` with one shared report; returns `(dataset, report)`.

    Args:
        path: a manifest, or a shard folder (`kmm.data.shards`), read by `shard_dataset`.
        split: str or None. Keep only rows of this split (others are not counted as read).
        require: columns that must be non-empty, e.g. `("caption",)` for retrieval.
    """
    from kmm.data.manifest import read_manifest

    if is_shard_folder(path):
        return shard_dataset(path, label_names, config, training, split, require, first_epoch=first_epoch)

    report = DataReport()
    rows = read_manifest(path, report, label_names=label_names, strict=strict, require=require,
                         video_root=config.video_root)  # fmt: skip
    if split is not None:
        other = [r for r in rows if r.split != split]
        rows = [r for r in rows if r.split == split]
        report.read(-len(other))
    ds = build_dataset(rows, label_names, config, training=training, report=report, strict=strict,
                       first_epoch=first_epoch)  # fmt: skip
    return ds, report


def data_summary(source, video_root=None):
    """`{split: {"clips": n, "labels": {name: count}, "captioned": n}}` of a manifest (its
    rows) or a shard folder (its clips)."""
    from kmm.data.manifest import read_manifest

    if is_shard_folder(source):
        return read_marker(source)["stats"]
    stats = {}
    for row in read_manifest(source, video_root=video_root):
        split = stats.setdefault(row.split, {"clips": 0, "labels": {}, "captioned": 0})
        split["clips"] += 1
        split["captioned"] += bool(row.caption)
        if row.label:
            split["labels"][row.label] = split["labels"].get(row.label, 0) + 1
    return stats
