"""Draws kmm-shapes scenes into uint8 RGB frames with OpenCV (antialiased polygons)."""

import cv2
import numpy as np

from kmm.data.synth import vocab

_SUBPIXEL = 4  # cv2 drawing shift: coordinates in 1/16 px


def background(scene, size):
    a, b = (np.array(c, np.float32) for c in scene.background_colors)
    if scene.background == "solid":
        return np.broadcast_to(a, (size, size, 3)).astype(np.uint8)
    if scene.background == "gradient":
        t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        return np.broadcast_to(a * (1 - t) + b * t, (size, size, 3)).astype(np.uint8)
    if scene.background == "noise":
        rng = np.random.default_rng(scene.noise_seed)
        noise = rng.normal(0, 1, size=(size // 8 + 1, size // 8 + 1, 1)).astype(np.float32)
        noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]
        return np.clip(a + 35 * noise, 0, 255).astype(np.uint8)
    ys, xs = np.mgrid[0:size, 0:size]
    mask = ((ys // scene.checker + xs // scene.checker) % 2).astype(bool)[..., None]
    return np.where(mask, a, b).astype(np.uint8)


def _polygon(shape, x, y, size, angle):
    r = size / 2
    if shape == "square":
        base = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * r * 0.85
    elif shape == "triangle":
        a = np.deg2rad([-90, 30, 150])
        base = np.stack([np.cos(a), np.sin(a)], 1) * r
    else:  # star
        a = np.deg2rad(np.arange(10) * 36 - 90)
        radius = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        base = np.stack([np.cos(a) * radius, np.sin(a) * radius], 1)
    t = np.deg2rad(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]], np.float32)
    pts = base @ rot.T + np.array([x, y], np.float32)
    return np.round(pts * (1 << _SUBPIXEL)).astype(np.int32)


def render(scene, num_frames, size):
    """Returns `(num_frames, size, size, 3)` uint8 RGB frames of `scene`."""
    if scene.background == "photo":
        from kmm.data.synth import backgrounds

        frames = backgrounds.frames(scene.photo, scene.photo_pool, size, num_frames)
    else:
        frames = np.empty((num_frames, size, size, 3), np.uint8)
        frames[:] = background(scene, size)
    for t in range(num_frames):
        frame = frames[t]
        for o in scene.objects:
            x, y, s, angle = o.state(t, num_frames)
            color = vocab.COLORS[o.color]
            if o.shape == "circle":
                center = (round(x * (1 << _SUBPIXEL)), round(y * (1 << _SUBPIXEL)))
                cv2.circle(frame, center, round(s / 2 * (1 << _SUBPIXEL)), color, -1, cv2.LINE_AA, _SUBPIXEL)
            else:
                cv2.fillPoly(frame, [_polygon(o.shape, x, y, s, angle)], color, cv2.LINE_AA, _SUBPIXEL)
    return frames


def write_mp4(frames, path, fps):
    """Writes RGB frames as MPEG-4 (OpenCV's `mp4v`); returns the path."""
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
