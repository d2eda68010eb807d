"""Model configuration: a frozen dataclass with presets (`tiny` for tests, `default`)."""

import dataclasses
import json
import math

TEMPORAL_MODELS = ("mean", "max", "lstm", "gru", "transformer")
FUSIONS = ("none", "concat", "cross_attention", "co_attention", "text_guided")
VIDEO_EMBEDDINGS = ("temporal", "slots")
TEXT_EMBEDDINGS = ("pooled", "tokens")
TASKS = ("classification", "retrieval", "matching")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a kmm model.

    Defaults train on CPU in minutes: EfficientNet-Lite0's stride-16 feature maps at 128 px
    (8x8 cells of where things are), MiniLM text, 8 frames, width 128.
    """

    frame_encoder: str = "kmm://efficientnet-lite0@128"
    frame_convention: str = "kmm-frames-spatial16"  # see kmm.hub.conventions.VIDEO_CONVENTIONS
    text_encoder: str = "kmm://minilm-l6"
    text_convention: str = "kmm-text"  # see kmm.hub.conventions.TEXT_CONVENTIONS
    num_frames: int = 8
    frame_size: int = 128
    max_text_tokens: int = 16  # referring / classification text, tokens kept after the encoder
    max_caption_tokens: int = 32  # captions, for text_embedding="tokens"
    # Cells a step in the encoder features (8x8 feature map); 1 = one vector a frame. Must be
    # the grid the encoder gives at frame_size: checked whenever the encoders are made.
    spatial_cells: int = 64
    # Append frame-to-frame feature differences to tokens projected from the raw features.
    # Cell tokens (slots, text-guided pooling, frame tokens with frame_cell_dim > 0) always have them.
    motion_features: bool = True
    # lstm / gru with spatial cells: each frame's token is projected from its cell tokens,
    # each cut to this many values (0: from the whole raw feature map, which is slower and
    # no better on kmm-shapes).
    frame_cell_dim: int = 16
    dim: int = 128
    temporal: str = "lstm"  # Choose from ['mean', 'max', 'lstm', 'gru', 'transformer']
    temporal_layers: int = 2
    fusion: str = "text_guided"  # Choose from ['none', 'concat', 'cross_attention', 'co_attention', 'text_guided']
    fusion_layers: int = 1
    # Retrieval video embedding: from the temporal model's pooled vector, or from object slots.
    video_embedding: str = "slots"  # Choose from ['temporal', 'slots']
    slots: int = 8
    # Slots and text-guided pooling also report where they looked in each frame (the
    # attention-weighted cell centre), so a track says which way its object went.
    cell_positions: bool = True
    # Caption tower: on the text encoder's pooled vector, or on its tokens.
    text_embedding: str = "tokens"  # Choose from ['pooled', 'tokens']
    num_heads: int = 4
    dropout: float = 0.1
    labels: tuple = ()
    # Any non-empty subset of ['classification', 'retrieval', 'matching']; "matching" (a
    # pair-matching head that re-ranks retrieval's top `rerank_top_k`) needs "retrieval".
    tasks: tuple = ("classification", "retrieval")
    classification_weight: float = 1.0
    retrieval_weight: float = 1.0
    matching_weight: float = 1.0
    matching_slots: int = 4  # learned queries that read a caption's clauses in the matching head
    rerank_top_k: int = 10
    temperature: float = 0.07

    def __post_init__(self):
        for name, value, allowed in (
            ("temporal", self.temporal, TEMPORAL_MODELS),
            ("fusion", self.fusion, FUSIONS),
            ("video_embedding", self.video_embedding, VIDEO_EMBEDDINGS),
            ("text_embedding", self.text_embedding, TEXT_EMBEDDINGS),
        ):
            if value not in allowed:
                raise ValueError(f"ModelConfig.{name} must be one of {allowed}, got {value!r}")
        if not self.tasks or set(self.tasks) - set(TASKS):
            raise ValueError(f"ModelConfig.tasks must be a non-empty subset of {TASKS}, got {self.tasks!r}")
        if "matching" in self.tasks:
            if "retrieval" not in self.tasks:
                raise ValueError('The "matching" task re-ranks retrieval: ModelConfig.tasks needs "retrieval" too.')
            if self.text_embedding != "tokens" or self.spatial_cells < 2:
                raise ValueError('The "matching" task needs text_embedding="tokens" and spatial_cells > 1.')
        if self.spatial_cells < 1:
            raise ValueError(f"spatial_cells must be >= 1, got {self.spatial_cells}")
        if self.video_embedding == "slots" and self.spatial_cells < 2:
            raise ValueError('video_embedding="slots" needs spatial features (spatial_cells > 1).')
        uses_grid = self.video_embedding == "slots" or self.fusion == "text_guided"
        if self.cell_positions and uses_grid and math.isqrt(self.spatial_cells) ** 2 != self.spatial_cells:
            raise ValueError(
                f"cell_positions needs a square grid of cells, got spatial_cells={self.spatial_cells}; "
                "pass cell_positions=False"
            )
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads}).")

    @property
    def feature_steps(self):
        """Tokens along time in the encoder features: one a frame for frame encoders, one for a
        pooled clip encoder, `ceil(num_frames / 8)` for I3D's mixed_5c (`kmm-video-spatial`)."""
        from kmm.hub.conventions import video_convention

        convention = video_convention(self.frame_convention)
        return 1 if convention.pooled else -(-self.num_frames // convention.frames_per_step)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        data["labels"] = tuple(data.get("labels", ()))
        data["tasks"] = tuple(data.get("tasks", cls.tasks))
        for key, before in LEGACY_DEFAULTS.items():  # configs saved before the field existed
            data.setdefault(key, before)
        return cls(**data)


# What a config saved before these fields existed meant.
LEGACY_DEFAULTS = {
    "video_embedding": "temporal",
    "text_embedding": "pooled",
    "cell_positions": False,
    "frame_cell_dim": 0,
}


PRESETS = {
    "default": ModelConfig(),
    # Real video: I3D Kinetics-400's mixed_5c (7x7 cells of 1024 at 224 px, one step per 8
    # frames) under the same towers and fusion layers.
    "i3d": ModelConfig(
        frame_encoder="kmm://i3d-kinetics-400",
        frame_convention="kmm-video-spatial",
        num_frames=16,
        frame_size=224,
        spatial_cells=49,
    ),
    "tiny": ModelConfig(
        frame_encoder="kmm://tiny-frames@32",
        frame_convention="kmm-frames-spatial",
        text_encoder="kmm://tiny-text",
        num_frames=4,
        frame_size=32,
        max_text_tokens=8,
        spatial_cells=64,
        slots=3,
        max_caption_tokens=12,
        dim=16,
        temporal_layers=1,
        num_heads=2,
    ),
}
