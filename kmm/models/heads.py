"""The classification head: video and text fused (seed 3.2), a functional sub-model."""

import keras

from kmm import specs
from kmm.layers import (
    AttentionPooling,
    ConcatFusion,
    CrossModalFusion,
    RecurrentTemporal,
    TextGuidedPooling,
)
from kmm.layers.summary import FrameAttention, MaskedMean
from kmm.models.towers import token_frames, uses_video_pooled
from kmm.specs import FRAME_ATTENTION, LOGITS, VIDEO_CELLS, VIDEO_POOLED


def build_classification_head(config, text_dim):
    """Video tokens + text tokens -> `logits (b, classes)` and `frame_attention (b, t)`.

    `fusion`: `none` (video only), `concat` (pooled video ++ pooled text, seed 3.2.1),
    `cross_attention` (video tokens attend to text tokens, seed 3.2.2), `co_attention`
    (both directions) or `text_guided` (in each frame the text attends over spatial cells,
    then an RNN over time: best for referring expressions; the clip's video embedding, its
    object-slot tracks, joins the fused vector). `frame_attention` says how much each frame
    mattered (uniform for `none` / `concat`).
    """
    video_tokens = keras.Input((None, config.dim), name=specs.VIDEO_TOKENS)
    text_tokens = keras.Input((None, text_dim), name=specs.TEXT_TOKENS)
    text_mask = keras.Input((None,), dtype="bool", name=specs.TEXT_PADDING_MASK)
    inputs = {specs.VIDEO_TOKENS: video_tokens, specs.TEXT_TOKENS: text_tokens, specs.TEXT_PADDING_MASK: text_mask}
    if uses_video_pooled(config):
        inputs[VIDEO_POOLED] = video_pooled = keras.Input((config.dim,), name=VIDEO_POOLED)
    if config.fusion == "text_guided":
        inputs[VIDEO_CELLS] = keras.Input((config.feature_steps * config.spatial_cells, config.dim), name=VIDEO_CELLS)
        inputs[specs.VIDEO_EMBEDDING] = keras.Input((config.dim,), name=specs.VIDEO_EMBEDDING)
    text = keras.layers.Dense(config.dim, name="text_token_projection")(text_tokens)  # (b, l, dim)
    text = keras.layers.LayerNormalization(epsilon=1e-6, name="text_token_norm")(text)
    text_pooled = MaskedMean(name="text_pooling")(text, text_mask)
    if config.fusion == "none":
        fused = video_pooled
        attention = FrameAttention(config.feature_steps, 0, name="uniform_attention")(video_tokens)
    elif config.fusion == "concat":
        fused = ConcatFusion(config.dim, config.dropout, name="concat_fusion")(video_pooled, text_pooled)
        attention = FrameAttention(config.feature_steps, 0, name="uniform_attention")(video_tokens)
    elif config.fusion == "text_guided":
        # Each frame: the text attends over that frame's cells (which object), then an RNN
        # follows that object's features, next to the whole-frame tokens, over time.
        guided = TextGuidedPooling(
            config.feature_steps, config.spatial_cells, config.cell_positions, name="text_guided_pooling"
        )(inputs[VIDEO_CELLS], text_pooled)  # (b, t, dim [+ 2])
        per_frame = config.temporal in ("lstm", "gru") or config.spatial_cells == 1
        sequence = keras.layers.Concatenate(name="guided_and_frames")([guided, video_tokens]) if per_frame else guided
        sequence = RecurrentTemporal(
            "gru" if config.temporal == "gru" else "lstm", config.dim, name="guided_temporal"
        )(keras.layers.Dropout(config.dropout)(sequence))  # fmt: skip
        pooled, scores = AttentionPooling(config.num_heads, name="guided_attention_pooling")(
            sequence, return_attention_scores=True
        )
        attention = FrameAttention(config.feature_steps, config.feature_steps, name="frame_attention")(sequence, scores)
        # The video tower's embedding follows every object (slots), so the head need not
        # learn to find the one object of a plain action clip over a busy background itself.
        fused = keras.layers.Concatenate(name="fused")([pooled, text_pooled, inputs[specs.VIDEO_EMBEDDING]])
    else:
        co = config.fusion == "co_attention"
        video, text = CrossModalFusion(
            config.fusion_layers, config.num_heads, co_attention=co, dropout=config.dropout, name="cross_modal_fusion"
        )(video_tokens, text, text_mask=text_mask)
        pooled, scores = AttentionPooling(config.num_heads, name="fused_attention_pooling")(
            video, return_attention_scores=True
        )
        attention = FrameAttention(config.feature_steps, token_frames(config), name="frame_attention")(
            video_tokens, scores
        )
        text_pooled = MaskedMean(name="fused_text_pooling")(text, text_mask)
        fused = keras.layers.Concatenate(name="fused")([pooled, text_pooled])
    hidden = keras.layers.Dense(config.dim, activation="gelu", name="classifier_hidden")(fused)
    hidden = keras.layers.Dropout(config.dropout)(hidden)
    logits = keras.layers.Dense(len(config.labels), name="classifier")(hidden)
    return keras.Model(inputs, {LOGITS: logits, FRAME_ATTENTION: attention}, name="classification_head")
