"""Moment hits: merging neighbouring windows, ids that say where, and the label timeline's tracks."""

import numpy as np

from kmm.moments.analyze import WindowResult
from kmm.moments.index import merge_moments, moment_id, parse_moment_id
from kmm.moments.timeline import timeline_json, tracks


def test_moment_ids_round_trip():
    assert parse_moment_id(moment_id("dir/a@b.mp4", 12.8, 15.36)) == ("dir/a@b.mp4", 12.8, 15.36)
    assert parse_moment_id("plain.mp4") == ("plain.mp4", None, None)
    assert parse_moment_id("odd@name.mp4") == ("odd@name.mp4", None, None)


def test_neighbours_that_score_alike_merge_and_weaker_ones_are_dropped():
    hits = [
        ("a", 5.0, 7.5, 1, 0.90),
        ("a", 7.5, 10.0, 1, 0.87),  # touches, nearly as good: the moment grows
        ("b", 0.0, 2.5, 0, 0.80),
        ("a", 2.5, 5.0, 0, 0.60),  # touches the moment but much weaker: the same place, dropped
        ("a", 30.0, 32.5, 4, 0.55),  # elsewhere in the video: its own moment
        ("a", 12.5, 15.0, 1, 0.86),  # same shot, one window away, alike: joins
    ]
    moments = merge_moments(hits, k=5)
    assert [(m["video"], m["start"], m["end"], m["windows"]) for m in moments] == [
        ("a", 5.0, 15.0, 3),
        ("b", 0.0, 2.5, 1),
        ("a", 30.0, 32.5, 1),
    ]
    assert [m["score"] for m in moments] == [0.90, 0.80, 0.55]
    assert len(merge_moments(hits, k=2)) == 2


def test_without_shots_only_touching_windows_merge():
    hits = [("a", 0.0, 2.5, None, 0.9), ("a", 5.0, 7.5, None, 0.89), ("a", 2.5, 5.0, None, 0.88)]
    assert [(m["start"], m["end"]) for m in merge_moments(hits, k=3)] == [(0.0, 7.5)]


def _window(start, end, action, score, obj="teapot"):
    return WindowResult(start, end, 0, [(action, score), ("other", 0.01)], [(obj, 0.3)], np.ones(2) / np.sqrt(2))


def test_tracks_merge_touching_windows_and_keep_each_window_on_the_timeline():
    windows = [_window(0, 2.5, "surfing water", 0.8), _window(2.5, 5, "surfing water", 0.6),
               _window(5, 7.5, "sailing", 0.05), _window(7.5, 10, "surfing water", 0.9)]  # fmt: skip
    found = {(t["label"], t["kind"]): t for t in tracks(windows)}
    surfing = found[("surfing water", "action")]
    assert [(s["start"], s["end"]) for s in surfing["segments"]] == [(0, 5), (7.5, 10)]
    assert surfing["segments"][0]["confidence"] == 0.7 and surfing["confidence"] == round((0.8 + 0.6 + 0.9) / 3, 4)
    assert ("sailing", "action") in found  # below MIN_SCORE, but the best this window has
    assert ("other", "action") not in found
    assert found[("teapot", "object")]["segments"] == [{"start": 0.0, "end": 10.0, "confidence": 0.3}]


def test_timeline_json_carries_gaps_and_own_labels():
    from kmm.moments.analyze import VideoAnalysis

    windows = [_window(0, 2.5, "surfing water", 0.8), _window(12.5, 15, "sailing", 0.7)]
    analysis = VideoAnalysis("v.mp4", windows, [[0, 2.5], [12.5, 15]], [[2.5, 12.5]], 15.0,
                             {"action": [("surfing water", 0.5)]}, {"frames": 10})  # fmt: skip
    own = [[("sea", 0.9), ("city", 0.1)], [("sea", 0.6), ("city", 0.4)]]
    doc = timeline_json(analysis, tracks(windows), own)
    assert doc["gaps"] == [{"start": 2.5, "end": 12.5}]
    assert doc["segments"][1]["labels"] == [["sea", 0.6], ["city", 0.4]]
    assert doc["labels"]["action"] == [{"label": "surfing water", "confidence": 0.5}]
