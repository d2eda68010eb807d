"""Stage-1 features: every split's clips and texts run once through the frozen encoders.

Per split, `features/<split>.npz` holds `video_features (n, frames, dim)` (float16),
`text_tokens (n, max_text_tokens, text_dim)` (float16) with `text_padding_mask`,
`caption_embedding (n, text_dim)`, `caption_tokens (n, max_caption_tokens, text_dim)`
(float16) with `caption_padding_mask`, `label_id`, `row`, `text`, `caption`; optionally
`caption_group` and, for the train split, the `reversed_*` captions of its clips played
backwards (see `extract_features`). Texts are encoded once per distinct string.
`features/features.json` records how they were made (manifest content, encoder builds,
sampling) and each file's sha256, so a cache built from other data or encoders, or a file
cut short or changed, is rebuilt rather than silently reused. The marker is removed before
a rebuild and written last; each file is written under a temporary name and renamed, so a
killed extraction never leaves a cache that looks complete.

Training batches come from `features_dataset`.
"""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from kmm import specs, tasks
from kmm.data.pipeline import DataConfig, dataset_from_manifest
from kmm.models.towers import caption_keys
from kmm.paths import file_sha256, replacing
from kmm.specs import (
    CAPTION_EMBEDDING,
    CAPTION_PADDING_MASK,
    CAPTION_TOKENS,
    VIDEO_FEATURES,
)

REVERSED = "reversed_"  # prefix of the cached captions of the clips played backwards
CAPTION_GROUP = "caption_group"  # optional key shared by captions that say the same thing
NEIGHBOURS = 16  # candidates per anchor for neighbour batches (see features_dataset)


def _content_digest(manifest):
    """sha256 of the manifest's bytes and of each video's size and modification time, so a
    regenerated data set (same paths, new files) is not mistaken for the cached one. A shard
    folder: its `shards.json`, which lists every file's size (rewritten with every write)."""
    from kmm.data.manifest import read_manifest
    from kmm.data.shards import is_shard_folder, read_marker

    if is_shard_folder(manifest):
        return hashlib.sha256(json.dumps(read_marker(manifest), sort_keys=True).encode()).hexdigest()

    digest = hashlib.sha256(Path(manifest).read_bytes())
    for row in read_manifest(manifest, video_root="/"):  # every row: which ones are used is keyed separately
        try:
            stat = os.stat(row.video)
            digest.update(f"{row.video}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{row.video}\0missing\n".encode())
    return digest.hexdigest()


def _encoder_identity(handle):
    """What a cached feature depends on besides the handle's name: the built encoder's
    manifest (`kmm://`) or its SavedModel's sha256 (a local folder). URLs name a fixed
    TF-Hub version already."""
    from kmm.encoders.reusable_savedmodel import read_manifest
    from kmm.hub.handles import is_remote, resolve_handle

    if is_remote(handle):
        return handle

    folder = Path(resolve_handle(handle))
    manifest = read_manifest(folder)
    if manifest.get("format_version") is not None:
        return {k: manifest.get(k) for k in ("name", "kmm_version", "format_version", "source")}
    return file_sha256(folder / "saved_model.pb")


def _signature(config, manifest, video_root=None):
    return {
        "manifest": str(Path(manifest).resolve()),
        "video_root": None if video_root is None else str(Path(video_root).resolve()),
        "content": _content_digest(manifest),
        "encoder_builds": [_encoder_identity(config.frame_encoder), _encoder_identity(config.text_encoder)],
        "frame_encoder": config.frame_encoder,
        "frame_convention": config.frame_convention,
        "text_encoder": config.text_encoder,
        "text_convention": config.text_convention,
        "num_frames": config.num_frames,
        "frame_size": config.frame_size,
        "max_text_tokens": config.max_text_tokens,
        "max_caption_tokens": config.max_caption_tokens,
    }


