"""Video probing and frame reading: PyAV to index packets, OpenCV to decode.

Decoding dominates a CPU pipeline, so the reader decodes as few frames as it can.
`probe` demuxes packets without decoding them (cheap even for long clips) to learn the
frame count and where the keyframes are; `read_frames` then walks the wanted indices and,
for each, either decodes forward from where it is (`grab`, no colour conversion) or seeks
(OpenCV jumps to the previous keyframe and decodes from there), whichever decodes fewer
frames. Short clips with one keyframe are read straight through; long clips are sought.
Each frame is resized as soon as it is decoded, so a 4K clip never holds more than one
full-size frame in memory.

Videos are a stranger's input. `probe` refuses frames larger than `MAX_FRAME_PIXELS` or
more elongated than `MAX_ASPECT` before anything is decoded (reasons `too_large`,
`aspect`), and `read_frames` gives up on a file whose decoding runs past its deadline
(reason `timeout`; checked between frames, with OpenCV's own open/read timeouts for a stalled
demuxer). `kmm.data.decoder` runs both in worker processes, which also bounds a single call
that never returns; kmm's pipelines use it.
"""

import dataclasses
import functools
import os
import time
from pathlib import Path

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".gif", ".mpg", ".mpeg", ".m4v")
RESIZE_MODES = ("crop", "resize")

# Seeking costs a demuxer reset on top of the frames it decodes; in frames decoded.
_SEEK_OVERHEAD = 4
# OpenCV's CAP_PROP_POS_FRAMES seeks to the keyframe at or before `target - 16`, then
# decodes forward to the target (cap_ffmpeg_impl.hpp), so that is what a seek costs.
_OPENCV_SEEK_BACKOFF = 16

MAX_FRAME_PIXELS = 7680 * 4320  # 8K UHD
MAX_ASPECT = 4.0  # long side / short side (32:9 ultrawide is 3.6)
DECODE_DEADLINE_S = 120.0  # one file's frames, in `read_frames`


class VideoDecodeError(ValueError):
    """A video that cannot be used. `reason` is a short machine-readable code."""

    def __init__(self, path, reason, detail):
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {reason}: {detail}")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns without decoding: frame count, keyframe indices, fps, size."""

    path: str
    num_frames: int
    keyframes: tuple
    fps: float
    width: int
    height: int

    @classmethod
    def from_dict(cls, fields):
        """The inverse of `dataclasses.asdict` (through JSON, where the keyframes became a list)."""
        return cls(**{**fields, "keyframes": tuple(fields["keyframes"])})


def probe(path):
    """Indexes a video's packets without decoding. Raises `VideoDecodeError` if unusable."""
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "missing", "no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty", "zero-byte file")
    stat = path.stat()
    return _probe_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _probe_cached(path, _mtime, _size):
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(path, "no_video_stream", "the file has no video stream")
            stream = container.streams.video[0]
            packets = [
                (p.pts if p.pts is not None else i, p.is_keyframe)
                for i, p in enumerate(container.demux(stream))
                if p.size
            ]
            fps = float(stream.guessed_rate or stream.base_rate or 0) or 25.0
            width, height = stream.codec_context.width, stream.codec_context.height
    except VideoDecodeError:
        raise
    except Exception as e:  # av.error.* for bytes that are not a container
        raise VideoDecodeError(path, "not_a_video", f"cannot demux: {type(e).__name__}: {e}") from e
    if not (width and height):  # a GIF's size is in its header, not in the stream parameters
        width, height = _gif_screen(path) or (width, height)
    check_frame_size(path, width, height)
    if not packets:
        raise VideoDecodeError(path, "no_frames", "the video stream has no frames")
    order = sorted(range(len(packets)), key=lambda i: packets[i][0])  # presentation order
    keyframes = tuple(rank for rank, i in enumerate(order) if packets[i][1]) or (0,)
    return VideoInfo(path, len(packets), keyframes, fps, width, height)


def _gif_screen(path):
    with open(path, "rb") as f:
        head = f.read(10)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    return None


