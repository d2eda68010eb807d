import numpy as np
import pytest
import tensorflow as tf

from kmm.encoders.builtin import package_dir
from kmm.encoders.tiny import TINY_VOCAB
from kmm.encoders.wordpiece import WordPieceTokenizer, read_vocab

REFERENCE = np.load(__import__("pathlib").Path(__file__).parents[1] / "fixtures" / "minilm_reference.npz")


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return WordPieceTokenizer(read_vocab(package_dir("minilm-l6") / "model" / "vocab.txt"))


def test_ids_equal_the_reference_tokenizer(minilm_tokenizer):
    sentences = [str(s) for s in REFERENCE["sentences"]]
    ids, mask = minilm_tokenizer(tf.constant(sentences))
    for i, row in enumerate(ids.numpy()):
        np.testing.assert_array_equal(row[mask.numpy()[i]], REFERENCE[f"ids_{i}"])
        assert not row[~mask.numpy()[i]].any(), "padding must be [PAD] = 0"


def test_live_against_hf_tokenizers(minilm_tokenizer):
    tokenizers = pytest.importorskip("tokenizers")
    ref = tokenizers.Tokenizer.from_file(str(package_dir("minilm-l6") / "model" / "tokenizer.json"))
    ref.no_padding()
    texts = ["Ünïcödé ACCENTS and CAPS", "tabs\tand\nnewlines", "emoji 🎸 guitar", "x" * 300, ""]
    ids, mask = minilm_tokenizer(tf.constant(texts))
    for i, t in enumerate(texts):
        expected = ref.encode(t).ids[:127] + ([102] if len(ref.encode(t).ids) > 127 else [])
        assert ids.numpy()[i][mask.numpy()[i]].tolist() == expected


def test_truncation_and_empty_text():
    tok = WordPieceTokenizer(TINY_VOCAB, max_length=5)
    ids, mask = tok(tf.constant(["red green blue yellow purple white", ""]))
    assert ids.shape == (2, 5)
    assert ids.numpy()[0, 0] == TINY_VOCAB.index("[CLS]") and ids.numpy()[0, -1] == TINY_VOCAB.index("[SEP]")
    assert mask.numpy().tolist() == [[True] * 5, [True, True, False, False, False]]


def test_same_inside_tf_data_as_eager():
    tok = WordPieceTokenizer(TINY_VOCAB, max_length=16)
    texts = ["a red circle moves left", "the blue star", "zzz unknownword"]
    eager_ids, eager_mask = tok(tf.constant(texts))
    ds = tf.data.Dataset.from_tensor_slices(texts).batch(3).map(tok)
    (ids, mask) = next(iter(ds))
    np.testing.assert_array_equal(ids, eager_ids)
    np.testing.assert_array_equal(mask, eager_mask)


def test_vocab_without_specials_is_rejected():
    with pytest.raises(ValueError, match=r"no \[CLS\]"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "[SEP]", "a"])
