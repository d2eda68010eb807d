"""In-graph WordPiece tokenization with tensorflow-text, BERT style.

`[CLS] tokens [SEP]`, truncated to `max_length`, zero-padded to the longest row of the
batch, with a boolean padding mask (`True` = real token). Works eagerly, inside
`tf.data.Dataset.map` and inside a SavedModel (the tokenizer model is a graph constant).
"""

import tensorflow as tf
import tensorflow_text as tf_text


class WordPieceTokenizer(tf.Module):
    """Lower-casing, accent-stripping WordPiece tokenizer over a BERT vocabulary.

    Args:
        vocab: list of str. The vocabulary, one token per id (BERT `vocab.txt` order).
        max_length: int. Maximum tokens per text including `[CLS]` and `[SEP]`.
            Defaults to `128`.

    Example:

        >>> tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "cat"])
        >>> ids, mask = tok(tf.constant(["a cat"]))
        >>> ids.numpy().tolist()
        [[2, 4, 5, 3]]
    """

    def __init__(self, vocab, max_length=128, name=None):
        super().__init__(name=name)
        vocab = list(vocab)
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 to hold [CLS] and [SEP], got {max_length}.")
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in vocab:
                raise ValueError(f"The vocabulary has no {special} token.")
        self.max_length = max_length
        self.vocab_size = len(vocab)
        self.pad_id = vocab.index("[PAD]")
        self.cls_id = vocab.index("[CLS]")
        self.sep_id = vocab.index("[SEP]")
        self._tokenizer = tf_text.FastBertTokenizer(
            vocab=vocab,
            token_out_type=tf.int32,
            unknown_token="[UNK]",
            lower_case_nfd_strip_accents=True,
        )

    def __call__(self, text):
        """Tokenizes a `(batch,)` string tensor into `(input_ids, padding_mask)`, each `(batch, tokens)`."""
        text = tf.convert_to_tensor(text, dtype=tf.string)
        tokens = self._tokenizer.tokenize(text)  # (batch, (tokens)) ragged
        tokens = tokens[:, : self.max_length - 2]
        batch = tf.shape(text, out_type=tf.int64)[0]
        cls = tf.fill([batch, 1], self.cls_id)
        sep = tf.fill([batch, 1], self.sep_id)
        tokens = tf.concat([cls, tokens, sep], axis=1)
        input_ids = tokens.to_tensor(default_value=self.pad_id)  # (batch, tokens)
        padding_mask = tf.sequence_mask(tokens.row_lengths(), maxlen=tf.shape(input_ids, out_type=tf.int64)[1])
        return input_ids, padding_mask


def read_vocab(path):
    """Reads a BERT `vocab.txt` (one token per line) into a list."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]
