"""Keras 3 layers for video-text fusion, built on `keras.layers.MultiHeadAttention`."""

from kmm.layers.fusion import ConcatFusion, CrossModalAttention, CrossModalFusion, TextGuidedPooling
from kmm.layers.retrieval import L2Normalize, SimilarityLogits
from kmm.layers.slots import SlotPooling, SlotTracks
from kmm.layers.temporal import (
    AttentionPooling,
    PositionEmbedding,
    RecurrentTemporal,
    TemporalPooling,
    TemporalTransformer,
    TransformerBlock,
)

__all__ = [
    "AttentionPooling",
    "ConcatFusion",
    "CrossModalAttention",
    "CrossModalFusion",
    "L2Normalize",
    "PositionEmbedding",
    "RecurrentTemporal",
    "SimilarityLogits",
    "SlotPooling",
    "SlotTracks",
    "TemporalPooling",
    "TemporalTransformer",
    "TextGuidedPooling",
    "TransformerBlock",
]
