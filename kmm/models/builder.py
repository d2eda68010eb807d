"""Builds kmm models from a `ModelConfig`.

Two entry points share the same tower and head layers (so weights move freely):
- `build_feature_model`: encoder outputs in (cached features; stage 1 of staged training);
- `build_end_to_end`: raw uint8 frames and strings in, TF-Hub encoders inside (stage 2 /
  joint training, and what gets exported).
"""

import dataclasses

import keras
import tensorflow as tf

from kmm import specs
from kmm.layers import SimilarityLogits
from kmm.models.heads import build_classification_head
from kmm.models.towers import (
    build_text_tower,
    build_video_tower,
    caption_keys,
    text_tower_inputs,
)
from kmm.specs import (
    CAPTION_EMBEDDING,
    CAPTION_PADDING_MASK,
    CAPTION_TOKENS,
    FRAME_ATTENTION,
    LOGITS,
    PROBABILITIES,
    SIMILARITY,
    VIDEO_FEATURES,
)


@dataclasses.dataclass
class Parts:
    """The trainable pieces of a kmm model; `head`/`text_tower` are None for tasks not asked for."""

    config: object
    video_tower: keras.Model
    text_tower: keras.Model | None
    head: keras.Model | None
    similarity: keras.layers.Layer | None


def build_parts(config, feature_dim, text_dim):
    """Creates fresh towers and heads for `config` (its `spatial_cells`, when None, from the
    video encoder: `with_encoder_grid`)."""
    config = with_encoder_grid(config) if config.spatial_cells is None else config
    retrieval = "retrieval" in config.tasks
    classification = "classification" in config.tasks
    if classification and not config.labels:
        raise ValueError("A classification model needs `ModelConfig.labels`.")
    return Parts(
        config=config,
        video_tower=build_video_tower(config, feature_dim),
        text_tower=build_text_tower(config, text_dim) if retrieval else None,
        head=build_classification_head(config, text_dim) if classification else None,
        similarity=SimilarityLogits(config.temperature, name="similarity") if retrieval else None,
    )


def caption_inputs(config, encoded):
    """The text tower's inputs from a text encoder's outputs (tokens cut to `max_caption_tokens`)."""
    if config.text_embedding == "pooled":
        return {CAPTION_EMBEDDING: encoded[specs.TEXT_EMBEDDING]}
    cut = config.max_caption_tokens
    return {
        CAPTION_TOKENS: encoded[specs.TEXT_TOKENS][:, :cut],
        CAPTION_PADDING_MASK: encoded[specs.TEXT_PADDING_MASK][:, :cut],
    }


def _heads(parts, video, text_tokens, text_mask, caption):
    outputs = {}
    if parts.head is not None:
        head_inputs = {specs.TEXT_TOKENS: text_tokens, specs.TEXT_PADDING_MASK: text_mask}
        # Every other input the head declares is a video tower output of the same name.
        head_inputs |= {k: video[k] for k in parts.head.input if k not in head_inputs}
        out = parts.head(head_inputs)
        outputs[LOGITS] = out[LOGITS]
        outputs[FRAME_ATTENTION] = out[FRAME_ATTENTION]
    if parts.text_tower is not None and caption is not None:
        outputs[SIMILARITY] = parts.similarity(video[specs.VIDEO_EMBEDDING], parts.text_tower(caption))
    return outputs


def build_feature_model(parts, feature_dim, text_dim):
    """Cached encoder outputs -> `{logits, frame_attention, similarity}` (what the tasks need).

    Inputs: `video_features (b, t, feature_dim)`, `text_tokens (b, l, text_dim)`,
    `text_padding_mask (b, l)`, and the caption as the text tower takes it:
    `caption_embedding (b, text_dim)` or `caption_tokens (b, lc, text_dim)` +
    `caption_padding_mask (b, lc)` (see `ModelConfig.text_embedding`).

    Example:

        >>> from kmm.models.config import PRESETS
        >>> parts = build_parts(PRESETS["tiny"].replace(labels=("a", "b")), 512, 32)
        >>> model = build_feature_model(parts, 512, 32)
        >>> sorted(model.output)
        ['frame_attention', 'logits', 'similarity']
    """
    config = parts.config
    inputs = {
        VIDEO_FEATURES: keras.Input((config.feature_steps, feature_dim), name=VIDEO_FEATURES),
        specs.TEXT_TOKENS: keras.Input((None, text_dim), name=specs.TEXT_TOKENS),
        specs.TEXT_PADDING_MASK: keras.Input((None,), dtype="bool", name=specs.TEXT_PADDING_MASK),
        **text_tower_inputs(config, text_dim),
    }
    video = parts.video_tower(inputs[VIDEO_FEATURES])
    caption = {k: inputs[k] for k in caption_keys(config)}
    outputs = _heads(parts, video, inputs[specs.TEXT_TOKENS], inputs[specs.TEXT_PADDING_MASK], caption)
    return keras.Model(inputs, outputs, name="kmm_feature_model")


