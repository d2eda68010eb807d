"""Cached feature arrays -> model inputs, caption groups, class probabilities and
embeddings. Shared by training (`kmm.train`) and evaluation (`kmm.eval`)."""

import keras
import numpy as np

from kmm import specs
from kmm.models.builder import build_feature_model
from kmm.models.towers import caption_keys
from kmm.specs import FRAME_ATTENTION, LOGITS, VIDEO_FEATURES

REVERSED = "reversed_"  # prefix of the cached captions of the clips played backwards
CAPTION_GROUP = "caption_group"  # optional key shared by captions that say the same thing


def model_inputs(arrays, config):
    """The arrays `build_feature_model` takes for `config` (the caption as its text tower wants it)."""
    keys = (VIDEO_FEATURES, specs.TEXT_TOKENS, specs.TEXT_PADDING_MASK, *caption_keys(config))
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise KeyError(f"The cached features lack {missing}; rebuild them (delete the features folder).")
    return {k: arrays[k] for k in keys}


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


def feature_model(parts, arrays):
    """`build_feature_model` for the feature dimensions of `arrays` (build it once and pass it to
    every `predict_arrays` call: each new model traces a new predict function)."""
    return build_feature_model(parts, arrays[VIDEO_FEATURES].shape[-1], arrays[specs.TEXT_TOKENS].shape[-1])


def predict_arrays(parts, arrays, batch_size=256, model=None):
    """Class probabilities (or None) and frame attention for a features split (`model`: from
    `feature_model`, built here when not given)."""
    if parts.head is None:
        return None, None
    model = model or feature_model(parts, arrays)
    out = model.predict(model_inputs(arrays, parts.config), batch_size=batch_size, verbose=0)
    return np.asarray(keras.ops.softmax(out[LOGITS])), np.asarray(out[FRAME_ATTENTION])


def embed_arrays(parts, arrays, batch_size=256):
    """Video and caption embeddings of a features split, through the towers (called batch by
    batch in this process: under a multi-worker strategy, `predict` would be a collective step)."""
    caption = {k: arrays[k] for k in caption_keys(parts.config)}
    video, text = [], []
    for start in range(0, len(arrays[VIDEO_FEATURES]), batch_size):
        rows = slice(start, start + batch_size)
        video.append(keras.ops.convert_to_numpy(parts.video_tower(arrays[VIDEO_FEATURES][rows])[specs.VIDEO_EMBEDDING]))
        text.append(keras.ops.convert_to_numpy(parts.text_tower({k: v[rows] for k, v in caption.items()})))
    return np.concatenate(video), np.concatenate(text)
