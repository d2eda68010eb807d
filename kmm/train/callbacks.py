"""Keras callbacks specific to kmm."""

import keras
import numpy as np

from kmm import specs
from kmm.eval.metrics import bidirectional_retrieval
from kmm.models.towers import VIDEO_FEATURES, caption_keys


def embed_arrays(parts, arrays, batch_size=256):
    """Video and caption embeddings of a features split, through the towers."""
    video = parts.video_tower.predict(arrays[VIDEO_FEATURES], batch_size=batch_size, verbose=0)
    caption = {k: arrays[k] for k in caption_keys(parts.config)}
    text = parts.text_tower.predict(caption, batch_size=batch_size, verbose=0)
    return np.asarray(video[specs.VIDEO_EMBEDDING]), np.asarray(text)


class RetrievalEvaluation(keras.callbacks.Callback):
    """Adds `val_t2v_r1`, `val_t2v_r5`, `val_t2v_r10`, `val_v2t_r1` to the epoch logs.

    Place it before `CSVLogger`/`TensorBoard` so they record the numbers.

    Args:
        parts: `kmm.models.builder.Parts` being trained.
        arrays: the validation split's features (`kmm.train.features.load_features`).
    """

    def __init__(self, parts, arrays):
        super().__init__()
        self.parts, self.arrays = parts, arrays

    def on_epoch_end(self, epoch, logs=None):
        video, text = embed_arrays(self.parts, self.arrays)
        metrics = bidirectional_retrieval(video, text)
        if logs is not None:
            for k in (1, 5, 10):
                logs[f"val_t2v_r{k}"] = metrics["text_to_video"][f"R@{k}"]
            logs["val_v2t_r1"] = metrics["video_to_text"]["R@1"]
