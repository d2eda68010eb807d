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

Training batches come from `kmm.train.batches.features_dataset`.
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
from kmm.features.arrays import CAPTION_GROUP, REVERSED
from kmm.paths import file_sha256, replacing
from kmm.specs import CAPTION_EMBEDDING, CAPTION_PADDING_MASK, CAPTION_TOKENS, VIDEO_FEATURES


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


def cached_manifest(feature_dir):
    """The manifest a feature cache was extracted from (its rows are the cached `row` ids)."""
    meta = Path(feature_dir) / "features.json"
    if not meta.exists():
        raise FileNotFoundError(f"{feature_dir}: no features.json; the feature cache is missing or incomplete.")
    return Path(json.loads(meta.read_text())["signature"]["manifest"])


def load_features(path):
    """Reads a split's `.npz` into a dict of numpy arrays (features as float32)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    for key in (VIDEO_FEATURES, specs.TEXT_TOKENS, CAPTION_TOKENS, REVERSED + CAPTION_TOKENS):
        if key in arrays:
            arrays[key] = arrays[key].astype(np.float32)
    return arrays
