"""Random kmm-shapes scenes: pure functions of a numpy Generator, no drawing here."""

import dataclasses

import numpy as np

from kmm.data.synth import vocab


@dataclasses.dataclass(frozen=True)
class ObjectTrack:
    """One object and its motion over the clip (start state + per-frame change)."""

    color: str
    shape: str
    action: str
    x0: float
    y0: float
    size0: float
    angle0: float
    dx: float = 0.0  # px per frame
    dy: float = 0.0
    scale: float = 1.0  # final size / initial size
    spin: float = 0.0  # degrees per frame

    def state(self, t, num_frames):
        """`(x, y, size, angle)` at frame `t`."""
        frac = t / max(num_frames - 1, 1)
        size = self.size0 * (self.scale**frac)
        return self.x0 + self.dx * t, self.y0 + self.dy * t, size, self.angle0 + self.spin * t


@dataclasses.dataclass(frozen=True)
class Scene:
    background: str
    background_colors: tuple
    checker: int
    noise_seed: int
    objects: tuple
    # background == "photo": a crop of real imagery, `kmm.data.synth.backgrounds.sample`'s
    # parameters, from the pool named here.
    photo: tuple = ()
    photo_pool: str = ""

    def referent(self, i):
        o = self.objects[i]
        return f"the {o.color} {o.shape}"


def sample_object(rng, color, shape, action, frame_size, num_frames):
    """Places an object so that its whole motion stays inside the frame."""
    steps = num_frames - 1
    lo, hi = 12.0, 40.0
    scale = 1.0
    if action == "grow":
        scale = rng.uniform(1.8, 3.0)
        size0 = rng.uniform(lo, hi / scale)
    elif action == "shrink":
        scale = 1.0 / rng.uniform(1.8, 3.0)
        size0 = rng.uniform(lo / scale, hi)
    else:
        size0 = rng.uniform(lo, 30.0)
    max_size = max(size0, size0 * scale)
    margin = max_size / 2 + 2
    speed = rng.uniform(1.0, 2.5) * frame_size / 128 * 32 / num_frames
    dx = {"move_left": -speed, "move_right": speed}.get(action, 0.0)
    dy = {"move_up": -speed, "move_down": speed}.get(action, 0.0)
    spin = rng.choice([-1, 1]) * rng.uniform(4.0, 10.0) if action == "rotate" else 0.0

    def start(d):
        # The range of starts that keeps start and end inside [margin, frame_size - margin].
        low = margin - min(0.0, d * steps)
        high = frame_size - margin - max(0.0, d * steps)
        return rng.uniform(low, high) if high > low else frame_size / 2

    return ObjectTrack(color, shape, action, start(dx), start(dy), size0, rng.uniform(0, 360), dx, dy, scale, spin)


def sample_scene(rng, num_objects, frame_size, num_frames, allowed_triples, target=None):
    """A scene of `num_objects` objects with distinct (colour, shape).

    Every object's (colour, shape, action) is drawn from `allowed_triples`; `target`, when
    given, forces object 0's triple (used for the compositional split).
    """
    objects, used = [], set()
    triples = list(allowed_triples)
    while len(objects) < num_objects:
        triple = target if (target is not None and not objects) else triples[rng.integers(len(triples))]
        if triple[:2] in used:
            continue
        used.add(triple[:2])
        objects.append(sample_object(rng, *triple, frame_size, num_frames))
    background = vocab.BACKGROUNDS[rng.integers(len(vocab.BACKGROUNDS))]
    base = rng.integers(0, 256, size=3)
    second = (
        np.clip(base + rng.integers(-40, 41, size=3), 0, 255)
        if background == "checkerboard"
        else rng.integers(0, 256, size=3)
    )
    return Scene(
        background=background,
        background_colors=(tuple(int(v) for v in base), tuple(int(v) for v in second)),
        checker=int(rng.integers(6, 17)),
        noise_seed=int(rng.integers(2**31)),
        objects=tuple(objects),
    )


def caption(scene, rng):
    """One clause per object in random order, varied phrasing, joined by "and"/"while"."""
    order = rng.permutation(len(scene.objects))
    clauses = []
    for i in order:
        o = scene.objects[i]
        phrase = vocab.PHRASES[o.action][rng.integers(len(vocab.PHRASES[o.action]))]
        clauses.append(f"a {o.color} {o.shape} {phrase}")
    text = clauses[0]
    for clause in clauses[1:]:
        text += vocab.JOINERS[rng.integers(len(vocab.JOINERS))] + clause
    return text.lower()
