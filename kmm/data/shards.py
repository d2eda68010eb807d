"""Sharded TFRecord video data: `kmm data shard` writes it, `shard_dataset` reads it.

A shard folder holds `<split>-<i>-of-<n>.tfrecord` files of `tf.train.SequenceExample`s, one
per clip, in the layout of TF Model Garden's video input: the sequence feature
`image/encoded` (one JPEG per stored frame) and context features `clip/row`, `clip/video`,
`clip/caption`, `clip/text`, `clip/label/text`, `clip/length` (frames in the source video).
`shards.json`, written last, marks the folder complete and lists each file's clips and size.

Reading decodes in the graph (`tf.io.decode_jpeg` of the sampled frames only), interleaves
files in parallel, works on any `tf.io.gfile` path (local, `gs://`), and gives each worker
its own files (`AutoShardPolicy.FILE` semantics, done explicitly) or, with fewer files than
workers, its own records (DATA sharding, with a warning).

Example:

    >>> write_shards("data/manifest.csv", "data/shards", num_shards=8)  # doctest: +SKIP
    >>> ds, report = shard_dataset("data/shards", ["run", "jump"], DataConfig(), split="train")  # doctest: +SKIP
"""

import concurrent.futures
import json
import os
import warnings
from pathlib import Path

import tensorflow as tf
from tqdm.auto import tqdm

from kmm import specs
from kmm.data import sampling
from kmm.data.report import DataReport

MARKER = "shards.json"
FORMAT = "kmm-shards/1"
FRAMES_KEY = "image/encoded"
CONTEXT = {
    "clip/row": tf.io.FixedLenFeature([], tf.int64),
    "clip/video": tf.io.FixedLenFeature([], tf.string),
    "clip/caption": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "clip/text": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "clip/label/text": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "clip/length": tf.io.FixedLenFeature([], tf.int64),
}
DEFAULT_FRAMES, DEFAULT_SIZE, JPEG_QUALITY = 32, 128, 95


def is_shard_folder(path):
    """True when `path` is a folder with a complete shard set (its `shards.json`)."""
    return tf.io.gfile.exists(os.path.join(str(path), MARKER))


def read_marker(folder):
    """The `shards.json` of a complete shard folder; a clear error otherwise."""
    marker = os.path.join(str(folder), MARKER)
    if not tf.io.gfile.exists(marker):
        raise FileNotFoundError(
            f"{folder}: no {MARKER}, so not a complete shard folder; write one with "
            f"`kmm data shard MANIFEST --out {folder}`."
        )
    with tf.io.gfile.GFile(marker) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{marker}: format {meta.get('format')!r}, expected {FORMAT!r}.")
    return meta


def _example(row, frames, length, quality):
    import cv2

    def bytes_feature(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))

    context = tf.train.Features(feature={
        "clip/row": tf.train.Feature(int64_list=tf.train.Int64List(value=[row.index])),
        "clip/video": bytes_feature(row.video), "clip/caption": bytes_feature(row.caption),
        "clip/text": bytes_feature(row.text), "clip/label/text": bytes_feature(row.label),
        "clip/length": tf.train.Feature(int64_list=tf.train.Int64List(value=[length])),
    })  # fmt: skip
    jpegs = []
    for frame in frames:
        ok, data = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError(f"{row.video}: JPEG encoding failed")
        jpegs.append(tf.train.Feature(bytes_list=tf.train.BytesList(value=[data.tobytes()])))
    lists = tf.train.FeatureLists(feature_list={FRAMES_KEY: tf.train.FeatureList(feature=jpegs)})
    return tf.train.SequenceExample(context=context, feature_lists=lists).SerializeToString()


