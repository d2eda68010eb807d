"""Video files and uploads -> frames, frame strips and animated previews for the demo."""

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from kmm import paths
from kmm.data.video_io import VIDEO_EXTENSIONS

DEFAULT_MAX_UPLOAD_MB = 50
UPLOAD_TYPES = tuple(ext.lstrip(".") for ext in VIDEO_EXTENSIONS)  # what the decoder reads


class UploadError(ValueError):
    """An upload the demo cannot use; the message is meant for the person who uploaded it."""


def max_upload_mb():
    """The upload limit in MB: `$KMM_DEMO_MAX_UPLOAD_MB`, default 50."""
    return float(os.environ.get("KMM_DEMO_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))


def _check_upload(name, data):
    limit = max_upload_mb()
    if len(data) > limit * 2**20:
        raise UploadError(f"{name} is {len(data) / 2**20:.1f} MB; the limit is {limit:g} MB (KMM_DEMO_MAX_UPLOAD_MB).")
    suffix = Path(name).suffix.lower()
    if suffix.lstrip(".") not in UPLOAD_TYPES:
        raise UploadError(f"{name} is not a video file this demo reads ({', '.join(UPLOAD_TYPES)}).")
    return suffix


def saved_upload(name, data):
    """Uploaded bytes kept as a file (under `$KMM_HOME/demo/uploads`, named by content) for
    the long-video timeline, which decodes a file; `UploadError` as `frames_from_upload`."""
    suffix = _check_upload(name, data)
    path = paths.kmm_home() / "demo" / "uploads" / f"{hashlib.sha1(data).hexdigest()[:16]}{suffix}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with paths.replacing(path) as tmp:
            tmp.write_bytes(data)
    return path


def frames_from_upload(name, data, num_frames, size):
    """Uploaded bytes -> `(num_frames, size, size, 3)` uint8, or `UploadError` saying what is wrong."""
    from kmm.serving.index import clip_frames

    suffix = _check_upload(name, data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return clip_frames(path, num_frames, size)
        except (ValueError, OSError) as e:  # VideoDecodeError is a ValueError
            raise UploadError(f"{name} could not be decoded as a video: {e}") from e


def frame_strip(frames):
    """`(n, h, w, 3)` -> one `(h, n * w + gaps, 3)` image, frames side by side."""
    gap = np.full((frames.shape[1], 4, 3), 255, np.uint8)
    parts = []
    for i, frame in enumerate(frames):
        parts.extend([frame] if i == 0 else [gap, frame])
    return np.concatenate(parts, axis=1)


def gif_bytes(frames, duration_ms=120):
    """Frames -> an animated GIF (bytes), looping."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return out.getvalue()


def preview(path, num_frames=12, size=128):
    """An animated GIF preview of a video file, cached under `$KMM_HOME/demo/previews`."""
    from kmm.serving.index import clip_frames

    path = Path(path)
    key = hashlib.sha1(f"{path.resolve()}:{path.stat().st_mtime_ns}:{num_frames}:{size}".encode()).hexdigest()[:16]
    cached = paths.kmm_home() / "demo" / "previews" / f"{key}.gif"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        with paths.replacing(cached) as tmp:  # two users previewing one video each write their own file
            tmp.write_bytes(gif_bytes(clip_frames(path, num_frames, size)))
    return cached.read_bytes()


def player_span(start, end):
    """`(start, end)` in whole seconds for `st.video`, which truncates its `start_time` and
    `end_time` to int (protobuf int fields): the first whole second inside the moment, else
    the one before it (a moment shorter than its fraction of a second).

    >>> player_span(19.28, 21.84), player_span(14.2, 14.5), player_span(3.0, 5.5)
    ((20, 22), (14, 15), (3, 6))
    """
    import math

    first = math.ceil(start)
    begin = first if first < end else math.floor(start)
    return begin, max(begin + 1, math.ceil(end))
