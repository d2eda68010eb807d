"""Tokenization inside tf.data with the text encoder's own vocabulary.

The tokenizer is rebuilt from the encoder SavedModel's `assets/vocab.txt` and its
`max_length`, so ids equal what the encoder computes in its graph.
"""

from pathlib import Path

import tensorflow as tf

from kmm import specs
from kmm.encoders.reusable_savedmodel import read_manifest as read_encoder_manifest
from kmm.encoders.wordpiece import WordPieceTokenizer, read_vocab
from kmm.hub.handles import resolve_handle


def tokenizer_for(handle="kmm://minilm-l6", max_length=None):
    """A `WordPieceTokenizer` matching a kmm-built text encoder.

    Args:
        handle: str. A kmm text encoder handle or folder.
        max_length: int or None. Defaults to the encoder's own maximum.
    """
    folder = Path(resolve_handle(handle))
    vocab = folder / "assets" / "vocab.txt"
    if not vocab.exists():
        raise FileNotFoundError(f"{handle}: no assets/vocab.txt; only kmm-built text encoders ship their vocabulary.")
    max_length = max_length or read_encoder_manifest(folder).get("max_length", 128)
    return WordPieceTokenizer(read_vocab(vocab), max_length=max_length)


def add_tokens(dataset, tokenizer, key=specs.CAPTION):
    """Maps a batched dataset of dicts, adding `<key>_ids` and `<key>_mask`."""

    def tokenize(batch):
        ids, mask = tokenizer(batch[key])
        return {**batch, f"{key}_ids": ids, f"{key}_mask": mask}

    return dataset.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
