"""`kmm data synth`: writes kmm-shapes clips as mp4 files plus a manifest.

Splits: `train`, `val`, `test` (same distribution) and `compositional`, whose referred
object has a (colour, shape, action) triple that never occurs anywhere in train/val/test.
Sample kinds: single-object clips with empty `text` (plain action recognition) and
multi-object clips with a referring expression (`text` = "the red circle", `label` = that
object's action). Every clip has a `caption` describing all of its objects.
Each clip is a pure function of `(seed, split, index)`, so generation is parallel and
reproducible.
"""

import dataclasses
import json
import multiprocessing.pool
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kmm import paths
from kmm.data.manifest import Row, write_manifest
from kmm.data.synth import backgrounds, render, scene, vocab

SPLITS = ("train", "val", "test", "compositional", "test_real")
# test_real: drawn like test, every clip over real imagery held out from training
# (`kmm.data.synth.backgrounds`), to measure what a synthetic background teaches.
OBJECT_COUNT_PROBS = (0.4, 0.35, 0.25)  # 1, 2, 3 objects
# Bumped when the same `SynthConfig` draws different clips, so an older build is not reused.
RENDERER = 2


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Size and look of a kmm-shapes build. Presets: `tiny` (tests), `small`, `default`."""

    num_frames: int = 32
    fps: int = 8
    frame_size: int = 128
    train: int = 6000
    val: int = 400
    test: int = 1000
    compositional: int = 400
    test_real: int = 1000
    held_out_fraction: float = 0.1
    # Fraction of train and val clips drawn over real imagery (the `train` pool) instead of
    # flat, gradient, noise or checkerboard backgrounds. Test and compositional stay synthetic.
    real_backgrounds: float = 0.5
    seed: int = 0

    def count(self, split):
        return getattr(self, split)


PRESETS = {
    "tiny": SynthConfig(num_frames=8, frame_size=32, train=24, val=8, test=8, compositional=8, test_real=8),
    "small": SynthConfig(train=600, val=100, test=300, compositional=100, test_real=300),
    "default": SynthConfig(),
}


def held_out_triples(config):
    """The (colour, shape, action) triples reserved for the compositional split."""
    rng = np.random.default_rng([config.seed, 7919])
    n = max(1, round(len(vocab.ALL_TRIPLES) * config.held_out_fraction))
    picks = rng.choice(len(vocab.ALL_TRIPLES), size=n, replace=False)
    return tuple(sorted(vocab.ALL_TRIPLES[i] for i in picks))


def make_sample(config, split, index, held_out):
    """Scene, caption, referring text and label of one clip (no drawing)."""
    rng = np.random.default_rng([config.seed, SPLITS.index(split), index])
    allowed = [t for t in vocab.ALL_TRIPLES if t not in set(held_out)]
    num_objects = 1 + int(rng.choice(3, p=OBJECT_COUNT_PROBS))
    target = held_out[rng.integers(len(held_out))] if split == "compositional" else None
    sc = scene.sample_scene(rng, num_objects, config.frame_size, config.num_frames, allowed, target=target)
    pool = _background_pool(config, split, index)
    if pool:
        # Its own random stream: the objects, captions and labels stay those of the synthetic build.
        photo_rng = np.random.default_rng([config.seed, SPLITS.index(split), index, 1])
        photo = backgrounds.sample(photo_rng, pool, config.num_frames)
        sc = dataclasses.replace(sc, background="photo", photo=photo, photo_pool=pool)
    referent = 0 if (target is not None or num_objects == 1) else int(rng.integers(num_objects))
    text = "" if num_objects == 1 else sc.referent(referent)
    return sc, scene.caption(sc, rng), text, sc.objects[referent].action


def _background_pool(config, split, index):
    """The real-imagery pool of a clip's background, or None for a synthetic one."""
    if split == "test_real":
        return "held_out"
    if split in ("train", "val") and config.real_backgrounds > 0:
        draw = np.random.default_rng([config.seed, SPLITS.index(split), index, 2]).random()
        return "train" if draw < config.real_backgrounds else None
    return None


def _write_clip(task):
    config, split, index, held_out, out_dir = task
    sc, caption, text, label = make_sample(config, split, index, held_out)
    rel = Path("videos") / split / f"{split}_{index:05d}.mp4"
    render.write_mp4(render.render(sc, config.num_frames, config.frame_size), out_dir / rel, config.fps)
    return Row(index=0, video=str(out_dir / rel), caption=caption, label=label, text=text, split=split)


def default_dir(preset):
    return paths.kmm_home() / "data" / f"kmm-shapes-{preset}"


def generate(out_dir, config=PRESETS["default"], workers=2, force=False, progress=True):
    """Generates kmm-shapes into `out_dir`; returns the manifest path.

    Skips the work when `out_dir` already holds a complete build of the same config.

    Example:

        >>> generate(tmp_path / "shapes", PRESETS["tiny"])  # doctest: +SKIP
        PosixPath('.../shapes/manifest.csv')
    """
    out_dir = Path(out_dir).resolve()
    manifest, info_path = out_dir / "manifest.csv", out_dir / "kmm-shapes.json"
    info = {"config": dataclasses.asdict(config), "renderer": RENDERER, "labels": list(vocab.ACTIONS)}
    if not force and manifest.exists() and info_path.exists():
        built = json.loads(info_path.read_text())
        if (built.get("config"), built.get("renderer")) == (info["config"], RENDERER):
            return manifest
    held_out = held_out_triples(config)
    for split in SPLITS:
        (out_dir / "videos" / split).mkdir(parents=True, exist_ok=True)
    tasks = [(config, s, i, held_out, out_dir) for s in SPLITS for i in range(config.count(s))]
    bar = tqdm(total=len(tasks), desc="kmm-shapes", unit="clip", disable=not progress)
    rows = []
    if workers > 1:
        # Threads, not processes: OpenCV draws and encodes without the GIL, and a forked
        # child of a process whose OpenCV thread pool is running deadlocks (seen after
        # decoding a video in the parent), while spawned ones re-run the caller's script.
        with multiprocessing.pool.ThreadPool(workers) as pool:
            for row in pool.imap(_write_clip, tasks, chunksize=16):
                rows.append(row)
                bar.update()
    else:
        for task in tasks:
            rows.append(_write_clip(task))
            bar.update()
    bar.close()
    write_manifest(rows, manifest)
    info["held_out_triples"] = [list(t) for t in held_out]
    info["counts"] = {s: config.count(s) for s in SPLITS}
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return manifest


def label_names():
    """kmm-shapes' class names, in label-id order."""
    return list(vocab.ACTIONS)
