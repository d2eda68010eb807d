"""Stage-1 features: every split's clips and texts run once through the frozen encoders.

Per split, `features/<split>.npz` holds `video_features (n, frames, dim)` (float16),
`text_tokens (n, max_text_tokens, text_dim)` (float16) with `text_padding_mask`,
`caption_embedding (n, text_dim)`, `caption_tokens (n, max_caption_tokens, text_dim)`
(float16) with `caption_padding_mask`, `label_id`, `row`, `text`, `caption`. Texts are encoded
once per distinct string. `features/features.json` records how they were made, so a cache
built with other encoders or sampling is rebuilt rather than silently reused.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from kmm import specs
from kmm.data.pipeline import DataConfig, dataset_from_manifest
from kmm.models.towers import CAPTION_EMBEDDING, CAPTION_PADDING_MASK, CAPTION_TOKENS, VIDEO_FEATURES, caption_keys

REVERSED = "reversed_"  # prefix of the cached captions of the clips played backwards


def _signature(config, manifest):
    return {
        "manifest": str(Path(manifest).resolve()),
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
                     reverse_caption=None):  # fmt: skip
    """Writes `out_dir/<split>.npz` for each split; returns `{split: (path, DataReport)}`.

    `encoders`: optional `(video_encoder, text_encoder)` layers to use instead of fresh ones
    from the config's handles (e.g. fine-tuned ones); such features are never reused from cache.
    `reverse_caption`: optional function from a caption to the caption of the same clip
    played backwards (e.g. `kmm.data.synth.vocab.reverse_caption`); the `train` split then
    also caches those captions (`reversed_caption_*`), for time-reversal augmentation.
    """
    from kmm.models.builder import make_encoders

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / "features.json"
    signature = _signature(config, manifest)
    if reverse_caption is not None:
        signature["reverse_caption"] = f"{reverse_caption.__module__}.{reverse_caption.__qualname__}"
    if encoders is not None:
        signature["encoders"] = "fine-tuned in this run"
        force = True
    if not force and meta_path.exists() and json.loads(meta_path.read_text()).get("signature") == signature:
        if all((out_dir / f"{s}.npz").exists() for s in splits):
            return {s: (out_dir / f"{s}.npz", None) for s in splits}
    video_encoder, text_encoder = encoders or make_encoders(config)
    video_fn = tf.function(lambda frames: video_encoder(frames)[specs.VIDEO_TOKENS], reduce_retracing=True)
    data_config = DataConfig(config.num_frames, config.frame_size, batch_size=batch_size)
    results = {}
    for split in splits:
        require = ("caption",) if "retrieval" in config.tasks else ()
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
        arrays[specs.TEXT] = arrays[specs.TEXT].astype(bytes)
        arrays[specs.CAPTION] = arrays[specs.CAPTION].astype(bytes)
        path = out_dir / f"{split}.npz"
        np.savez(path, **arrays)
        results[split] = (path, report)
    meta_path.write_text(json.dumps({"signature": signature, "config": dataclasses.asdict(config)}, indent=2))
    return results


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


def training_targets(tasks, label_ids, zeros):
    """Targets for the outputs the tasks train: label ids for `logits`, and placeholders for
    `similarity` (InfoNCE uses the diagonal) and `matching` (the pairs' layout says which
    match). `zeros` makes a placeholder."""
    targets = {}
    if "classification" in tasks:
        targets["logits"] = label_ids
    if "retrieval" in tasks:
        targets["similarity"] = zeros(label_ids)
    if "matching" in tasks:
        targets["matching"] = zeros(label_ids)
    return targets


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


def features_dataset(arrays, config, batch_size=64, training=False, seed=0, time_reversal=()):
    """`(inputs, targets)` batches for `build_feature_model` (see `training_targets`).

    `time_reversal` (training only): `(label, reversed_label)` pairs. Half of the clips
    whose label has a pair play backwards (their frame features reversed) with the paired
    label. If the arrays hold the reversed clips' captions (`extract_features(...,
    reverse_caption=...)`), those replace the captions; otherwise the caption no longer
    describes the clip, so such clips get weight 0 in the retrieval loss (they still serve
    as negatives). Batches are then `(inputs, targets, sample_weights)`.
    """
    inputs = model_inputs(arrays, config)
    reversed_captions = reversed_caption_inputs(arrays, config) if time_reversal else None
    if reversed_captions:
        inputs = {**inputs, **{REVERSED + k: v for k, v in reversed_captions.items()}}
    tasks = config.tasks
    labels = arrays[specs.LABEL_ID]
    targets = training_targets(tasks, labels, lambda y: np.zeros(len(y), np.float32))
    ds = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if training:
        ds = ds.shuffle(len(arrays[specs.LABEL_ID]), seed=seed, reshuffle_each_iteration=True)
        if time_reversal and "classification" in tasks:
            ds = ds.map(_time_reversal(reversed_label_ids(config.labels, time_reversal), seed))
    # drop_remainder in training: InfoNCE over a batch of 1 or 2 is degenerate.
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def _time_reversal(reversed_ids, seed):
    reversed_ids = tf.constant(reversed_ids)
    generator = tf.random.Generator.from_seed(seed)

    def augment(x, y):
        target = tf.gather(reversed_ids, tf.cast(y["logits"], tf.int32))
        flip = tf.logical_and(generator.uniform(()) < 0.5, target >= 0)
        x = dict(x)
        x[VIDEO_FEATURES] = tf.where(flip, tf.reverse(x[VIDEO_FEATURES], [0]), x[VIDEO_FEATURES])
        captioned = False
        for key in [k for k in x if k.startswith(REVERSED)]:
            value = x.pop(key)
            x[key[len(REVERSED) :]] = tf.where(flip, value, x[key[len(REVERSED) :]])
            captioned = True
        y = dict(y)
        y["logits"] = tf.where(flip, tf.cast(target, y["logits"].dtype), y["logits"])
        weights = {k: tf.ones(()) for k in y}
        for key in ("similarity", "matching"):
            if key in y:
                weights[key] = tf.ones(()) if captioned else tf.where(flip, 0.0, 1.0)
        return x, y, weights

    return augment