def encode_texts(text_encoder, texts, max_tokens, batch_size=64):
    """Distinct strings -> `{string: (tokens (max_tokens, d), mask (max_tokens,), embedding (d,))}`."""
    unique = sorted(set(texts))
    table = {}
    for start in range(0, len(unique), batch_size):
        chunk = unique[start : start + batch_size]
        out = text_encoder(tf.constant(chunk))
        tokens = out[specs.TEXT_TOKENS].numpy()[:, :max_tokens]
        mask = out[specs.TEXT_PADDING_MASK].numpy()[:, :max_tokens]
        pad = max_tokens - tokens.shape[1]
        tokens = np.pad(tokens, ((0, 0), (0, pad), (0, 0)))
        mask = np.pad(mask, ((0, 0), (0, pad)))
        for i, s in enumerate(chunk):
            table[s] = (tokens[i], mask[i], out[specs.TEXT_EMBEDDING].numpy()[i])
    return table


def extract_features(manifest, config, out_dir, splits, batch_size=32, force=False, progress=True, encoders=None,
                     reverse_caption=None, caption_group=None, video_root=None):  # fmt: skip
    """Writes `out_dir/<split>.npz` for each split; returns `{split: (path, DataReport)}`.

    `encoders`: optional `(video_encoder, text_encoder)` layers to use instead of fresh ones
    from the config's handles (e.g. fine-tuned ones); such features are never reused from cache.
    `reverse_caption`: optional function from a caption to the caption of the same clip
    played backwards (e.g. `kmm.data.synth.vocab.reverse_caption`); the `train` split then
    also caches those captions (`reversed_caption_*`), for time-reversal augmentation.
    `caption_group`: optional function from a caption to a key that captions saying the
    same thing share (e.g. `kmm.data.synth.vocab.caption_content`), cached as
    `caption_group` (and `reversed_caption_group`): such clips are not each other's
    negatives in training (`features_dataset`). Without it, equal captions form a group.
    `video_root`: the folder every video must be in (`kmm.data.manifest.read_manifest`;
    default: the manifest's folder).
    """
    from kmm.models.builder import make_encoders

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / "features.json"
    signature = _signature(config, manifest, video_root)
    for name, function in (("reverse_caption", reverse_caption), ("caption_group", caption_group)):
        if function is not None:
            signature[name] = f"{function.__module__}.{function.__qualname__}"
    if encoders is not None:
        signature["encoders"] = "fine-tuned in this run"
        force = True
    if not force and _cache_is_valid(out_dir, signature, splits, progress):
        return {s: (out_dir / f"{s}.npz", None) for s in splits}
    meta_path.unlink(missing_ok=True)  # no marker while the files are being rewritten
    video_encoder, text_encoder = encoders or make_encoders(config)
    video_fn = tf.function(lambda frames: video_encoder(frames)[specs.VIDEO_TOKENS], reduce_retracing=True)
    data_config = DataConfig(config.num_frames, config.frame_size, batch_size=batch_size, video_root=video_root)
    results = {}
    for split in splits:
        require = ("caption",) if tasks.needs_captions(config) else ()
        ds, report = dataset_from_manifest(manifest, config.labels or None, data_config, split=split, require=require)
        columns = {k: [] for k in (VIDEO_FEATURES, specs.LABEL_ID, specs.ROW, specs.TEXT, specs.CAPTION)}
        for batch in tqdm(ds, desc=f"features {split}", unit="batch", disable=not progress):
            columns[VIDEO_FEATURES].append(video_fn(batch[specs.FRAMES]).numpy().astype(np.float16))
            for key in (specs.LABEL_ID, specs.ROW, specs.TEXT, specs.CAPTION):
                columns[key].append(batch[key].numpy())
        arrays = {k: np.concatenate(v) for k, v in columns.items()}
        texts = [t.decode() for t in arrays[specs.TEXT]]
        captions = [c.decode() for c in arrays[specs.CAPTION]]
        cut = config.max_text_tokens
        backwards = [reverse_caption(c) for c in captions] if reverse_caption is not None and split == "train" else []
        table = encode_texts(text_encoder, texts + captions + backwards, max(cut, config.max_caption_tokens))
        arrays[specs.TEXT_TOKENS] = np.stack([table[t][0][:cut] for t in texts]).astype(np.float16)
        arrays[specs.TEXT_PADDING_MASK] = np.stack([table[t][1][:cut] for t in texts])
        arrays[CAPTION_EMBEDDING] = np.stack([table[c][2] for c in captions]).astype(np.float32)
        caption_cut = config.max_caption_tokens
        arrays[CAPTION_TOKENS] = np.stack([table[c][0][:caption_cut] for c in captions]).astype(np.float16)
        arrays[CAPTION_PADDING_MASK] = np.stack([table[c][1][:caption_cut] for c in captions])
        if backwards:
            arrays.update(_reversed_captions(table, backwards, caption_cut))
            arrays[REVERSED + specs.CAPTION] = np.array(backwards, dtype=bytes)
        if caption_group is not None:
            arrays[CAPTION_GROUP] = np.array([caption_group(c) for c in captions], dtype=bytes)
            if backwards:
                arrays[REVERSED + CAPTION_GROUP] = np.array([caption_group(c) for c in backwards], dtype=bytes)
        arrays[specs.TEXT] = arrays[specs.TEXT].astype(bytes)
        arrays[specs.CAPTION] = arrays[specs.CAPTION].astype(bytes)
        path = out_dir / f"{split}.npz"
        _write_npz(path, arrays)
        results[split] = (path, report)
    checksums = {f"{s}.npz": file_sha256(out_dir / f"{s}.npz") for s in splits}
    meta = {"signature": signature, "sha256": checksums, "config": dataclasses.asdict(config)}
    with replacing(meta_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return results


def _write_npz(path, arrays):
    """`np.savez` to a temporary name, then renamed: `path` is complete or absent."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


def _cache_is_valid(out_dir, signature, splits, progress):
    """True when `features.json` matches `signature` and every split's file its sha256."""
    meta_path = out_dir / "features.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if meta.get("signature") != signature:
        return False
    checksums = meta.get("sha256", {})
    for split in splits:
        path = out_dir / f"{split}.npz"
        if path.name not in checksums or not path.exists() or file_sha256(path) != checksums[path.name]:
            if progress:
                print(f"features: {path} is missing, truncated or changed; extracting again.")
            return False
    return True


def _reversed_captions(table, captions, cut):
    return {
        REVERSED + CAPTION_EMBEDDING: np.stack([table[c][2] for c in captions]).astype(np.float32),
        REVERSED + CAPTION_TOKENS: np.stack([table[c][0][:cut] for c in captions]).astype(np.float16),
        REVERSED + CAPTION_PADDING_MASK: np.stack([table[c][1][:cut] for c in captions]),
    }


def load_features(path):
    """Reads a split's `.npz` into a dict of numpy arrays (features as float32)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    for key in (VIDEO_FEATURES, specs.TEXT_TOKENS, CAPTION_TOKENS, REVERSED + CAPTION_TOKENS):
        if key in arrays:
            arrays[key] = arrays[key].astype(np.float32)
    return arrays


def model_inputs(arrays, config):
    """The arrays `build_feature_model` takes for `config` (the caption as its text tower wants it)."""
    keys = (VIDEO_FEATURES, specs.TEXT_TOKENS, specs.TEXT_PADDING_MASK, *caption_keys(config))
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise KeyError(f"The cached features lack {missing}; rebuild them (delete the features folder).")
    return {k: arrays[k] for k in keys}


def reversed_label_ids(labels, time_reversal):
    """Label id -> the id of the label a time-reversed clip has (-1: not reversible).

    `time_reversal`: `(label, reversed_label)` pairs, e.g. `("move_left", "move_right")`,
    `("rotate", "rotate")`; a pair holds both ways.
    """
    index = {label: i for i, label in enumerate(labels)}
    ids = np.full(len(labels), -1, np.int32)
    for a, b in time_reversal:
        for name in (a, b):
            if name not in index:
                raise ValueError(f"time_reversal names {name!r}, which is not one of the labels {list(labels)}")
        ids[index[a]], ids[index[b]] = index[b], index[a]
    return ids


def reversed_caption_inputs(arrays, config):
    """The text tower's inputs for the time-reversed clips' captions, or `{}` if not cached."""
    keys = [REVERSED + k for k in caption_keys(config)]
    if not all(k in arrays for k in keys):
        return {}
    return {k[len(REVERSED) :]: arrays[k] for k in keys}


def caption_group_ids(arrays):
    """`(groups, reversed_groups)`: float32 ids, equal for clips whose captions say the same thing.

    Groups come from the cached `caption_group` keys, else from the caption strings, else
    one group per clip. `reversed_groups` (for the clips played backwards; None if their
    captions are not cached) share the id space, so a reversed clip groups with the
    forward clips that its reversed caption describes.
    """
    n = len(arrays[specs.LABEL_ID])
    key = CAPTION_GROUP if CAPTION_GROUP in arrays else specs.CAPTION
    if key not in arrays:
        return np.arange(n, dtype=np.float32), None
    keys = [arrays[key]] + ([arrays[REVERSED + key]] if REVERSED + key in arrays else [])
    ids = np.unique(np.concatenate(keys), return_inverse=True)[1].reshape(-1).astype(np.float32)
    return ids[:n], (ids[n:] if len(keys) > 1 else None)


def caption_neighbours(embeddings, groups, k=NEIGHBOURS, block=1024):
    """`(n, k)` indices of each caption's k most similar captions (cosine), other groups only."""
    e = np.asarray(embeddings, np.float32)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    k = min(k, len(e) - 1)
    out = np.empty((len(e), k), np.int64)
    for start in range(0, len(e), block):
        sim = e[start : start + block] @ e.T
        sim[groups[start : start + block, None] == groups[None, :]] = -np.inf  # itself and its group
        part = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, part, axis=1), axis=1)
        out[start : start + block] = np.take_along_axis(part, order, axis=1)
    return out