def write_shards(manifest, out_dir, num_shards=8, frames=DEFAULT_FRAMES, size=DEFAULT_SIZE, video_root=None,
                 quality=JPEG_QUALITY, workers=4, progress=True):  # fmt: skip
    """Decodes every usable manifest row once into `num_shards` TFRecord files per split.

    Each clip keeps `frames` uniformly sampled frames, centre-cropped to `size` px, as JPEG
    (`quality`); training samples its `num_frames` from those. Clips go round-robin to the
    files of their split, so files hold equal counts (a split with fewer clips than
    `num_shards` gets one file per clip). Unusable rows are skipped, counted and listed.

    Returns the `DataReport`; the folder's `shards.json` records it too.
    """
    from kmm.data.decoder import probe_rows, read_frames
    from kmm.data.manifest import read_manifest
    from kmm.data.video_io import VideoDecodeError

    if num_shards < 1 or frames < 1 or size < 8:
        raise ValueError(f"need num_shards >= 1, frames >= 1, size >= 8; got {num_shards}, {frames}, {size}.")
    out_dir = str(out_dir)
    tf.io.gfile.makedirs(out_dir)
    marker = os.path.join(out_dir, MARKER)
    if tf.io.gfile.exists(marker):  # no marker while rewriting, and no files of the old set
        tf.io.gfile.remove(marker)
    for old in tf.io.gfile.glob(os.path.join(out_dir, "*.tfrecord")):
        tf.io.gfile.remove(old)
    report = DataReport()
    usable = probe_rows(read_manifest(manifest, report, video_root=video_root), report)

    def encode(item):
        row, info = item
        try:
            clip = read_frames(info.path, sampling.uniform(info.num_frames, frames), size, info=info)
            return row, _example(row, clip, info.num_frames, quality), None
        except (VideoDecodeError, ValueError) as e:
            return row, None, e

    splits = {}
    for row, info in usable:
        splits.setdefault(row.split or "all", []).append((row, info))
    meta = {"format": FORMAT, "frames": frames, "size": size, "jpeg_quality": quality, "splits": {}, "stats": {}}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for split, items in sorted(splits.items()):
            n = min(num_shards, len(items))
            names = [f"{split}-{i:05d}-of-{n:05d}.tfrecord" for i in range(n)]
            files = [{"file": name, "rows": [], "no_caption": [], "bytes": 0} for name in names]
            writers = [tf.io.TFRecordWriter(os.path.join(out_dir, name + ".tmp")) for name in names]
            kept, stats = 0, {"clips": 0, "labels": {}, "captioned": 0}
            for row, record, error in tqdm(pool.map(encode, items), total=len(items), desc=f"shard {split}",
                                           unit="clip", disable=not progress):  # fmt: skip
                if error is not None:
                    report.skip(row.index, row.video, getattr(error, "reason", "undecodable"), str(error))
                    continue
                report.used()
                entry = files[kept % n]
                writers[kept % n].write(record)
                entry["rows"].append(row.index)
                if not row.caption:
                    entry["no_caption"].append(row.index)
                kept += 1
                stats["clips"] += 1
                stats["captioned"] += bool(row.caption)
                if row.label:
                    stats["labels"][row.label] = stats["labels"].get(row.label, 0) + 1
            for writer, entry in zip(writers, files, strict=True):
                writer.close()
                path = os.path.join(out_dir, entry["file"])
                tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
                entry["bytes"] = tf.io.gfile.stat(path).length
            meta["splits"][split] = [f for f in files if f["rows"]]
            meta["stats"][split] = stats
            for empty in (f for f in files if not f["rows"]):
                tf.io.gfile.remove(os.path.join(out_dir, empty["file"]))
    meta["report"] = {"rows_read": report.rows_read, "rows_used": report.rows_used,
                      "skipped": [s.__dict__ for s in report.skipped]}  # fmt: skip
    with tf.io.gfile.GFile(marker + ".tmp", "w") as f:
        f.write(json.dumps(meta, indent=1) + "\n")
    tf.io.gfile.rename(marker + ".tmp", marker, overwrite=True)
    return report


def split_files(folder, split, report, require=()):
    """The intact files of `split` (full paths) with their entries; a missing or truncated
    file is skipped with each of its clips recorded in `report` (not fatal)."""
    meta = read_marker(folder)
    names = sorted(meta["splits"]) if split is None else [split]
    missing = [s for s in names if s not in meta["splits"]]
    if missing:
        raise ValueError(f"{folder}: no split {missing[0]!r}; it has {sorted(meta['splits'])}.")
    intact = []
    for entry in (e for s in names for e in meta["splits"][s]):
        path = os.path.join(str(folder), entry["file"])
        report.read(len(entry["rows"]))
        size = tf.io.gfile.stat(path).length if tf.io.gfile.exists(path) else -1
        if size != entry["bytes"]:
            problem = "missing" if size < 0 else f"{size} bytes of {entry['bytes']}"
            for row in entry["rows"]:
                report.skip(row, entry["file"], "bad_shard", f"shard {problem}")
            continue
        lacking = set(entry["no_caption"]) if "caption" in require else set()
        for row in sorted(lacking):
            report.skip(row, entry["file"], "empty_caption", "'caption' is empty but required")
        report.used(len(entry["rows"]) - len(lacking))
        intact.append((path, entry))
    return meta, intact


