"""Tiny random encoders with the exact interface of the real offline ones, for fast tests.

They are built from the same code paths (`build_bert`, `build_efficientnet_lite`, the
same export functions), only narrower and randomly initialized from a fixed seed.
"""

import string

import keras

from kmm.encoders.bert import BertConfig
from kmm.encoders.efficientnet_lite import EfficientNetLiteConfig

_WORDS = (
    "a an the and while is are in on of to with video clip man woman person plays playing guitar "
    "red green blue yellow purple white circle square triangle star moves move slides left right "
    "up down grows shrinks rotates spins still stays object"
).split()

TINY_VOCAB = list(
    dict.fromkeys(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + list(string.ascii_lowercase + string.digits + string.punctuation)
        + ["##" + c for c in string.ascii_lowercase + string.digits]
        + _WORDS
    )
)

TINY_BERT = BertConfig(
    vocab_size=len(TINY_VOCAB), hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=64
)
TINY_CNN = EfficientNetLiteConfig(
    blocks=((1, 3, 1, 1, 8, 8), (1, 3, 2, 2, 8, 16)), stem_channels=8, head_channels=32, num_classes=10
)
TINY_MAX_LENGTH = 32
TINY_IMAGE_SIZE = 32


def seed():
    keras.utils.set_random_seed(1234)
