"""Small reductions used by model heads (registered layers instead of `Lambda`s)."""

import keras
from keras import ops

from kmm.layers.masks import masked_mean


@keras.saving.register_keras_serializable(package="kmm")
class MaskedMean(keras.layers.Layer):
    """Mean over real steps: `(batch, steps, dim)`, bool `(batch, steps)` -> `(batch, dim)`."""

    def call(self, x, padding_mask=None):
        return masked_mean(x, padding_mask)

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return (x_shape[0], x_shape[-1])


@keras.saving.register_keras_serializable(package="kmm")
class FrameAttention(keras.layers.Layer):
    """Per-frame attention weights `(batch, num_frames)` summing to 1.

    Args:
        num_frames: int. Frames in the clip.
        token_frames: int. Frames the token axis spans: tokens are `token_frames` groups of
            equal size (frames, or frames x cells). 0 = the tokens carry no time axis, and the
            weights are uniform.

    Call arguments:
        tokens: `(batch, n, dim)`.
        scores: `(batch, heads, queries, n)` or None (uniform weights).
    """

    def __init__(self, num_frames, token_frames=0, **kwargs):
        super().__init__(**kwargs)
        self.num_frames, self.token_frames = num_frames, token_frames

    def call(self, tokens, scores=None):
        if scores is None or not self.token_frames:
            batch = ops.shape(tokens)[0]
            return ops.ones((batch, self.num_frames), dtype=tokens.dtype) / self.num_frames
        weights = ops.mean(scores, axis=(1, 2))  # (batch, n)
        grouped = ops.reshape(weights, (ops.shape(weights)[0], self.token_frames, -1))
        return ops.sum(grouped, axis=-1)  # (batch, frames)

    def compute_output_shape(self, tokens_shape, scores_shape=None):
        return (tokens_shape[0], self.num_frames)

    def get_config(self):
        return {**super().get_config(), "num_frames": self.num_frames, "token_frames": self.token_frames}