def features_dataset(arrays, config, batch_size=64, training=False, seed=0, time_reversal=(), neighbours=0,
                     reversal_pairs=0, first_epoch=0):  # fmt: skip
    """`(inputs, targets)` batches for `build_feature_model` (see `training_targets`).

    Retrieval's target is each clip's caption group (`caption_group_ids`): clips of one
    group are not each other's negatives. In training, batches are reshuffled each epoch,
    with `len // batch_size` full batches an epoch (each repetition of the dataset is the
    next epoch, drawn from `(seed, epoch)`, starting at `first_epoch`: a resumed fit sees
    the batches an uninterrupted one would), and:

    `time_reversal`: `(label, reversed_label)` pairs. Half of the clips whose label has a
    pair play backwards (their frame features reversed) with the paired label. If the
    arrays hold the reversed clips' captions (`extract_features(..., reverse_caption=...)`),
    those replace the captions; otherwise the caption no longer describes the clip, so such
    clips get weight 0 in the retrieval loss (they still serve as negatives). Batches are
    then `(inputs, targets, sample_weights)`.

    `neighbours` (k > 1): hard negatives. Each batch is `batch_size / k` random anchors,
    each with `k - 1` clips drawn from its `NEIGHBOURS` nearest captions of other groups
    (the text encoder's caption embeddings), e.g. the same objects doing something else.

    `reversal_pairs` (p > 0, with `time_reversal`): `p` clips of each batch play both ways,
    each with its own caption, so "moves left" and "moves right" of the very same objects
    are each other's negatives. The twins are taken from the batch's clips whose reversed
    caption says something else (`rotate` played backwards still rotates); a batch is
    `batch_size - p` random clips plus the `p` twins.
    """
    inputs = model_inputs(arrays, config)
    labels = np.asarray(arrays[specs.LABEL_ID])
    groups, reversed_groups = caption_group_ids(arrays)
    if not training:
        targets = tasks.targets(config, labels, groups)
        return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    n = len(labels)
    if n < batch_size:
        raise ValueError(f"Training needs at least one full batch: {n} clips < batch_size {batch_size}.")
    if neighbours > 1 and batch_size % neighbours:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of neighbours ({neighbours}).")
    if reversal_pairs and (not time_reversal or neighbours > 1 or not 0 < reversal_pairs <= batch_size // 2):
        raise ValueError(
            f"reversal_pairs={reversal_pairs} needs time_reversal, no neighbours, and at most batch_size / 2 "
            f"({batch_size // 2})"
        )
    table = None
    if neighbours > 1:
        table = caption_neighbours(arrays[CAPTION_EMBEDDING], groups)
    reversed_ids = reversed_label_ids(config.labels, time_reversal) if time_reversal else None
    reversible = reversed_ids[labels] >= 0 if time_reversal else np.zeros(n, bool)
    reversed_captions = reversed_caption_inputs(arrays, config) if time_reversal else {}
    if reversed_captions and reversed_groups is None:  # captions cached, their groups not: one each
        reversed_groups = n + np.arange(n, dtype=np.float32)
    twin_worthy = None
    if reversal_pairs:  # clips whose reversal says something else: another caption group, else another label
        changes = reversed_groups != groups if reversed_captions else reversed_ids[labels] != labels
        twin_worthy = reversible & changes
    batches = _IndexBatches(n, batch_size, seed, table, neighbours, reversible, reversal_pairs, twin_worthy,
                            first_epoch)  # fmt: skip
    data = {
        "inputs": inputs, "reversed": reversed_captions, "labels": labels, "groups": groups,
        "reversed_labels": reversed_ids[labels].astype(labels.dtype) if time_reversal else labels,
        "reversed_groups": reversed_groups if reversed_captions else groups,
    }  # fmt: skip
    data = tf.nest.map_structure(tf.constant, data)
    weighted = bool(time_reversal)
    signature = (tf.TensorSpec((batch_size,), tf.int64), tf.TensorSpec((batch_size,), tf.bool))
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n // batch_size))
    ds = ds.map(lambda index, flip: _gather_batch(data, index, flip, config.tasks, weighted))
    return ds.prefetch(tf.data.AUTOTUNE)


class _IndexBatches:
    """Callable for `Dataset.from_generator`: one epoch of `(indices, flip)` batches per call,
    a new shuffle each epoch, drawn from `(seed, epoch)`."""

    def __init__(self, n, batch_size, seed, table, neighbours, reversible, pairs=0, changes=None, first_epoch=0):
        self.n, self.batch_size, self.table, self.neighbours = n, batch_size, table, neighbours
        self.reversible, self.seed, self.epoch = reversible, seed, first_epoch
        self.pairs, self.changes = pairs, changes

    def __call__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.n)
        anchors = self.batch_size // self.neighbours if self.table is not None else self.batch_size - self.pairs
        for step in range(self.n // self.batch_size):
            index = order[step * anchors : (step + 1) * anchors]
            if self.table is not None:
                picks = rng.permuted(self.table[index], axis=1)[:, : self.neighbours - 1]
                index = np.concatenate([index[:, None], picks], axis=1).reshape(-1)
            flip = (rng.random(len(index)) < 0.5) & self.reversible[index]
            if self.pairs:  # the first `pairs` clips whose reversal says something else, both ways
                twins = np.argsort(~self.changes[index], kind="stable")[: self.pairs]
                index = np.concatenate([index, index[twins]])
                flip = np.concatenate([flip, ~flip[twins] & self.reversible[index[twins]]])
            yield index, flip


def _gather_batch(data, index, flip, task_names, weighted):
    """A training batch: rows `index`, the `flip`ped ones played backwards (frames,
    label, caption and caption group)."""
    x = {k: tf.gather(v, index) for k, v in data["inputs"].items()}
    x[VIDEO_FEATURES] = tf.where(flip[:, None, None], tf.reverse(x[VIDEO_FEATURES], [1]), x[VIDEO_FEATURES])
    for key, value in data["reversed"].items():
        backwards = tf.gather(value, index)
        x[key] = tf.where(tf.reshape(flip, [-1] + [1] * (backwards.shape.rank - 1)), backwards, x[key])
    labels = tf.where(flip, tf.gather(data["reversed_labels"], index), tf.gather(data["labels"], index))
    groups = tf.where(flip, tf.gather(data["reversed_groups"], index), tf.gather(data["groups"], index))
    y = tasks.targets(task_names, labels, groups)
    if not weighted:
        return x, y
    # A reversed clip whose reversed caption is not cached has no caption that describes it.
    keep = tf.ones_like(groups) if data["reversed"] else tf.where(flip, 0.0, 1.0)
    weights = tasks.caption_weights(task_names, keep, tf.ones_like(groups))
    return x, y, weights
