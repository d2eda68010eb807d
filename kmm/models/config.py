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
        """The config `to_json` wrote. One from an older kmm loads when it describes a model
        this version builds; otherwise a `ValueError` names the version that wrote it."""
        data = json.loads(text)
        written_by = data.pop("kmm_version", "0.1")  # 0.1 did not record its version
        data["labels"] = tuple(data.get("labels", ()))
        data["tasks"] = tuple(data.get("tasks", cls.tasks))
        if "matching" in data["tasks"]:
            raise ValueError(_unbuildable(source, written_by, f"the matching task: {REMOVED_MATCHING}", "1393e9d"))
        removed = {name: data.pop(name) for name in REMOVED_FIELDS if name in data}
        fields = {field.name for field in dataclasses.fields(cls)}
        missing = sorted(fields - set(data) - {"spatial_cells"})
        if missing:
            raise ValueError(_unbuildable(source, written_by, f"it predates ModelConfig.{', '.join(missing)}"))
        if set(data) - fields:
            raise ValueError(f"{source}: unknown ModelConfig field(s) {sorted(set(data) - fields)} "
                             f"(written by kmm {written_by})")  # fmt: skip
        config = cls(**data)
        for name, value in removed.items():
            if _removed_field_matters(config, name) and value != _value_now(config, name):
                raise ValueError(_unbuildable(source, written_by, f"{name}={value!r}: {REMOVED_FIELDS[name]}"))
        if _version(written_by) < (0, 3) and _has_token_differences(config):
            why = "its video tokens lack their difference from the clip's mean, added in kmm 0.3.0"
            raise ValueError(_unbuildable(source, written_by, why, "85f2172" if written_by == "0.2.0" else "d4f8e7f"))
        return config


# Fields removed in kmm 0.2.0, and why. A saved config may still name them with the value
# the model now always has, or where they did not change the model. The matching task's
# fields (`matching_weight`, `matching_slots`, `rerank_top_k`) changed nothing without it.
REMOVED_FIELDS = {
    "frame_cell_dim": "LSTM/GRU frame tokens always come from 16 values a cell; from the whole feature map "
    "(frame_cell_dim=0) was slower and no better (BENCHMARKS.md)",
    "motion_features": "tokens always carry their frame-to-frame difference",
    "cell_positions": "cell positions are on exactly when the grid of cells is square",
    "matching_weight": "",
    "matching_slots": "",
    "rerank_top_k": "",
}
REMOVED_MATCHING = "its head re-ranked retrieval worse than the dual encoder alone (BENCHMARKS.md)"


def _value_now(config, name):
    return {"frame_cell_dim": 16, "motion_features": True, "cell_positions": config.cell_positions}[name]


def _removed_field_matters(config, name):
    frames_from_cells = config.temporal in ("lstm", "gru") and (config.spatial_cells or 0) > 1
    return {
        "frame_cell_dim": frames_from_cells,
        "motion_features": config.temporal not in ("mean", "max") and not frames_from_cells,
        "cell_positions": config.video_embedding == "slots" or config.fusion == "text_guided",
    }.get(name, False)


def _version(text):
    return tuple(int(part) for part in text.split("."))


def _has_token_differences(config):
    """Whether the video tower runs `TemporalDifference` (see `kmm.models.towers`)."""
    slots = config.video_embedding == "slots" and "retrieval" in config.tasks
    return config.temporal not in ("mean", "max") or config.fusion == "text_guided" or slots


def _unbuildable(source, written_by, why, commit="d4f8e7f"):
    """The error for a saved config this version does not build; `commit`: the last that builds it."""
    from kmm import __version__

    return (
        f"{source} was written by kmm {written_by}, with a model kmm {__version__} does not build ({why}). "
        f"Retrain it, or load it with kmm at commit {commit}."
    )


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
