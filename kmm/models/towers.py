"""The video tower and the text tower, each a functional sub-model.

The towers are separate models so that video embeddings can be computed once, cached and
indexed; cross-modal attention lives only in the heads (`kmm.models.heads`), where a
(video, text) pair is scored.
"""

import keras

from kmm import specs
from kmm.layers import (
    AttentionPooling,
    L2Normalize,
    RecurrentTemporal,
    SlotPooling,
    SlotTracks,
    TemporalPooling,
    TemporalTransformer,
)
from kmm.layers.temporal import CellTemporalPooling, PositionEmbedding, TemporalDifference
from kmm.specs import (
    CAPTION_EMBEDDING,
    CAPTION_PADDING_MASK,
    CAPTION_TOKENS,
    VIDEO_CELLS,
    VIDEO_FEATURES,
    VIDEO_POOLED,
)

# Values each cell token is cut to before a frame's cells become its LSTM/GRU token.
FRAME_CELL_DIM = 16


def token_frames(config):
    """How many frames the video token axis spans (0: time pooled away, as with mean/max)."""
    if config.temporal in ("mean", "max"):
        return 0 if config.spatial_cells > 1 else config.feature_steps
    return config.feature_steps


def build_video_tower(config, feature_dim):
    """`video_features (b, t, feature_dim)` -> `video_tokens`, `video_pooled`, unit-norm `video_embedding`.

    With `spatial_cells > 1` the features are `cells` vectors per frame (a flattened
    feature map) and become `t * cells` spatio-temporal tokens with learned positions, so
    attention can follow an object from cell to cell. `mean` / `max` pool each cell over
    time (order-blind by construction); `lstm` / `gru` run over one projected vector per
    frame, from its cell tokens (where things are, and what changed since the last frame);
    `transformer` attends over all `t * cells` tokens.

    `video_embedding` (retrieval): `temporal` projects the temporal model's pooled vector;
    `slots` lets `config.slots` learned queries pick objects out of each frame's cell tokens
    (projected cell features with their change since the previous frame and their difference
    from the clip's mean, shared with
    `text_guided` fusion), runs an LSTM along each slot's frames and projects all the tracks
    together, so "a red circle moves left and a blue star spins" is not blurred into one
    whole-frame vector.
    """
    features = keras.Input((config.feature_steps, feature_dim), name=VIDEO_FEATURES)
    cells = 1 if config.temporal in ("lstm", "gru") else config.spatial_cells
    if feature_dim % config.spatial_cells:
        raise ValueError(f"feature_dim {feature_dim} is not divisible by spatial_cells {config.spatial_cells}")
    # === Layers ===
    slots = config.video_embedding == "slots" and "retrieval" in config.tasks
    from_cells = _frames_from_cells(config)
    # Cell tokens (with motion), shared by text-guided pooling, the slots and the frame tokens.
    cell_tokens = (
        _cell_tokens(features, config, feature_dim) if uses_video_cells(config) or slots or from_cells else None
    )
    x = _frame_tokens(cell_tokens, config) if from_cells else _feature_tokens(features, config, feature_dim, cells)
    if config.temporal in ("mean", "max") and cells > 1:
        per_cell = CellTemporalPooling(config.temporal, cells, name="temporal_pooling")(x)  # (b, cells, dim)
        tokens = PositionEmbedding(cells, name="cell_position")(per_cell)
        pooled = AttentionPooling(config.num_heads, name="spatial_attention_pooling")(tokens)
    elif config.temporal in ("mean", "max"):
        tokens = x
        pooled = TemporalPooling(config.temporal, name="temporal_pooling")(x)
    elif config.temporal == "transformer":
        tokens = TemporalTransformer(
            config.temporal_layers, config.num_heads, max_length=config.feature_steps * cells,
            dropout=config.dropout, name="temporal_transformer",
        )(x)  # fmt: skip
        pooled = None  # built below only where something uses it
    else:
        tokens = RecurrentTemporal(config.temporal, config.dim, name=f"temporal_{config.temporal}")(x)
        pooled = None
    if pooled is None and (uses_video_pooled(config) or not slots):
        pooled = AttentionPooling(config.num_heads, name="temporal_attention_pooling")(tokens)
    if slots:
        embedding = _slot_embedding(cell_tokens, config)
    else:
        embedding = keras.layers.Dense(config.dim, name="video_embedding_projection")(pooled)
    embedding = L2Normalize(name="video_embedding_norm")(embedding)
    outputs = {specs.VIDEO_TOKENS: tokens, specs.VIDEO_EMBEDDING: embedding}
    if uses_video_pooled(config):
        outputs[VIDEO_POOLED] = pooled
    if uses_video_cells(config):
        outputs[VIDEO_CELLS] = cell_tokens
    # === Functional Model ===
    return keras.Model(features, outputs, name="video_tower")


def _frames_from_cells(config):
    return config.temporal in ("lstm", "gru") and config.spatial_cells > 1


def _frame_tokens(cell_tokens, config):
    """One token a frame from its cell tokens, each cut to `FRAME_CELL_DIM` values and kept in
    place: the same "what is where, and what changed" as projecting the whole feature map, at
    a fraction of the cost."""
    x = keras.layers.Dense(FRAME_CELL_DIM, name="frame_cell_summary")(cell_tokens)
    x = keras.layers.Reshape((config.feature_steps, config.spatial_cells * FRAME_CELL_DIM), name="frames")(x)
    x = keras.layers.Dense(config.dim, name="frame_projection")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="token_norm")(x)
    return keras.layers.Dropout(config.dropout)(x)


