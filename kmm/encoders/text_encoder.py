"""Assembles a WordPiece tokenizer and a BERT into a strings-in TF-Hub text encoder.

Exported interface (all in-graph, tensorflow-text ops only):
- `__call__(text, training=False)` and `serving_default`: `text` string `(batch,)` ->
  `sequence_output` `(batch, tokens, dim)`, `padding_mask` bool `(batch, tokens)`,
  `pooled_output` `(batch, dim)` (masked mean, as sentence-transformers pools).
- `tokenize`: `text` -> `input_ids`, `padding_mask` (for tf.data pipelines).
"""

import tensorflow as tf

from kmm import specs
from kmm.encoders.reusable_savedmodel import save_reusable_savedmodel
from kmm.encoders.wordpiece import WordPieceTokenizer
from kmm.layers.masks import masked_mean

TEXT_SPEC = tf.TensorSpec([None], tf.string, name=specs.TEXT)


def export_text_encoder(export_dir, bert, vocab, vocab_path, max_length, manifest):
    """Saves `bert` (from `build_bert`) with its tokenizer as a reusable SavedModel."""
    tokenizer = WordPieceTokenizer(vocab, max_length=max_length)

    def call(text, training=False):
        input_ids, padding_mask = tokenizer(text)
        sequence = bert({specs.INPUT_IDS: input_ids, specs.PADDING_MASK: padding_mask}, training=training)
        return {
            specs.SEQUENCE_OUTPUT: sequence,
            specs.PADDING_MASK: padding_mask,
            specs.POOLED_OUTPUT: masked_mean(sequence, padding_mask),
        }

    @tf.function(input_signature=[TEXT_SPEC])
    def tokenize(text):
        input_ids, padding_mask = tokenizer(text)
        return {specs.INPUT_IDS: input_ids, specs.PADDING_MASK: padding_mask}

    manifest = {**manifest, "kind": "text", "max_length": max_length, "dim": int(bert.output.shape[-1])}
    return save_reusable_savedmodel(
        export_dir,
        call,
        TEXT_SPEC,
        bert,
        functions={"tokenize": tokenize},
        assets=[vocab_path],
        manifest=manifest,
    )
