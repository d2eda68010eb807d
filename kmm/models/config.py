"""Model configuration: a frozen dataclass with presets (`tiny` for tests, `default`)."""

import dataclasses
import json
import math

TEMPORAL_MODELS = ("mean", "max", "lstm", "gru", "transformer")
FUSIONS = ("none", "concat", "cross_attention", "co_attention", "text_guided")
VIDEO_EMBEDDINGS = ("temporal", "slots")
TEXT_EMBEDDINGS = ("pooled", "tokens")
TASKS = ("classification", "retrieval")


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
    # Cells a step in the video encoder's features: its feature map's h * w at frame_size, 1
    # for one vector a frame or a clip. None: derived from the encoder before the model is
    # built (`kmm.models.builder.with_encoder_grid`), which also refuses a value set by hand
    # that the encoder does not give (one that divides the feature width would reshape silently).
    spatial_cells: int | None = None
    dim: int = 128
    temporal: str = "lstm"  # Choose from ['mean', 'max', 'lstm', 'gru', 'transformer']
    temporal_layers: int = 2
    fusion: str = "text_guided"  # Choose from ['none', 'concat', 'cross_attention', 'co_attention', 'text_guided']
    fusion_layers: int = 1
    # Retrieval video embedding: from the temporal model's pooled vector, or from object slots.
    video_embedding: str = "slots"  # Choose from ['temporal', 'slots']
    slots: int = 8
    # Caption tower: on the text encoder's pooled vector, or on its tokens.
    text_embedding: str = "tokens"  # Choose from ['pooled', 'tokens']
    num_heads: int = 4
    dropout: float = 0.1
    labels: tuple = ()
    tasks: tuple = ("classification", "retrieval")  # any non-empty subset of TASKS
    classification_weight: float = 1.0
    retrieval_weight: float = 1.0
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
        if self.spatial_cells is not None and self.spatial_cells < 1:
            raise ValueError(f"spatial_cells must be >= 1, got {self.spatial_cells}")
        if self.video_embedding == "slots" and self.spatial_cells == 1:
            raise ValueError('video_embedding="slots" needs spatial features (spatial_cells > 1).')
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads}).")

    @property
    def cell_positions(self):
        """Whether slots and text-guided pooling also report where they looked in each frame
        (the attention-weighted cell centre, so a track says which way its object went): on
        a square grid of cells."""
        cells = self.spatial_cells or 0
        return cells > 1 and math.isqrt(cells) ** 2 == cells

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
        from kmm import __version__

        return json.dumps({"kmm_version": __version__, **dataclasses.asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text, source="config.json"):
        """The config `to_json` wrote. One written by a kmm whose models this version no longer
        builds (`LAST_COMMIT_BUILDING`) is a `ValueError` naming that version and the commit
        that still builds it."""
        from kmm import __version__

        data = json.loads(text)
        written_by = data.pop("kmm_version", "0.1")  # 0.1 did not record its version
        if written_by in LAST_COMMIT_BUILDING:
            raise ValueError(
                f"{source} was written by kmm {written_by}; kmm {__version__} builds another model (0.4.0: the "
                "text-guided head also takes the video embedding; 0.3.0: video tokens carry their difference from "
                "the clip's mean; fields and the matching task of 0.2.0 are gone). "
                f"Retrain it, or load it with kmm at commit {LAST_COMMIT_BUILDING[written_by]}."
            )
        data["labels"] = tuple(data.get("labels", ()))
        data["tasks"] = tuple(data.get("tasks", cls.tasks))
        fields = {field.name for field in dataclasses.fields(cls)}
        if set(data) - fields:
            raise ValueError(f"{source}: unknown ModelConfig field(s) {sorted(set(data) - fields)} "
                             f"(written by kmm {written_by})")  # fmt: skip
        return cls(**data)


# Versions whose saved models this one does not build, and the last commit that does.
LAST_COMMIT_BUILDING = {"0.1": "d4f8e7f", "0.2.0": "1393e9d", "0.3.0": "8d95c19"}


PRESETS = {
    "default": ModelConfig(),
    # Real video: I3D Kinetics-400's mixed_5c (7x7 cells of 1024 at 224 px, one step per 8
    # frames) under the same towers and fusion layers.
    "i3d": ModelConfig(
        frame_encoder="kmm://i3d-kinetics-400",
        frame_convention="kmm-video-spatial",
        num_frames=16,
        frame_size=224,
    ),
    "tiny": ModelConfig(
        frame_encoder="kmm://tiny-frames@32",
        frame_convention="kmm-frames-spatial",
        text_encoder="kmm://tiny-text",
        num_frames=4,
        frame_size=32,
        max_text_tokens=8,
        spatial_cells=64,  # set, so tests can build the towers on made-up features without the encoder
        slots=3,
        max_caption_tokens=12,
        dim=16,
        temporal_layers=1,
        num_heads=2,
    ),
}
