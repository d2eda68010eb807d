"""Input/output conventions of the TF-Hub encoders kmm knows how to drive.

| convention | handle (for users with network) | call | frames in | output used |
|---|---|---|---|---|
| `kmm-frames` | `kmm://efficientnet-lite0` | `module(frames)` | uint8 `(b, t, h, w, 3)` | `features` `(b, t, d)` |
| `kmm-frames-spatial` | `kmm://efficientnet-lite0@128` | `module(frames)` | uint8 | `feature_map` `(b, t, h/32, w/32, c)`, flattened to `(b, t, cells*c)` |
| `kmm-frames-spatial16` | `kmm://efficientnet-lite0@128` | `module(frames)` | uint8 | `feature_map_16` `(b, t, h/16, w/16, c)`, flattened |
| `kmm-video` | `kmm://i3d-kinetics-400` | `module(frames)` | uint8, any T and size | `features` `(b, 1024)`: one step a clip |
| `kmm-video-spatial` | `kmm://i3d-kinetics-400` | `module(frames)` | uint8 | `mixed_5c` `(b, ceil(T/8), 7, 7, 1024)`, flattened to `(b, ceil(T/8), 49*1024)` |
| `s3d-milnce` | `https://tfhub.dev/deepmind/mil-nce/s3d/1` | `signatures["video"]` | float [0, 1], 224 px | `mixed_5c` `(b, 1024)` |
| `i3d-kinetics-400` | `https://tfhub.dev/deepmind/i3d-kinetics-400/1` | `signatures["default"]` | float [0, 1], 224 px | `default` logits `(b, 400)` |
| `movinet` | `https://tfhub.dev/tensorflow/movinet/a0/base/kinetics-600/classification/3` | `signatures["serving_default"](image=...)` | float [0, 1], 172 px | `classifier_head` `(b, 600)` |

| convention | handle | call | output used |
|---|---|---|---|
| `kmm-text` | `kmm://minilm-l6` | `module(text)` | `sequence_output`, `padding_mask`, `pooled_output` |
| `s3d-milnce` | `https://tfhub.dev/deepmind/mil-nce/s3d/1` | `signatures["text"]` | `text_embedding` `(b, 512)` |
| `bert` | `https://tfhub.dev/tensorflow/bert_en_uncased_L-12_H-768_A-12/4` with preprocessor `https://tfhub.dev/tensorflow/bert_en_uncased_preprocess/3` | `encoder(preprocessor(text))` | `sequence_output`, `pooled_output`, mask = `input_mask` |
"""

import dataclasses

from kmm import specs

UINT8 = "uint8"  # pass frames through unchanged
UNIT = "unit"  # float32 in [0, 1]


@dataclasses.dataclass(frozen=True)
class VideoConvention:
    """How to call a video or frame encoder and which output to use.

    `pooled` modules return one vector per clip; kmm then treats it as a one-step sequence.
    Clip-level encoders that keep time give one step per `frames_per_step` frames.
    """

    signature: str | None
    output_key: str
    value_range: str  # Choose from ['uint8', 'unit']
    image_size: int | None  # None: the module resizes itself
    pooled: bool
    input_key: str | None = None
    # Frames per output step of a clip-level encoder (I3D's mixed_5c: one step per 8 frames).
    frames_per_step: int = 1


@dataclasses.dataclass(frozen=True)
class TextConvention:
    """How to call a text encoder and which outputs to use (None: not provided)."""

    signature: str | None
    embedding_key: str
    sequence_key: str | None = None
    mask_key: str | None = None
    needs_preprocessor: bool = False


VIDEO_CONVENTIONS = {
    "kmm-frames": VideoConvention(None, specs.FRAME_FEATURES, UINT8, None, pooled=False),
    "kmm-frames-spatial": VideoConvention(None, specs.FRAME_FEATURE_MAP, UINT8, None, pooled=False),
    "kmm-frames-spatial16": VideoConvention(None, specs.FRAME_FEATURE_MAP_16, UINT8, None, pooled=False),
    "kmm-video": VideoConvention(None, specs.CLIP_FEATURES, UINT8, None, pooled=True),
    "kmm-video-spatial": VideoConvention(None, specs.CLIP_FEATURE_MAP, UINT8, None, pooled=False, frames_per_step=8),
    "s3d-milnce": VideoConvention("video", "mixed_5c", UNIT, 224, pooled=True),
    "i3d-kinetics-400": VideoConvention("default", "default", UNIT, 224, pooled=True),
    "movinet": VideoConvention("serving_default", "classifier_head", UNIT, 172, pooled=True, input_key="image"),
}

TEXT_CONVENTIONS = {
    "kmm-text": TextConvention(None, specs.POOLED_OUTPUT, specs.SEQUENCE_OUTPUT, specs.PADDING_MASK),
    "s3d-milnce": TextConvention("text", "text_embedding"),
    "bert": TextConvention(None, "pooled_output", "sequence_output", "input_mask", needs_preprocessor=True),
}


def video_convention(name):
    if name not in VIDEO_CONVENTIONS:
        raise ValueError(f"Unknown video encoder convention {name!r}; choose from {sorted(VIDEO_CONVENTIONS)}.")
    return VIDEO_CONVENTIONS[name]


def text_convention(name):
    if name not in TEXT_CONVENTIONS:
        raise ValueError(f"Unknown text encoder convention {name!r}; choose from {sorted(TEXT_CONVENTIONS)}.")
    return TEXT_CONVENTIONS[name]
