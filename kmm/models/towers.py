"""The video tower, text tower and classification head, each a functional sub-model.

The towers are separate models so that video embeddings can be computed once, cached and
indexed; cross-modal attention lives only in the classification head, where a (video,
text) pair is scored.
"""

import keras

from kmm import specs
from kmm.layers import (
    AttentionPooling,
    ConcatFusion,
    CrossModalFusion,
    L2Normalize,
    RecurrentTemporal,
    TemporalPooling,
    TemporalTransformer,
    TextGuidedPooling,
)
from kmm.layers.summary import FrameAttention, MaskedMean
from kmm.layers.temporal import CellTemporalPooling, PositionEmbedding, TemporalDifference

VIDEO_FEATURES = "video_features"
VIDEO_CELLS = "video_cells"  # (b, t * cells, dim), only for fusion="text_guided"
CAPTION_EMBEDDING = "caption_embedding"
FRAME_ATTENTION = "frame_attention"
LOGITS = "logits"


def token_frames(config):
    """How many frames the video token axis spans (0: time pooled away, as with mean/max)."""
    if config.temporal in ("mean", "max"):
        return 0 if config.spatial_cells > 1 else config.num_frames
    return config.num_frames


def build_video_tower(config, feature_dim):
    """`video_features (b, t, feature_dim)` -> `video_tokens`, `video_pooled`, unit-norm `video_embedding`.

    With `spatial_cells > 1` the features are `cells` vectors per frame (a flattened
    feature map) and become `t * cells` spatio-temporal tokens with learned positions, so
    attention can follow an object from cell to cell. `mean` / `max` pool each cell over
    time (order-blind by construction); `lstm` / `gru` run over one projected vector per
    frame (the flattened map: where things are, and what changed since the last frame);
    `transformer` attends over all `t * cells` tokens.
    """
    features = keras.Input((config.num_frames, feature_dim), name=VIDEO_FEATURES)
    cells = 1 if config.temporal in ("lstm", "gru") else config.spatial_cells
    if feature_dim % config.spatial_cells:
        raise ValueError(f"feature_dim {feature_dim} is not divisible by spatial_cells {config.spatial_cells}")
    # === Layers ===
    x = features
    if cells > 1:
        x = keras.layers.Reshape((config.num_frames * cells, feature_dim // cells), name="cells")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="feature_norm")(x)
    if config.motion_features and config.temporal not in ("mean", "max"):
        x = TemporalDifference(cells, name="motion")(x)  # (b, t * cells, 2 * c)
    x = keras.layers.Dense(config.dim, name="cell_projection" if cells > 1 else "frame_projection")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="token_norm")(x)
    x = keras.layers.Dropout(config.dropout)(x)
    if config.temporal in ("mean", "max") and cells > 1:
        per_cell = CellTemporalPooling(config.temporal, cells, name="temporal_pooling")(x)  # (b, cells, dim)
        tokens = PositionEmbedding(cells, name="cell_position")(per_cell)
        pooled = AttentionPooling(config.num_heads, name="spatial_attention_pooling")(tokens)
    elif config.temporal in ("mean", "max"):
        tokens = x
        pooled = TemporalPooling(config.temporal, name="temporal_pooling")(x)
    elif config.temporal == "transformer":
        tokens = TemporalTransformer(
            config.temporal_layers, config.num_heads, max_length=config.num_frames * cells,
            dropout=config.dropout, name="temporal_transformer",
        )(x)  # fmt: skip
        pooled = AttentionPooling(config.num_heads, name="temporal_attention_pooling")(tokens)
    else:
        tokens = RecurrentTemporal(config.temporal, config.dim, name=f"temporal_{config.temporal}")(x)
        pooled = AttentionPooling(config.num_heads, name="temporal_attention_pooling")(tokens)
    embedding = keras.layers.Dense(config.dim, name="video_embedding_projection")(pooled)
    embedding = L2Normalize(name="video_embedding_norm")(embedding)
    outputs = {specs.VIDEO_TOKENS: tokens, specs.VIDEO_EMBEDDING: embedding, "video_pooled": pooled}
    if config.fusion == "text_guided":
        outputs[VIDEO_CELLS] = _cell_tokens(features, config, feature_dim)
    # === Functional Model ===
    return keras.Model(features, outputs, name="video_tower")


def _cell_tokens(features, config, feature_dim):
    """Per-cell tokens `(b, t * cells, dim)` with frame differences, for text-guided pooling."""
    cells = config.spatial_cells
    x = keras.layers.Reshape((config.num_frames * cells, feature_dim // cells), name="guided_cells")(features)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="guided_feature_norm")(x)
    x = TemporalDifference(cells, name="guided_motion")(x)
    x = keras.layers.Dense(config.dim, name="guided_cell_projection")(x)
    return keras.layers.LayerNormalization(epsilon=1e-6, name="guided_cell_norm")(x)


def build_text_tower(config, text_dim):
    """`caption_embedding (b, text_dim)` -> `text_embedding (b, dim)` (unit norm), for retrieval."""
    pooled = keras.Input((text_dim,), name=CAPTION_EMBEDDING)
    x = keras.layers.Dense(config.dim, activation="gelu", name="text_hidden")(pooled)
    x = keras.layers.Dropout(config.dropout)(x)
    x = keras.layers.Dense(config.dim, name="text_embedding_projection")(x)
    return keras.Model(pooled, L2Normalize(name="text_embedding_norm")(x), name="text_tower")


def build_classification_head(config, text_dim):
    """Video tokens + text tokens -> `logits (b, classes)` and `frame_attention (b, t)`.

    `fusion`: `none` (video only), `concat` (pooled video ++ pooled text, seed 3.2.1),
    `cross_attention` (video tokens attend to text tokens, seed 3.2.2), `co_attention`
    (both directions) or `text_guided` (in each frame the text attends over spatial cells,
    then an RNN over time: best for referring expressions). `frame_attention` says how much each frame mattered (uniform for
    `none` / `concat`).
    """
    video_tokens = keras.Input((None, config.dim), name=specs.VIDEO_TOKENS)
    video_pooled = keras.Input((config.dim,), name="video_pooled")
    text_tokens = keras.Input((None, text_dim), name=specs.TEXT_TOKENS)
    text_mask = keras.Input((None,), dtype="bool", name=specs.TEXT_PADDING_MASK)
    inputs = {
        specs.VIDEO_TOKENS: video_tokens,
        "video_pooled": video_pooled,
        specs.TEXT_TOKENS: text_tokens,
        specs.TEXT_PADDING_MASK: text_mask,
    }
    if config.fusion == "text_guided":
        inputs[VIDEO_CELLS] = keras.Input((config.num_frames * config.spatial_cells, config.dim), name=VIDEO_CELLS)
    text = keras.layers.Dense(config.dim, name="text_token_projection")(text_tokens)  # (b, l, dim)
    text = keras.layers.LayerNormalization(epsilon=1e-6, name="text_token_norm")(text)
    text_pooled = MaskedMean(name="text_pooling")(text, text_mask)
    if config.fusion == "none":
        fused = video_pooled
        attention = FrameAttention(config.num_frames, 0, name="uniform_attention")(video_tokens)
    elif config.fusion == "concat":
        fused = ConcatFusion(config.dim, config.dropout, name="concat_fusion")(video_pooled, text_pooled)
        attention = FrameAttention(config.num_frames, 0, name="uniform_attention")(video_tokens)
    elif config.fusion == "text_guided":
        # Each frame: the text attends over that frame's cells (which object), then an RNN
        # follows that object's features, next to the whole-frame tokens, over time.
        guided = TextGuidedPooling(config.num_frames, config.spatial_cells, name="text_guided_pooling")(
            inputs[VIDEO_CELLS], text_pooled
        )  # (b, t, dim)
        per_frame = config.temporal in ("lstm", "gru") or config.spatial_cells == 1
        sequence = keras.layers.Concatenate(name="guided_and_frames")([guided, video_tokens]) if per_frame else guided
        sequence = RecurrentTemporal(
            "gru" if config.temporal == "gru" else "lstm", config.dim, name="guided_temporal"
        )(keras.layers.Dropout(config.dropout)(sequence))  # fmt: skip
        pooled, scores = AttentionPooling(config.num_heads, name="guided_attention_pooling")(
            sequence, return_attention_scores=True
        )
        attention = FrameAttention(config.num_frames, config.num_frames, name="frame_attention")(sequence, scores)
        fused = keras.layers.Concatenate(name="fused")([pooled, text_pooled])
    else:
        co = config.fusion == "co_attention"
        video, text = CrossModalFusion(
            config.fusion_layers, config.num_heads, co_attention=co, dropout=config.dropout, name="cross_modal_fusion"
        )(video_tokens, text, text_mask=text_mask)
        pooled, scores = AttentionPooling(config.num_heads, name="fused_attention_pooling")(
            video, return_attention_scores=True
        )
        attention = FrameAttention(config.num_frames, token_frames(config), name="frame_attention")(
            video_tokens, scores
        )
        text_pooled = MaskedMean(name="fused_text_pooling")(text, text_mask)
        fused = keras.layers.Concatenate(name="fused")([pooled, text_pooled])
    hidden = keras.layers.Dense(config.dim, activation="gelu", name="classifier_hidden")(fused)
    hidden = keras.layers.Dropout(config.dropout)(hidden)
    logits = keras.layers.Dense(len(config.labels), name="classifier")(hidden)
    return keras.Model(inputs, {LOGITS: logits, FRAME_ATTENTION: attention}, name="classification_head")