def _graph_indices(length, num_frames, strategy, seed, stride):
    """`kmm.data.sampling` in the graph: the same indices for `uniform` and centred `dense`."""
    length_f = tf.cast(length, tf.float64)
    edges = tf.linspace(tf.constant(0.0, tf.float64), length_f, num_frames + 1)
    if strategy == "uniform":
        idx = tf.cast((edges[:-1] + edges[1:]) / 2, tf.int64)
    elif strategy == "random_segment":
        low = tf.floor(edges[:-1])
        high = tf.maximum(tf.math.ceil(edges[1:]), low + 1)
        u = tf.random.stateless_uniform([num_frames], seed, dtype=tf.float64)
        idx = tf.cast(low + tf.floor(u * (high - low)), tf.int64)
    elif strategy == "dense":
        slack = tf.maximum(length - ((num_frames - 1) * stride + 1), 0)
        if seed is None:
            start = slack // 2
        else:
            start = tf.random.stateless_uniform([], seed, 0, slack + 1, dtype=tf.int64)
        idx = start + stride * tf.range(num_frames, dtype=tf.int64)
    else:
        raise ValueError(f"Unknown sampling strategy {strategy!r}; choose from {list(sampling.STRATEGIES)}.")
    return tf.minimum(idx, length - 1)


def worker_files(files, num_workers, worker_index):
    """`(files, data_shard)`: this worker's files, FILE-sharded when there are at least as
    many files as workers; else all files and `data_shard=True` (each worker then keeps every
    `num_workers`-th record), with a warning: every worker reads every file."""
    if num_workers <= 1:
        return files, False
    if len(files) >= num_workers:
        return files[worker_index::num_workers], False
    warnings.warn(
        f"{len(files)} shard file(s) for {num_workers} workers: sharding by record (each worker reads every "
        f"file). Write at least {num_workers} files per split (`kmm data shard --shards`).",
        stacklevel=3,
    )
    return files, True


