"""Decoding a long video once, front to back, into shot-aware windows (`kmm.data.segments`).

`decode_windows` runs in whichever process calls it; `kmm.data.decoder.stream_windows` runs it
in a decoder worker process with a deadline per window, which is what kmm's pipelines use.
Every frame is decoded (a cut can fall on any frame) and shrunk for PySceneDetect's
`ContentDetector`; only the frames on a window's sampling grid are converted to RGB and
centre-cropped, so the cost per frame is one decode and one small resize.

Example:

    >>> from kmm.data.segments import SegmentConfig
    >>> for window in decode_windows("long.mp4", SegmentConfig()):  # doctest: +SKIP
    ...     print(window.start, window.end, window.frames.shape)
    0.0 2.56 (16, 224, 224, 3)
"""

import os
import time

import cv2

from kmm.data import video_io
from kmm.data.segments import Segmenter
from kmm.data.video_io import VideoDecodeError


def duration_s(info):
    """A video's length in seconds as its packets say (frames / frame rate)."""
    return info.num_frames / (info.fps or 25.0)


def check_duration(path, info, config):
    """Refuses a video longer than `config.max_duration_s`, before decoding it."""
    seconds = duration_s(info)
    if seconds > config.max_duration_s:
        raise VideoDecodeError(
            path, "too_long", f"{seconds:.0f} s of video; the cap is {config.max_duration_s:g} s "
            "(raise it with --max-duration SECONDS, or SegmentConfig(max_duration_s=...))",
        )  # fmt: skip


def _detector(config):
    from scenedetect.detector import FlashFilter
    from scenedetect.detectors import ContentDetector

    # SUPPRESS reports a cut on the frame it happens (no look-ahead buffer), and at most one
    # per `min_shot_s`: a strobe cannot produce more shots than seconds / min_shot_s.
    return ContentDetector(threshold=config.cut_threshold, min_scene_len=float(config.min_shot_s),
                           filter_mode=FlashFilter.Mode.SUPPRESS)  # fmt: skip


class _LazyFrame:
    """The RGB centre square of a BGR frame at `size` px, made only if the segmenter samples it.

    Crops before resizing and converts colour last, at `size` (what `fit_frame` gives, to
    rounding, at half the cost on 720p frames).
    """

    __slots__ = ("bgr", "size")

    def __init__(self, bgr, size):
        self.bgr, self.size = bgr, size

    def __call__(self):
        h, w = self.bgr.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = self.bgr[top : top + side, left : left + side]
        interpolation = cv2.INTER_AREA if side > self.size else cv2.INTER_LINEAR
        return cv2.cvtColor(cv2.resize(square, (self.size, self.size), interpolation=interpolation), cv2.COLOR_BGR2RGB)


def decode_windows(path, config, info=None, stats=None):
    """Yields the `Window`s of `path` in time order, decoding each frame once.

    Args:
        path: str or Path. The video file.
        config: `kmm.data.segments.SegmentConfig`.
        info: `VideoInfo` or None. From `probe`; probed here when None.
        stats: dict or None. Filled with `frames`, `shots`, `gaps`, `reordered` and, when
            decoding stopped before the last packet, `stopped_at` (seconds).

    Raises:
        VideoDecodeError: unusable file, longer than the cap (`too_long`), no frame
            decodable (`no_frames`), or one window took over `config.window_deadline_s`.
    """
    from scenedetect import FrameTimecode

    info = info or video_io.probe(path)
    check_duration(path, info, config)
    stats = stats if stats is not None else {}
    deadline_ms = int(min(config.window_deadline_s, 3600) * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, deadline_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, deadline_ms]
    capture = cv2.VideoCapture(os.fspath(path), cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        raise VideoDecodeError(path, "not_a_video", "OpenCV cannot open it")
    fps = info.fps or 25.0
    segmenter, detector = Segmenter(config, frame_s=1.0 / fps), _detector(config)
    count, last_time = 0, None
    try:
        stop = time.monotonic() + config.window_deadline_s
        while True:
            ok, bgr = capture.read()
            if not ok or bgr is None:
                break
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            seconds = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            h, w = bgr.shape[:2]
            # Bilinear, not area: the same cuts on real footage, at an eighth of the cost on 720p frames.
            small = cv2.resize(bgr, (config.detect_width, max(1, round(h * config.detect_width / w))),
                               interpolation=cv2.INTER_LINEAR)  # fmt: skip
            cut = bool(detector.process_frame(FrameTimecode(count, fps=fps), small)) and count > 0
            for window in segmenter.push(seconds, _LazyFrame(bgr, config.size), cut):
                yield window
                stop = time.monotonic() + config.window_deadline_s  # the clock restarts per window
            count, last_time = count + 1, seconds
            if time.monotonic() > stop:
                raise VideoDecodeError(
                    path,
                    "timeout",
                    f"one window took over {config.window_deadline_s:g} s to decode (at {seconds:.1f} s)",
                )
    finally:
        capture.release()
    if not count:
        raise VideoDecodeError(path, "no_frames", "no frame could be decoded")
    yield from segmenter.finish()
    stats.update(frames=count, shots=segmenter.shots, gaps=segmenter.gaps, reordered=segmenter.reordered)
    if count < info.num_frames:  # the rest of the packets did not decode: say where the video stops
        stats["stopped_at"] = round(segmenter.shots[-1][1], 3) if segmenter.shots else round(last_time, 3)
        stats["packets"] = info.num_frames
