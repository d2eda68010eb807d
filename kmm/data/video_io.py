"""Video probing and frame reading: PyAV to index packets, OpenCV to decode.

Decoding dominates a CPU pipeline, so the reader decodes as few frames as it can.
`probe` demuxes packets without decoding them (about 25 ms for a 90 s clip) to learn the
frame count and where the keyframes are; `read_frames` then walks the wanted indices and,
for each, either decodes forward from where it is (`grab`, no colour conversion) or seeks
(OpenCV jumps to the previous keyframe and decodes from there), whichever decodes fewer
frames. Short clips with one keyframe are read straight through; long clips are sought.
Each frame is resized as soon as it is decoded, so a 4K clip never holds more than one
full-size frame in memory.
"""

import dataclasses
import functools
import os
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
    if not packets:
        raise VideoDecodeError(path, "no_frames", "the video stream has no frames")
    order = sorted(range(len(packets)), key=lambda i: packets[i][0])  # presentation order
    keyframes = tuple(rank for rank, i in enumerate(order) if packets[i][1]) or (0,)
    return VideoInfo(path, len(packets), keyframes, fps, width, height)


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


def read_frames(path, indices, size=None, mode="crop", info=None):
    """Decodes the frames at `indices` (any order, repeats allowed) as RGB uint8.

    Args:
        path: str or Path. The video file.
        indices: sequence of int in `[0, num_frames)`.
        size: int or None. Output side; None keeps the native size.
        mode: str. Choose from ['crop', 'resize'].
        info: `VideoInfo` or None. From `probe`; probed here when None.

    Returns:
        uint8 array `(len(indices), size, size, 3)`.

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, or a frame cannot be decoded.
    """
    info = info or probe(path)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= info.num_frames):
        raise ValueError(
            f"{path}: frame indices must be in [0, {info.num_frames}), got {indices.min()}..{indices.max()}"
        )
    wanted = np.unique(indices)
    capture = cv2.VideoCapture(os.fspath(path))
    if not capture.isOpened():
        raise VideoDecodeError(path, "not_a_video", "OpenCV cannot open it")
    decoded = {}
    try:
        position = 0
        for index, action in plan_reads(wanted, info.keyframes):
            if action == "seek":
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            else:
                while position < index:
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