def shard_dataset(folder, label_names=None, config=None, training=False, split=None, require=(),
                  num_workers=1, worker_index=0, report=None, first_epoch=None):  # fmt: skip
    """Shard folder -> batched `tf.data.Dataset` with `build_dataset`'s element spec.

    Args:
        folder: a shard folder (`write_shards`), local or any `tf.io.gfile` path.
        label_names, training, require: as for `kmm.data.pipeline.build_dataset` /
            `dataset_from_manifest`. `config.sampling` picks the `config.num_frames` from the
            stored frames (`uniform`, `random_segment` or `dense`).
        split: str or None (every split).
        num_workers, worker_index: this input pipeline's share (`worker_files`); e.g. from a
            `tf.distribute.InputContext`'s `num_input_pipelines` and `input_pipeline_id`.
        first_epoch: int or None. With `training`: an endless stream of epochs from this one,
            as `build_dataset`'s: each epoch's file order from `(seed, epoch)`, its record
            shuffle and frame draws from the seed, so a resumed fit reads what an
            uninterrupted one read in that epoch.

    Returns:
        `(dataset, report)`.
    """
    from kmm.data.config import DataConfig, stream_of_epochs

    config = config or DataConfig()
    report = report if report is not None else DataReport()
    meta, intact = split_files(folder, split, report, require)
    if not intact:
        raise ValueError(f"No usable clips in {folder} (split {split}):\n{report.summary()}")
    files, data_shard = worker_files([path for path, _ in intact], num_workers, worker_index)
    labels = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(label_names or []) or [""], tf.string),
            tf.range(max(len(label_names or []), 1), dtype=tf.int32),
        ),
        default_value=-1,
    )
    size, stored = config.frame_size, meta["size"]

    def records(files_ds):
        ds = files_ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)  # fmt: skip
        return ds.shard(num_workers, worker_index) if data_shard else ds

    def parse(record, seed):
        context, lists = tf.io.parse_single_sequence_example(
            record, CONTEXT, {FRAMES_KEY: tf.io.FixedLenSequenceFeature([], tf.string)}
        )
        jpegs = lists[FRAMES_KEY]
        strategy = config.sampling
        if training:
            sample_seed = seed
        elif strategy == "random_segment":  # evaluation is deterministic: a fixed draw per row
            sample_seed = tf.stack([context["clip/row"], tf.constant(0, tf.int64)])
        else:
            sample_seed = None  # uniform, or dense centred
        idx = _graph_indices(tf.shape(jpegs, out_type=tf.int64)[0], config.num_frames, strategy, sample_seed,
                             config.dense_stride)  # fmt: skip
        frames = tf.map_fn(lambda j: tf.io.decode_jpeg(j, channels=3), tf.gather(jpegs, idx),
                           fn_output_signature=tf.TensorSpec([stored, stored, 3], tf.uint8))  # fmt: skip
        if size != stored:
            frames = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(frames, [size, size], antialias=True)), 0, 255),
                             tf.uint8)  # fmt: skip
        frames.set_shape([config.num_frames, size, size, 3])
        return {
            specs.FRAMES: frames,
            specs.TEXT: context["clip/text"],
            specs.CAPTION: context["clip/caption"],
            specs.LABEL_ID: labels.lookup(context["clip/label/text"]),
            specs.ROW: context["clip/row"],
        }

    def clips(records_ds):
        ds = records_ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if "caption" in require:
            ds = ds.filter(lambda element: tf.strings.length(element[specs.CAPTION]) > 0)
        return ds.batch(config.batch_size, config.drop_remainder)

    if training and first_epoch is not None:
        names = tf.constant(files)

        def epoch_clips(key):
            order = tf.random.experimental.stateless_shuffle(tf.range(len(files), dtype=tf.int64), seed=key)
            ds = records(tf.data.Dataset.from_tensor_slices(tf.gather(names, order)))
            ds = ds.batch(256).enumerate().map(lambda i, block: _permuted(block, key + tf.stack([0, i + 1]))).unbatch()
            return clips(ds.enumerate().map(lambda i, record: (record, tf.stack([key[0] * 1_000_003 + key[1], i]))))

        ds = stream_of_epochs(config.seed, first_epoch, epoch_clips)
    else:
        ds = tf.data.Dataset.from_tensor_slices(files)
        if training:
            ds = ds.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
        ds = records(ds)
        if training:
            ds = ds.shuffle(256, seed=config.seed, reshuffle_each_iteration=True)
        seeds = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=training).batch(2)
        ds = clips(tf.data.Dataset.zip(ds, seeds))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF  # sharded above
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE), report


def _permuted(block, key):
    """`block`'s elements in an order drawn from `key` (a shuffle buffer without state)."""
    return tf.gather(block, tf.argsort(tf.random.stateless_uniform(tf.shape(block)[:1], seed=key)))


def check_shards(folder, split=None, progress=True):
    """`kmm data check` for a shard folder: reads every record (CRC-checked) and decodes every
    frame; a bad record or file is skipped with its clips listed. Returns the `DataReport`."""
    report = DataReport()
    meta, intact = split_files(folder, split, report)
    for path, entry in tqdm(intact, desc=f"check {Path(str(folder)).name}", unit="file", disable=not progress):
        seen = 0
        try:
            for record in tf.data.TFRecordDataset(path):
                context, lists = tf.io.parse_single_sequence_example(
                    record, CONTEXT, {FRAMES_KEY: tf.io.FixedLenSequenceFeature([], tf.string)}
                )
                for jpeg in lists[FRAMES_KEY]:
                    tf.io.decode_jpeg(jpeg)
                seen += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            lost = entry["rows"][seen:]
            report.unuse(len(lost))
            for row in lost:
                report.skip(row, entry["file"], "bad_shard", f"record {seen}: {str(e).splitlines()[0]}")
    return report
