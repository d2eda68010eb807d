"""Shots and windows: the online segmenter on synthetic streams, and on files made in tmp_path."""

import numpy as np
import pytest

from kmm.data.segments import SegmentConfig, Segmenter
from kmm.data.video_io import VideoDecodeError

CONFIG = SegmentConfig(window_s=1.0, frames=4, size=8)


def _frame(value):
    return np.full((8, 8, 3), value, np.uint8)


def _run(times, cuts=(), config=CONFIG, end=None):
    """Pushes a frame at each time (its value = its position); returns (windows, segmenter)."""
    seg = Segmenter(config)
    windows = [w for i, t in enumerate(times) for w in seg.push(t, _frame(i), i in cuts)]
    return windows + seg.finish(end), seg


def _spans(windows):
    return [(round(w.start, 3), round(w.end, 3), w.shot) for w in windows]


def test_windows_tile_each_shot_without_gaps():
    windows, seg = _run(np.arange(125) / 25, cuts={60})  # 5 s, a cut at 2.4 s
    assert _spans(windows) == [(0, 1, 0), (1, 2.4, 0), (2.4, 3.4, 1), (3.4, 4.4, 1), (4.4, 5, 1)]
    assert seg.shots == [[0, 2.4], [2.4, 5]] and seg.gaps == []
    assert all(w.frames.shape == (4, 8, 8, 3) for w in windows)
    for a, b in zip(windows, windows[1:], strict=False):
        assert a.end == pytest.approx(b.start)


def test_frames_are_the_ones_on_screen_at_the_grid_times():
    windows, _ = _run(np.arange(50) / 25)  # frame i shown from i / 25 s
    grid = [(j + 0.5) * 0.25 for j in range(4)]  # the first window's sampling times
    assert windows[0].frames[:, 0, 0, 0].tolist() == [int(t * 25) for t in grid]


def test_a_short_tail_is_folded_into_the_window_before():
    windows, _ = _run(np.arange(55) / 25)  # 2.2 s: a 0.2 s tail
    assert _spans(windows) == [(0, 1, 0), (1, 2.2, 0)]
    assert windows[1].frames.shape[0] == 4


def test_a_one_frame_video_and_a_one_frame_shot_get_a_window():
    windows, seg = _run([0.0])
    assert _spans(windows) == [(0, 0.25, 0)] and windows[0].frames.shape == (4, 8, 8, 3)
    windows, _ = _run(np.arange(50) / 25, cuts={25, 26})  # a one-frame shot at 1.0 s
    assert (1.0, 1.04, 1) in _spans(windows)


def test_variable_frame_rate_uses_the_timestamps():
    times = np.concatenate([np.arange(25) / 25, 1 + np.arange(50) / 50])  # 25 fps, then 50 fps
    windows, _ = _run(times)
    assert _spans(windows) == [(0, 1, 0), (1, 2.0, 0)]
    assert windows[1].frames[:, 0, 0, 0].tolist() == [25 + int(((j + 0.5) * 0.25) * 50) for j in range(4)]


def test_a_jump_in_timestamps_is_a_gap_not_a_stretched_window():
    times = np.concatenate([np.arange(25) / 25, 10 + np.arange(25) / 25])  # nothing from 1 s to 10 s
    windows, seg = _run(times)
    assert seg.gaps == [[1.0, 10.0]]
    assert _spans(windows) == [(0, 1.0, 0), (10, 11.0, 1)]


def test_timestamps_going_backwards_are_counted_and_kept_in_order():
    times = [0.0, 0.04, 0.08, 0.02, 0.16]
    windows, seg = _run(times)
    assert seg.reordered == 1
    assert all(b.start >= a.end - 1e-9 for a, b in zip(windows, windows[1:], strict=False))


def test_memory_does_not_grow_with_the_length():
    seg = Segmenter(CONFIG)
    count = 0
    for i in range(25 * 600):  # 10 minutes
        count += len(seg.push(i / 25, _frame(0), i % 1000 == 999))
        assert len(seg._samples) < CONFIG.frames and (seg._pending is None or seg._pending.frames.shape[0] == 4)
    count += len(seg.finish())
    assert 600 <= count <= 615  # 2.56 s windows, and a shorter tail at each of the 14 cuts


def test_config_is_checked():
    with pytest.raises(ValueError, match="positive"):
        SegmentConfig(window_s=0)


# === Files ===


def _cuts_clip(path, colours, seconds=1.0, fps=25, size=(64, 48)):
    """A clip of flat colour shots (hard cuts between them)."""
    from tests.data.clips import write_cv2

    frames = [np.full((size[1], size[0], 3), c, np.uint8) for c in colours for _ in range(int(seconds * fps))]
    noise = np.random.default_rng(0).integers(0, 12, (len(frames), size[1], size[0], 3), dtype=np.uint8)
    return write_cv2(path, np.stack(frames) + noise, fps=fps)


def test_decode_windows_finds_hard_cuts(tmp_path):
    from kmm.data.shot_stream import decode_windows

    path = _cuts_clip(tmp_path / "cuts.mp4", [(230, 230, 230), (20, 20, 20), (200, 30, 30)], seconds=2.0)
    stats = {}
    windows = list(decode_windows(path, SegmentConfig(size=32), stats=stats))
    assert [round(s, 2) for s, _ in stats["shots"]] == [0, 2.0, 4.0]
    assert stats["frames"] == 150 and stats["gaps"] == []
    assert windows[0].frames.shape == (16, 32, 32, 3) and windows[-1].end == pytest.approx(6.0)


