"""Encoder-feature cache for staged training (seed article 3.3.2).

Stage 1 trains the fusion model on frozen encoder features; computing them once and
reading them back each epoch turns an encoder-bound epoch into a cheap one. The cache is a
folder of `.npy` shards (float16 features `(n, frames, dim)`) plus `rows.npz` with the
row ids, texts, captions and label ids, and `cache.json` describing how it was made.
"""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from kmm import specs

VIDEO_FEATURES = "video_features"


def write_feature_cache(dataset, encoder, out_dir, description=None, progress=True):
    """Runs `encoder` (frames -> dict with `video_tokens`) over `dataset`; writes the cache.

    Args:
        dataset: batched `tf.data.Dataset` from `build_dataset` (deterministic sampling).
        encoder: callable, e.g. `kmm.hub.encoders.VideoEncoder`.
        out_dir: str or Path. Created; an existing cache there is replaced.
        description: dict or None. Stored in `cache.json` (encoder handle, frames, ...).

    Returns:
        The number of clips cached.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("features-*.npy"):
        old.unlink()
    meta = {specs.ROW: [], specs.TEXT: [], specs.CAPTION: [], specs.LABEL_ID: []}
    n = 0
    for i, batch in enumerate(tqdm(dataset, desc="caching features", unit="batch", disable=not progress)):
        tokens = encoder(batch[specs.FRAMES])[specs.VIDEO_TOKENS]  # (batch, steps, dim)
        np.save(out_dir / f"features-{i:05d}.npy", np.asarray(tokens, np.float16))
        for key in meta:
            meta[key].append(batch[key].numpy())
        n += int(tokens.shape[0])
    # Strings as fixed-width bytes, so reading needs no pickle.
    arrays = {k: np.concatenate(v) if v else np.array([]) for k, v in meta.items()}
    arrays = {k: a.astype(bytes) if a.dtype == object else a for k, a in arrays.items()}
    np.savez(out_dir / "rows.npz", **arrays)
    (out_dir / "cache.json").write_text(json.dumps({"clips": n, **(description or {})}, indent=2) + "\n")
    return n


def read_feature_cache(cache_dir, batch_size=32, training=False, seed=0):
    """The cached features as a batched dataset of dicts (`video_features` float32 and the row fields)."""
    cache_dir = Path(cache_dir)
    if not (cache_dir / "cache.json").exists():
        raise FileNotFoundError(f"{cache_dir}: no feature cache (cache.json missing); write one first.")
    shards = sorted(cache_dir.glob("features-*.npy"))
    features = np.concatenate([np.load(s) for s in shards]).astype(np.float32)
    rows = dict(np.load(cache_dir / "rows.npz", allow_pickle=False))
    ds = tf.data.Dataset.from_tensor_slices({VIDEO_FEATURES: features, **rows})
    if training:
        ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def cache_info(cache_dir):
    return json.loads((Path(cache_dir) / "cache.json").read_text())