def check_frame_size(path, width, height):
    """Raises `VideoDecodeError` (`too_large` or `aspect`) for frames kmm will not decode.

    A frame costs width x height x 3 bytes decoded (and more as floats), so a few-KB file
    with a huge canvas could exhaust memory; a very elongated one makes the short-side-first
    resize huge. Unknown sizes (0) are not checked here.
    """
    if not (width and height):
        return
    if width * height > MAX_FRAME_PIXELS:
        raise VideoDecodeError(
            path, "too_large", f"{width}x{height} frames; the cap is {MAX_FRAME_PIXELS} pixels a frame"
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise VideoDecodeError(path, "aspect", f"{width}x{height} frames; the cap is {MAX_ASPECT:g}:1")


def checked_indices(path, indices, info):
    """`indices` as int64, or a `ValueError` when one is outside the video's frames."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= info.num_frames):
        raise ValueError(
            f"{path}: frame indices must be in [0, {info.num_frames}), got {indices.min()}..{indices.max()}"
        )
    return indices


def plan_reads(indices, keyframes):
    """For sorted unique `indices`, returns `[(index, "grab" | "seek"), ...]`.

    `grab` decodes forward from the current position; `seek` jumps to the previous
    keyframe of `index` and decodes from there. Chooses per index the cheaper one.
    """
    keyframes = np.asarray(keyframes)
    plan, position = [], 0  # position = index of the next frame a read would return
    for index in indices:
        forward = index - position if index >= position else np.inf
        anchor = max(index - _OPENCV_SEEK_BACKOFF, 0)
        previous_key = keyframes[np.searchsorted(keyframes, anchor, side="right") - 1]
        jump = index - previous_key + _SEEK_OVERHEAD
        plan.append((int(index), "grab" if forward <= jump else "seek"))
        position = index + 1
    return plan


def fit_frame(frame, size, mode="crop"):
    """Resizes one RGB frame to `size x size`: `crop` = short side to `size` + centre crop."""
    h, w = frame.shape[:2]
    if mode == "resize":
        return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR)
    if mode != "crop":
        raise ValueError(f"Unknown resize mode {mode!r}; choose from {list(RESIZE_MODES)}.")
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    frame = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (nh - size) // 2, (nw - size) // 2
    return frame[top : top + size, left : left + size]


def read_frames(path, indices, size=None, mode="crop", info=None, deadline_s=DECODE_DEADLINE_S):
    """Decodes the frames at `indices` (any order, repeats allowed) as RGB uint8.

    Args:
        path: str or Path. The video file.
        indices: sequence of int in `[0, num_frames)`.
        size: int or None. Output side; None keeps the native size.
        mode: str. Choose from ['crop', 'resize'].
        info: `VideoInfo` or None. From `probe`; probed here when None.
        deadline_s: float. Give up (`VideoDecodeError`, reason `timeout`) when decoding
            takes longer. Defaults to `DECODE_DEADLINE_S`.

    Returns:
        uint8 array `(len(indices), size, size, 3)`.

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, or a frame cannot be decoded.
    """
    info = info or probe(path)
    indices = checked_indices(path, indices, info)
    wanted = np.unique(indices)
    timeout_ms = int(min(deadline_s, 3600) * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
    capture = cv2.VideoCapture(os.fspath(path), cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        raise VideoDecodeError(path, "not_a_video", "OpenCV cannot open it")
    decoded = {}
    stop = time.monotonic() + deadline_s

    def on_time(position):
        if time.monotonic() > stop:
            raise VideoDecodeError(path, "timeout", f"decoding took over {deadline_s:g} s (at frame {position})")

    try:
        position = 0
        for index, action in plan_reads(wanted, info.keyframes):
            on_time(position)
            if action == "seek":
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            else:
                while position < index:
                    on_time(position)
                    if not capture.grab():
                        raise VideoDecodeError(
                            path, "corrupt", f"decoding stopped at frame {position} of {info.num_frames}"
                        )
                    position += 1
            ok, frame = capture.read()
            if not ok or frame is None:
                raise VideoDecodeError(path, "corrupt", f"cannot decode frame {index} of {info.num_frames}")
            frame = (
                cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
            )
            decoded[index] = fit_frame(frame, size, mode) if size else frame
            position = index + 1
    finally:
        capture.release()
    return np.stack([decoded[i] for i in indices.tolist()])