def test_the_worker_gives_the_same_windows(tmp_path):
    from kmm.data.decoder import stream_windows
    from kmm.data.shot_stream import decode_windows

    path = _cuts_clip(tmp_path / "cuts.mp4", [(230, 230, 230), (20, 20, 20)], seconds=1.5)
    config = SegmentConfig(size=32)
    here, there = list(decode_windows(path, config)), list(stream_windows(path, config))
    assert [w.describe() for w in here] == [w.describe() for w in there]
    for a, b in zip(here, there, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)


def test_a_strobe_makes_a_bounded_number_of_shots(tmp_path):
    from kmm.data.decoder import stream_windows

    path = _cuts_clip(tmp_path / "strobe.mp4", [(250, 250, 250), (5, 5, 5)] * 150, seconds=1 / 25)  # a cut every frame
    stats = {}
    windows = list(stream_windows(path, SegmentConfig(size=32), stats=stats))
    assert stats["frames"] == 300
    # Cuts at least min_shot_s (0.25 s) apart, in whole frames: 0.24 s at 25 fps; 12 s of strobe.
    assert 10 <= len(stats["shots"]) <= 12 / 0.24 + 1
    assert windows[-1].end == pytest.approx(12.0) and all(
        b.start == a.end for a, b in zip(windows, windows[1:], strict=False)
    )


def test_timestamps_that_jump_are_reported_as_a_gap(tmp_path):
    from kmm.data.decoder import stream_windows
    from tests.data.clips import ffmpeg

    source = _cuts_clip(tmp_path / "a.mp4", [(120, 80, 40)], seconds=4.0)
    path = tmp_path / "jump.mp4"
    ffmpeg("-i", source, "-vf", "setpts='if(lt(N,50),PTS,PTS+10/TB)'", "-fps_mode", "passthrough", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", path)  # fmt: skip
    stats = {}
    windows = list(stream_windows(path, SegmentConfig(size=32), stats=stats))
    assert stats["gaps"] == [[2.0, 12.0]]
    assert windows[-1].end == pytest.approx(14.0)
    assert not [w for w in windows if w.start < 12.0 and w.end > 2.0]  # no window stretched over the gap


def test_bad_files_are_clear_errors(tmp_path):
    from kmm.data.decoder import stream_windows

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    for path, reason in ((empty, "empty"), (junk, "not_a_video"), (tmp_path / "missing.mp4", "missing")):
        with pytest.raises(VideoDecodeError) as info:
            list(stream_windows(path, SegmentConfig()))
        assert info.value.reason == reason


def test_longer_than_the_cap_is_refused_before_decoding(tmp_path):
    from kmm.data.decoder import stream_windows

    path = _cuts_clip(tmp_path / "long.mp4", [(120, 80, 40)], seconds=3.0)
    with pytest.raises(VideoDecodeError, match=r"the cap is 2 s \(raise it with --max-duration") as info:
        list(stream_windows(path, SegmentConfig(max_duration_s=2)))
    assert info.value.reason == "too_long"


def test_a_window_past_its_deadline_times_out(tmp_path, monkeypatch):
    from kmm.data import shot_stream as stream

    path = _cuts_clip(tmp_path / "slow.mp4", [(120, 80, 40)], seconds=2.0)
    clock = iter(np.arange(0, 1000, 0.5))  # every frame "takes" half a second
    monkeypatch.setattr(stream.time, "monotonic", lambda: next(clock))
    with pytest.raises(VideoDecodeError, match="one window took over 3 s") as info:
        list(stream.decode_windows(path, SegmentConfig(size=32, window_deadline_s=3)))
    assert info.value.reason == "timeout"


def test_a_truncated_file_keeps_what_decodes_and_says_where_it_stops(tmp_path):
    from kmm.data.decoder import stream_windows
    from tests.data.clips import ffmpeg

    source = _cuts_clip(tmp_path / "a.mp4", [(120, 80, 40), (40, 80, 120)], seconds=2.0)
    path = tmp_path / "whole.mp4"
    ffmpeg("-i", source, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10", "-f", "mpegts", path)
    data = path.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2])
    stats = {}
    windows = list(stream_windows(cut, SegmentConfig(size=32), stats=stats))
    assert windows and windows[-1].end < 4.0


def test_a_one_frame_file_is_one_window(tmp_path):
    from kmm.data.decoder import stream_windows

    path = _cuts_clip(tmp_path / "one.mp4", [(120, 80, 40)], seconds=1 / 25)
    stats = {}
    windows = list(stream_windows(path, SegmentConfig(size=32), stats=stats))
    assert stats["frames"] == 1 and len(windows) == 1
    assert (
        windows[0].start == 0 and windows[0].end == pytest.approx(0.04) and windows[0].frames.shape == (16, 32, 32, 3)
    )


def test_a_variable_frame_rate_file_gets_its_true_times(tmp_path):
    from kmm.data.decoder import stream_windows
    from tests.data.clips import ffmpeg

    source = _cuts_clip(tmp_path / "a.mp4", [(120, 80, 40)], seconds=4.0)
    path = tmp_path / "vfr.mp4"
    # 50 frames 2/25 s apart (4 s), then 50 frames 1/50 s apart (1 s): 5 s of video in 100 frames.
    setpts = "setpts='if(lt(N,50),N*2/25/TB,(100+(N-50)*0.5)/25/TB)'"
    ffmpeg("-i", source, "-vf", setpts, "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", path)
    import av

    with av.open(str(path)) as container:
        times = [float(frame.time) for frame in container.decode(container.streams.video[0])]
    gaps = np.diff(times)
    assert gaps.min() < gaps.max() / 2  # it is variable
    stats = {}
    windows = list(stream_windows(path, SegmentConfig(size=32), stats=stats))
    assert stats["frames"] == len(times)
    assert windows[-1].end == pytest.approx(times[-1] + gaps.min(), abs=1e-3)
    assert windows[-1].end > len(times) / 25 + 0.5  # what frame count / frame rate would say