def _feature_norm(name):
    """Normalizes the frozen encoder's features; its scale and shift stay at 1 and 0.

    The Dense layer after it (through the frame difference, which is linear) can learn any
    scale and shift itself, so training them adds nothing the model can express. Left
    fixed, nothing below this layer has a gradient to compute in stage 1, and the backward
    pass stops here: 16% of a training step of the default model (`benchmarks/training_step.py`).
    Weights saved before this was fixed load as they were.
    """
    return keras.layers.LayerNormalization(epsilon=1e-6, trainable=False, name=name)


def _feature_tokens(features, config, feature_dim, cells):
    """Tokens projected from the raw features: `cells` per frame (1: the whole flattened map)."""
    x = features
    if cells > 1:
        x = keras.layers.Reshape((config.feature_steps * cells, feature_dim // cells), name="cells")(x)
    x = _feature_norm("feature_norm")(x)
    if config.temporal not in ("mean", "max"):
        x = TemporalDifference(cells, name="motion")(x)  # (b, t * cells, 3 * c)
    x = keras.layers.Dense(config.dim, name="cell_projection" if cells > 1 else "frame_projection")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="token_norm")(x)
    return keras.layers.Dropout(config.dropout)(x)


def uses_video_pooled(config):
    """Whether the classification head takes the video tower's pooled vector."""
    return "classification" in config.tasks and config.fusion in ("none", "concat")


def uses_video_cells(config):
    """Whether the classification head takes the video tower's cell tokens (text-guided fusion)."""
    return config.fusion == "text_guided"


def _cell_tokens(features, config, feature_dim):
    """Per-cell tokens `(b, t * cells, dim)` with their differences (`TemporalDifference`), for
    text-guided pooling, the slots and the frame tokens."""
    cells = config.spatial_cells
    x = keras.layers.Reshape((config.feature_steps * cells, feature_dim // cells), name="guided_cells")(features)
    x = _feature_norm("guided_feature_norm")(x)
    x = TemporalDifference(cells, name="guided_motion")(x)
    x = keras.layers.Dense(config.dim, name="guided_cell_projection")(x)
    return keras.layers.LayerNormalization(epsilon=1e-6, name="guided_cell_norm")(x)


def _slot_embedding(cell_tokens, config):
    """Object-slot tracks over the cell tokens -> `(b, dim)` (not normalized)."""
    frames, dim = config.feature_steps, config.dim
    # The cell tokens already carry each cell's change since the previous frame, so a slot
    # sees motion without a difference of its own.
    x = SlotPooling(frames, config.spatial_cells, config.slots, config.cell_positions, name="slot_pooling")(
        cell_tokens
    )  # (b, t * slots, dim [+ 3: x, y, radius])
    x = SlotTracks(frames, config.slots, dim, name="slot_tracks")(x)  # (b, slots, dim)
    x = keras.layers.Dropout(config.dropout)(x)
    x = keras.layers.Flatten(name="slot_concat")(x)
    x = keras.layers.Dense(2 * dim, activation="gelu", name="slot_hidden")(x)
    return keras.layers.Dense(dim, name="video_embedding_projection")(x)


def caption_keys(config):
    """Names of the text tower's inputs: `caption_embedding`, or `caption_tokens` + `caption_padding_mask`."""
    return (CAPTION_EMBEDDING,) if config.text_embedding == "pooled" else (CAPTION_TOKENS, CAPTION_PADDING_MASK)


def text_tower_inputs(config, text_dim):
    """The text tower's `keras.Input`s, keyed by `caption_keys(config)`."""
    if config.text_embedding == "pooled":
        return {CAPTION_EMBEDDING: keras.Input((text_dim,), name=CAPTION_EMBEDDING)}
    return {
        CAPTION_TOKENS: keras.Input((None, text_dim), name=CAPTION_TOKENS),  # up to max_caption_tokens
        CAPTION_PADDING_MASK: keras.Input((None,), dtype="bool", name=CAPTION_PADDING_MASK),
    }


def build_text_tower(config, text_dim):
    """Caption -> `text_embedding (b, dim)` (unit norm), for retrieval.

    `text_embedding="pooled"`: an MLP on the encoder's pooled vector. `"tokens"`: a
    Transformer block and attention pooling over the encoder's caption tokens, which keeps
    which word goes with which ("a red circle ... and a blue star ...") where a mean of the
    tokens mixes them.
    """
    inputs = text_tower_inputs(config, text_dim)
    if config.text_embedding == "pooled":
        x = keras.layers.Dense(config.dim, activation="gelu", name="text_hidden")(inputs[CAPTION_EMBEDDING])
        x = keras.layers.Dropout(config.dropout)(x)
    else:
        mask = inputs[CAPTION_PADDING_MASK]
        x = keras.layers.Dense(config.dim, name="caption_token_projection")(inputs[CAPTION_TOKENS])
        x = keras.layers.LayerNormalization(epsilon=1e-6, name="caption_token_norm")(x)
        context = TemporalTransformer(
            1, config.num_heads, config.max_caption_tokens, config.dropout, name="caption_transformer"
        )
        x = context(x, padding_mask=mask)
        x = AttentionPooling(config.num_heads, name="caption_attention_pooling")(x, padding_mask=mask)
    x = keras.layers.Dense(config.dim, name="text_embedding_projection")(x)
    return keras.Model(inputs, L2Normalize(name="text_embedding_norm")(x), name="text_tower")
