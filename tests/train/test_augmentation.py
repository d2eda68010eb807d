import numpy as np
import pytest

from kmm.data.synth import vocab
from kmm.features.arrays import caption_group_ids
from kmm.models.config import PRESETS
from kmm.train.batches import features_dataset, reversed_label_ids

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


def test_caption_content_ignores_wording_and_clause_order_and_refuses_other_text():
    a = vocab.caption_content("a red star grows larger while a blue square falls")
    assert (
        a
        == vocab.caption_content("a blue square sinks and a red star expands")
        == "blue square move_down; red star grow"
    )
    assert a != vocab.caption_content("a red star shrinks while a blue square falls")
    with pytest.raises(ValueError, match="Not a kmm-shapes caption clause: 'a red star dances'"):
        vocab.caption_content("a red star dances")


def test_caption_groups_share_one_id_space_with_the_reversed_captions():
    arrays = {
        "label_id": np.zeros(3, np.int32),
        "caption": np.array([b"a", b"b", b"a"]),
        "caption_group": np.array([b"x", b"y", b"x"]),
        "reversed_caption_group": np.array([b"y", b"z", b"x"]),
    }
    groups, backwards = caption_group_ids(arrays)
    assert groups[0] == groups[2] != groups[1]
    assert backwards[0] == groups[1] and backwards[2] == groups[0] and backwards[1] not in groups
    del arrays["caption_group"], arrays["reversed_caption_group"]  # no keys cached: equal captions
    groups, backwards = caption_group_ids(arrays)
    assert groups[0] == groups[2] != groups[1] and backwards is None
    del arrays["caption"]  # no captions: one group per clip
    np.testing.assert_array_equal(caption_group_ids(arrays)[0], [0, 1, 2])


def test_reversal_pairs_put_both_directions_of_a_clip_in_one_batch():
    n, p, frames = 96, 8, 4
    arrays = _arrays(n, frames)
    arrays["video_features"][:, :, 0] = np.arange(n)[:, None]  # the row id, in every frame
    arrays["video_features"][:, :, 1] = np.arange(frames)  # the frame index: reversed if it runs down
    arrays["caption_tokens"] = np.broadcast_to(np.arange(n, dtype="float32")[:, None, None], (n, 5, 8)).copy()
    arrays["reversed_caption_tokens"] = -arrays["caption_tokens"] - 1
    arrays["reversed_caption_padding_mask"] = arrays["caption_padding_mask"]
    content = np.array(LABELS)[arrays["label_id"]]
    backwards = {"move_left": "move_right", "move_right": "move_left", "grow": "shrink", "shrink": "grow"}
    arrays["caption_group"] = np.array([c.encode() for c in content])
    arrays["reversed_caption_group"] = np.array([backwards.get(c, c).encode() for c in content])
    config = PRESETS["tiny"].replace(labels=LABELS)
    ds = features_dataset(arrays, config, batch_size=32, training=True, seed=0, time_reversal=PAIRS, reversal_pairs=p)
    assert int(ds.cardinality()) == n // 32
    for x, y, w in ds:
        rows = x["video_features"].numpy()[:, 0, 0].astype(int)
        reversed_ = x["video_features"].numpy()[:, 0, 1] == frames - 1
        captions = x["caption_tokens"].numpy()[:, 0, 0]
        assert len(set(rows[:-p])) == 32 - p  # distinct random clips, then their p twins
        for twin in range(32 - p, 32):
            first = int(np.flatnonzero(rows[:-p] == rows[twin])[0])
            assert reversed_[twin] != reversed_[first]  # the same clip, the other way round
            assert LABELS[arrays["label_id"][rows[twin]]] in backwards  # a reversal that says something else
            for i in (first, twin):  # each with the caption of its own direction
                assert captions[i] == (-rows[i] - 1 if reversed_[i] else rows[i])
        groups = y["similarity"].numpy()
        assert (groups[-p:] != groups[[int(np.flatnonzero(rows == r)[0]) for r in rows[-p:]]]).all()
        assert (w["similarity"].numpy() == 1.0).all()
    with pytest.raises(ValueError, match="reversal_pairs=8 needs time_reversal"):
        features_dataset(arrays, config, batch_size=32, training=True, reversal_pairs=p)
