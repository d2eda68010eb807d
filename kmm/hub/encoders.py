"""Video and text encoder layers with one output contract over many TF-Hub conventions.

Both return dicts keyed by `kmm.specs`:
- `VideoEncoder`: uint8 frames `(batch, frames, h, w, 3)` -> `video_tokens` `(batch, steps, dim)`,
  `video_padding_mask` `(batch, steps)` and `video_embedding` `(batch, dim)`.
- `TextEncoder`: strings `(batch,)` -> `text_tokens` `(batch, tokens, dim)`,
  `text_padding_mask` `(batch, tokens)` and `text_embedding` `(batch, dim)`.
Modules that only give a pooled vector yield a one-step token sequence.
"""

import keras
import numpy as np
import tensorflow as tf

from kmm import specs
from kmm.hub.conventions import UNIT, text_convention, video_convention
from kmm.hub.handles import check_keras_config
from kmm.hub.hub_layer import HubLayer


def _one_step(embedding):
    tokens = embedding[:, None, :]  # (batch, 1, dim)
    return tokens, tf.ones(tf.shape(tokens)[:2], tf.bool)


@keras.saving.register_keras_serializable(package="kmm")
class VideoEncoder(keras.layers.Layer):
    """Encodes uint8 video frames with a TF-Hub video or frame encoder.

    Args:
        handle: str. Encoder handle (see `kmm.hub.handles`). Defaults to
            `"kmm://efficientnet-lite0"`.
        convention: str. One of `kmm.hub.conventions.VIDEO_CONVENTIONS`. Defaults to
            `"kmm-frames"`.
        trainable: bool. Fine-tune the encoder. Defaults to `False`.

    Call arguments:
        frames: uint8 tensor `(batch, frames, height, width, 3)`.

    Example:

        >>> frames = keras.Input((8, 64, 64, 3), dtype="uint8")
        >>> out = VideoEncoder("kmm://tiny-frames")(frames)
        >>> out["video_tokens"].shape
        (None, 8, 32)
    """

    def __init__(self, handle="kmm://efficientnet-lite0", convention="kmm-frames", trainable=False, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        self.handle = handle
        self.convention = convention
        self._conv = video_convention(convention)
        self.module = HubLayer(
            handle,
            signature=self._conv.signature,
            input_key=self._conv.input_key,
            output_key=self._conv.output_key,
            trainable=trainable,
            name="module",
        )

    def _prepare(self, frames):
        if self._conv.value_range != UNIT:
            return frames
        shape = tf.shape(frames)
        x = tf.cast(frames, tf.float32) / 255.0
        if self._conv.image_size:
            size = [self._conv.image_size] * 2
            x = tf.image.resize(tf.reshape(x, tf.concat([[-1], shape[2:]], 0)), size, antialias=True)
            x = tf.reshape(x, tf.concat([shape[:2], size, [3]], 0))  # (batch, frames, size, size, 3)
        return x

    def call(self, frames, training=None):
        out = self.module(self._prepare(frames), training=training)
        if self._conv.pooled:
            tokens, mask = _one_step(out)
        else:
            tokens = out  # (batch, frames, dim), or (batch, frames, h, w, c) for a feature map
            if len(tokens.shape) == 5:
                shape = tf.shape(tokens)
                tokens = tf.reshape(tokens, tf.concat([shape[:2], [-1]], 0))  # (batch, frames, h*w*c)
                tokens.set_shape([None, None, None if None in out.shape[2:] else int(np.prod(out.shape[2:]))])
            mask = tf.ones(tf.shape(tokens)[:2], tf.bool)
        return {
            specs.VIDEO_TOKENS: tokens,
            specs.VIDEO_PADDING_MASK: mask,
            specs.VIDEO_EMBEDDING: tf.reduce_mean(tokens, axis=1),
        }

    def grid_cells(self, num_frames, frame_size):
        """Spatial cells a step in this encoder's output for clips of `num_frames` frames of
        `frame_size` px: `h * w` of a feature map, 1 for one vector a frame or a clip."""
        if self._conv.pooled:
            return 1
        frames = tf.zeros((1, num_frames, frame_size, frame_size, 3), tf.uint8)
        shape = self.module(self._prepare(frames)).shape
        return int(shape[2] * shape[3]) if len(shape) == 5 else 1

    def get_config(self):
        config = super().get_config()
        config.update(handle=self.handle, convention=self.convention)
        return config

    @classmethod
    def from_config(cls, config):
        check_keras_config(config)
        return cls(**config)


@keras.saving.register_keras_serializable(package="kmm")
class TextEncoder(keras.layers.Layer):
    """Encodes raw strings with a TF-Hub text encoder (tokenization in the graph).

    Args:
        handle: str. Encoder handle. Defaults to `"kmm://minilm-l6"`.
        convention: str. One of `kmm.hub.conventions.TEXT_CONVENTIONS`. Defaults to `"kmm-text"`.
        preprocessor: str or None. Handle of the matching preprocessing model, required by
            the `"bert"` convention. Defaults to `None`.
        trainable: bool. Fine-tune the encoder. Defaults to `False`.

    Call arguments:
        text: string tensor `(batch,)`; empty strings are allowed.

    Example:

        >>> text = keras.Input((), dtype="string")
        >>> TextEncoder("kmm://tiny-text")(text)["text_embedding"].shape
        (None, 32)
    """

    def __init__(self, handle="kmm://minilm-l6", convention="kmm-text", preprocessor=None, trainable=False, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        self.handle = handle
        self.convention = convention
        self.preprocessor = preprocessor
        self._conv = text_convention(convention)
        if self._conv.needs_preprocessor and not preprocessor:
            raise ValueError(f"The {convention!r} convention needs `preprocessor=<handle of its preprocessing model>`.")
        self.pre = HubLayer(preprocessor, name="preprocessor") if preprocessor else None
        self.module = HubLayer(handle, signature=self._conv.signature, trainable=trainable, name="module")

    def call(self, text, training=None):
        inputs = self.pre(text) if self.pre is not None else text
        out = self.module(inputs, training=training)
        embedding = out[self._conv.embedding_key]
        if self._conv.sequence_key is None:
            tokens, mask = _one_step(embedding)
        else:
            tokens = out[self._conv.sequence_key]
            source = inputs if self.pre is not None else out
            mask = tf.cast(source[self._conv.mask_key], tf.bool)
        return {specs.TEXT_TOKENS: tokens, specs.TEXT_PADDING_MASK: mask, specs.TEXT_EMBEDDING: embedding}

    def get_config(self):
        config = super().get_config()
        config.update(handle=self.handle, convention=self.convention, preprocessor=self.preprocessor)
        return config

    @classmethod
    def from_config(cls, config):
        check_keras_config(config)
        return cls(**config)
