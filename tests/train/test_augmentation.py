import numpy as np
import pytest

from kmm.data.synth import vocab
from kmm.models.config import PRESETS
from kmm.train.features import features_dataset, reversed_label_ids

LABELS = ("move_left", "move_right", "grow", "shrink", "wave")
PAIRS = (("move_left", "move_right"), ("grow", "shrink"))


def _arrays(n=64, frames=4, dim=6):
    rng = np.random.default_rng(0)
    return {
        "video_features": rng.normal(size=(n, frames, dim)).astype("float32"),
        "text_tokens": np.zeros((n, 3, 8), "float32"),
        "text_padding_mask": np.ones((n, 3), bool),
        "caption_tokens": np.zeros((n, 5, 8), "float32"),
        "caption_padding_mask": np.ones((n, 5), bool),
        "label_id": np.arange(n) % len(LABELS),
    }


def test_reversed_label_ids_map_both_ways_and_refuse_unknown_labels():
    np.testing.assert_array_equal(reversed_label_ids(LABELS, PAIRS), [1, 0, 3, 2, -1])
    with pytest.raises(ValueError, match="'jump', which is not one of the labels"):
        reversed_label_ids(LABELS, (("jump", "fall"),))
    assert {a for pair in vocab.TIME_REVERSAL for a in pair} == set(vocab.ACTIONS)


def test_time_reversal_flips_frames_and_labels_and_drops_the_caption_loss():
    arrays = _arrays()
    config = PRESETS["tiny"].replace(labels=LABELS)
    ds = features_dataset(arrays, config, batch_size=64, training=True, seed=1, time_reversal=PAIRS)
    x, y, w = next(iter(ds))
    original = {v.tobytes(): i for i, v in enumerate(arrays["video_features"])}
    flipped = kept = 0
    for video, label, weight in zip(
        x["video_features"].numpy(), y["logits"].numpy(), w["similarity"].numpy(), strict=True
    ):
        if video.tobytes() in original:  # played forwards: unchanged label, caption loss kept
            i = original[video.tobytes()]
            assert label == arrays["label_id"][i] and weight == 1.0
            kept += 1
        else:  # played backwards: a reversible label, mapped; no caption loss
            i = original[video[::-1].tobytes()]
            assert LABELS[label] == dict(PAIRS + tuple((b, a) for a, b in PAIRS))[LABELS[arrays["label_id"][i]]]
            assert weight == 0.0
            flipped += 1
    assert flipped > 10 and kept > 10  # about half of the 51 reversible clips, and all 13 "wave" clips kept


def test_time_reversal_with_cached_reversed_captions_keeps_the_caption_loss():
    arrays = _arrays()
    n = len(arrays["label_id"])
    arrays["caption_tokens"] = np.broadcast_to(np.arange(n, dtype="float32")[:, None, None], (n, 5, 8)).copy()
    arrays["reversed_caption_tokens"] = -arrays["caption_tokens"] - 1  # caption i backwards: -(i + 1)
    arrays["reversed_caption_padding_mask"] = arrays["caption_padding_mask"]
    config = PRESETS["tiny"].replace(labels=LABELS)
    ds = features_dataset(arrays, config, batch_size=64, training=True, seed=1, time_reversal=PAIRS)
    x, y, w = next(iter(ds))
    assert "reversed_caption_tokens" not in x
    original = {v.tobytes(): i for i, v in enumerate(arrays["video_features"])}
    flipped = 0
    for video, caption, weight in zip(
        x["video_features"].numpy(), x["caption_tokens"].numpy(), w["similarity"].numpy(), strict=True
    ):
        assert weight == 1.0
        if video.tobytes() in original:
            assert caption[0, 0] == original[video.tobytes()]
        else:  # the reversed clip comes with its reversed caption
            assert caption[0, 0] == -original[video[::-1].tobytes()] - 1
            flipped += 1
    assert flipped > 10


def test_reverse_caption_swaps_each_action_phrase_for_its_partner():
    assert vocab.reverse_caption("a red star grows larger while a blue square falls") == (
        "a red star shrinks down while a blue square rises"
    )
    assert vocab.reverse_caption("a white circle drifts left and a green triangle spins") == (
        "a white circle drifts right and a green triangle spins"
    )
    for phrases in vocab.PHRASES.values():  # an involution on every phrase
        for phrase in phrases:
            caption = f"a red square {phrase}"
            assert vocab.reverse_caption(vocab.reverse_caption(caption)) == caption