@dataclasses.dataclass
class EndToEnd:
    """Raw-input models sharing `parts` and one pair of encoders.

    - `trainer`: `{frames, text, caption}` -> `{logits, frame_attention, similarity}`;
    - `classifier`: `{frames, text}` -> `{probabilities, frame_attention}`;
    - `video_embedder`: `frames` -> unit-norm `(b, dim)`; `text_embedder`: `text` -> unit-norm `(b, dim)`.
    """

    trainer: keras.Model
    classifier: keras.Model | None
    video_embedder: keras.Model
    text_embedder: keras.Model | None
    video_encoder: keras.layers.Layer
    text_encoder: keras.layers.Layer


def make_encoders(config, trainable=False):
    """`(video_encoder, text_encoder)`: the config's TF-Hub encoders as kmm adapter layers."""
    from kmm.hub.encoders import TextEncoder, VideoEncoder

    video = VideoEncoder(config.frame_encoder, config.frame_convention, trainable=trainable, name="video_encoder")
    return video, TextEncoder(config.text_encoder, config.text_convention, trainable=trainable, name="text_encoder")


def with_encoder_grid(config, video_encoder=None):
    """`config` with `spatial_cells` the grid its video encoder gives at `config.frame_size`.

    Runs the encoder once on a blank clip (`video_encoder`, or one made from the config's
    handle). Raises `ValueError` when `spatial_cells` was set to another count: one that
    divides the feature width would otherwise reshape silently. The probe runs eagerly, which
    a `tf.distribute` strategy's scope does not allow: there a count already set is kept.

    Example:

        >>> from kmm.models.config import PRESETS
        >>> with_encoder_grid(PRESETS["tiny"].replace(spatial_cells=None)).spatial_cells  # 32 px, 8x8
        64
    """
    if tf.distribute.has_strategy():
        if config.spatial_cells is not None:
            return config
        raise RuntimeError(
            "ModelConfig.spatial_cells is derived by running the video encoder, which a distribution "
            "strategy's scope does not allow: derive it before entering the scope (with_encoder_grid)."
        )
    from kmm.hub.encoders import VideoEncoder

    video = video_encoder or VideoEncoder(config.frame_encoder, config.frame_convention, name="video_encoder")
    cells = video.grid_cells(config.num_frames, config.frame_size)
    if config.spatial_cells not in (None, cells):
        raise ValueError(
            f"ModelConfig.spatial_cells={config.spatial_cells}, but {config.frame_encoder} "
            f"({config.frame_convention}) at {config.frame_size} px gives {cells} cell(s) a step: "
            f"set spatial_cells={cells}, or leave it unset to derive it."
        )
    return config.replace(spatial_cells=cells)


def build_end_to_end(parts, trainable_encoders=False, encoders=None):
    """Wraps `parts` with the config's TF-Hub encoders (frozen unless `trainable_encoders`).

    `encoders`: optional `(video_encoder, text_encoder)` layers to reuse (e.g. fine-tuned ones
    from a saved end-to-end model) instead of fresh ones from the config's handles. Text
    tokens are cut to `config.max_text_tokens`, as in the stage-1 feature cache.
    """
    config = parts.config
    size = config.frame_size
    frames = keras.Input((config.num_frames, size, size, 3), dtype="uint8", name=specs.FRAMES)
    text = keras.Input((), dtype="string", name=specs.TEXT)
    caption = keras.Input((), dtype="string", name=specs.CAPTION)
    video_encoder, text_encoder = encoders or make_encoders(config, trainable_encoders)
    video = parts.video_tower(video_encoder(frames)[specs.VIDEO_TOKENS])
    encoded_text = text_encoder(text)
    encoded_caption = text_encoder(caption)
    cut = config.max_text_tokens
    outputs = _heads(
        parts, video, encoded_text[specs.TEXT_TOKENS][:, :cut], encoded_text[specs.TEXT_PADDING_MASK][:, :cut],
        caption_inputs(config, encoded_caption) if parts.text_tower is not None else None,
    )  # fmt: skip
    trainer_inputs = {specs.FRAMES: frames, specs.TEXT: text}
    if parts.text_tower is not None:
        trainer_inputs[specs.CAPTION] = caption
    trainer = keras.Model(trainer_inputs, outputs, name="kmm_trainer")
    classifier = None
    if parts.head is not None:
        probabilities = keras.layers.Softmax(name=PROBABILITIES)(outputs[LOGITS])
        classifier = keras.Model(
            {specs.FRAMES: frames, specs.TEXT: text},
            {PROBABILITIES: probabilities, FRAME_ATTENTION: outputs[FRAME_ATTENTION]},
            name="kmm_classifier",
        )
    video_embedder = keras.Model(frames, video[specs.VIDEO_EMBEDDING], name="kmm_video_embedder")
    text_embedder = None
    if parts.text_tower is not None:
        text_embedder = keras.Model(
            text, parts.text_tower(caption_inputs(config, text_encoder(text))), name="kmm_text_embedder"
        )
    return EndToEnd(trainer, classifier, video_embedder, text_embedder, video_encoder, text_encoder)
