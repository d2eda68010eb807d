"""Cutting a stream of decoded frames into shots and fixed-length windows, online.

A long video becomes a list of `Window`s: each shot (cut by PySceneDetect's
`ContentDetector`, fed frame by frame) is tiled by windows of `window_s` seconds, and each
window keeps `frames` frames sampled on a regular time grid (the frame on screen at
`start + (j + 0.5) * window_s / frames`). Times are the frames' own timestamps, so variable
frame rate footage gets true times. A shot's last window, when shorter than half a window,
is folded into the window before it, so no window is a fraction of a second of a shot.

`Segmenter` holds at most two windows of sampled frames, whatever the video's length: memory
does not grow with the video. Frames are pushed in as they are decoded (`push`), windows come
out as soon as they are final.

Timestamps that jump forward by more than `max_gap_s` end the shot; the time with no frames
is recorded as a gap (`Segmenter.gaps`), so the timeline says where it has nothing instead of
stretching a window over it. Timestamps that go backwards are moved to just after the
previous frame and counted (`Segmenter.reordered`).

Example:

    >>> import numpy as np
    >>> seg = Segmenter(SegmentConfig(window_s=1.0, frames=4, size=8))
    >>> frame = np.zeros((8, 8, 3), np.uint8)
    >>> windows = [w for i in range(75) for w in seg.push(i / 25, frame, cut=False)]
    >>> windows += seg.finish(3.0)
    >>> [(w.start, w.end, len(w.frames)) for w in windows]
    [(0.0, 1.0, 4), (1.0, 2.0, 4), (2.0, 3.0, 4)]
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
    """How a long video is cut.

    Args:
        window_s: float. Window length in seconds. Defaults to `2.56`, the span of the
            64-frame 25 fps clips I3D was trained on.
        frames: int. Frames sampled per window. Defaults to `16` (6.25 per second).
        size: int. Side of the square (centre-cropped) frames kept. Defaults to `224`.
        cut_threshold: float. `ContentDetector` threshold (mean HSV change, 0-255).
            Defaults to `27.0`, PySceneDetect's.
        min_shot_s: float. A cut within this long of the previous one is ignored (a strobe
            or flash does not make thousands of shots). Defaults to `0.25`.
        detect_width: int. Frames are shrunk to this width for cut detection. Defaults to `256`.
        max_gap_s: float. A jump in timestamps longer than this ends the shot and is
            recorded as a gap. Defaults to `2.0`.
        max_duration_s: float. Longer videos are refused before decoding (raise it for
            longer footage). Defaults to 4 hours.
        window_deadline_s: float. Decoding one window may take at most this long.
            Defaults to `60.0`.
    """

    window_s: float = 2.56
    frames: int = 16
    size: int = 224
    cut_threshold: float = 27.0
    min_shot_s: float = 0.25
    detect_width: int = 256
    max_gap_s: float = 2.0
    max_duration_s: float = 4 * 3600.0
    window_deadline_s: float = 60.0

    def __post_init__(self):
        if self.window_s <= 0 or self.frames < 1 or self.size < 1:
            raise ValueError(f"SegmentConfig: window_s, frames and size must be positive, got {self}.")

    def to_json(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Window:
    """`[start, end)` seconds of shot `shot`, with `frames` uint8 `(n, size, size, 3)`."""

    start: float
    end: float
    shot: int
    frames: np.ndarray

    def describe(self):
        return {"start": round(self.start, 3), "end": round(self.end, 3), "shot": self.shot}


def resample(frames, n):
    """`frames` `(m, ...)` -> `(n, ...)`: the centre of each of `n` equal parts (repeats when m < n)."""
    from kmm.data.sampling import uniform

    return frames[uniform(len(frames), n)]


class Segmenter:
    """Turns `(time, frame, cut)` triples, in decoding order, into final `Window`s.

    `frame` is the cropped and resized `(size, size, 3)` frame, or a function that makes it
    (called only if the frame lands on the sampling grid). `cut=True` says a new shot starts at this frame.
    """

    def __init__(self, config, frame_s=None):
        self.config = config
        self.step = config.window_s / config.frames  # the sampling grid
        self.shots, self.gaps, self.reordered = [], [], 0  # shots: [start, end] in seconds
        self._last_time, self._last_frame = None, None
        self._frame_s = frame_s  # one frame's duration: the shortest gap seen, else this hint (1 / fps)
        self._shot_start, self._seen_gap = None, None

    # === Input ===
    def push(self, time, frame, cut):
        """Adds one decoded frame shown from `time` seconds; returns the windows it completes."""
        out = []
        if self._last_time is not None:
            if time <= self._last_time:  # timestamps going backwards: keep the order of decoding
                self.reordered += 1
                time = self._last_time + (self._frame_s or self.step)
            gap = time - self._last_time
            if gap > self.config.max_gap_s:
                end = self._last_time + (self._frame_s or self.step)
                out += self._sample_until(end) + self._end_shot(end)
                self.gaps.append([round(end, 3), round(time, 3)])
                cut = True
            else:
                self._frame_s = gap if self._seen_gap is None else min(self._seen_gap, gap)
                self._seen_gap = self._frame_s
                out += self._sample_until(time)
                if cut:
                    out += self._end_shot(time)
        if self._shot_start is None:
            self._start_shot(time)
        self._last_time, self._last_frame = time, frame
        return out

    def finish(self, end=None):
        """Ends the stream; `end` is when the last frame stops showing (default: one frame later)."""
        if self._last_time is None:
            return []
        if end is None or end <= self._last_time:
            end = self._last_time + (self._frame_s or self.step)
        out = self._sample_until(end)
        return out + self._end_shot(end)

    # === Shots and windows ===
    def _start_shot(self, time):
        self._shot_start, self._next_sample = time, time + 0.5 * self.step
        self._samples, self._pending, self._window_start = [], None, time

    def _sample_until(self, time):
        """Samples the frame on screen at every grid time before `time`; returns full windows."""
        out = []
        while self._next_sample < time - 1e-9:
            if callable(self._last_frame):  # made on first use: most frames are never sampled
                self._last_frame = self._last_frame()
            self._samples.append(self._last_frame)
            self._next_sample = self._window_start + (len(self._samples) + 0.5) * self.step
            if len(self._samples) == self.config.frames:
                window = Window(self._window_start, self._window_start + self.config.window_s, len(self.shots),
                                np.stack(self._samples))  # fmt: skip
                out += self._hold(window)
                self._samples, self._window_start = [], window.end
                self._next_sample = self._window_start + 0.5 * self.step
        return out

    def _hold(self, window):
        """Keeps one full window back, so a short tail can still be folded into it."""
        ready, self._pending = ([self._pending] if self._pending is not None else []), window
        return ready

    def _end_shot(self, end):
        out, tail = [], None
        if not self._samples and self._pending is None:  # a shot shorter than half a grid step
            self._samples = [self._last_frame() if callable(self._last_frame) else self._last_frame]
        if self._samples:
            tail = Window(self._window_start, end, len(self.shots), np.stack(self._samples))
        if tail is not None and self._pending is not None and end - tail.start < self.config.window_s / 2:
            merged = np.concatenate([self._pending.frames, tail.frames])
            self._pending = Window(self._pending.start, end, self._pending.shot, resample(merged, self.config.frames))
            tail = None
        for window in (self._pending, tail):
            if window is not None:
                window.end = end if window is tail or tail is None else window.end
                window.frames = resample(window.frames, self.config.frames)
                out.append(window)
        if out:
            self.shots.append([round(self._shot_start, 3), round(end, 3)])
        self._shot_start, self._pending, self._samples = None, None, []
        return out
