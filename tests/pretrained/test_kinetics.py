"""The pretrained Kinetics export: the same serving kit and checks as a trained export, on real clips."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kmm.serving.client import LocalClient, ServingError
from kmm.serving.export import read_gallery, read_metadata
from kmm.serving.index import clip_frames
from kmm.serving.warmup import read_warmup_requests
from tests.serving.test_export import BAD_INPUTS, FRESH, SIGNATURES, servable_ops

pytestmark = pytest.mark.slow
KINETICS_SIGNATURES = SIGNATURES | {"label_segments", "classify_labels"}


@pytest.fixture(scope="module")
def kinetics(real_encoders, tiny_quickstart):
    """`(models, config, export path, sample rows)`: the Kinetics model the quickstart exported
    (`export_kinetics` with the sample videos as its gallery), and the same model in Keras."""
    from kmm.data.manifest import read_manifest
    from kmm.pretrained.kinetics import build_kinetics
    from kmm.serving.export import list_versions

    path = list_versions(tiny_quickstart[1].parent / "kinetics")[-1]
    videos = json.loads((path / "assets" / "gallery.json").read_text())["videos"]
    rows = read_manifest(Path(videos[0]).parent.parent / "manifest.csv")
    assert [str(r.video) for r in rows] == videos
    models, config = build_kinetics()
    return models, config, path, rows


def _clip(rows, name, config):
    video = next(r.video for r in rows if Path(r.video).name == name)
    return clip_frames(video, config.num_frames, config.frame_size)


def test_layout_metadata_and_serving_configs(kinetics):
    _, config, path, rows = kinetics
    assert path.parent.name == "kinetics" and path.name == "1"
    meta = read_metadata(path)
    assert len(meta["labels"]) == 400 and meta["labels"][0] == "abseiling"
    assert (meta["num_frames"], meta["frame_size"]) == (32, 224)
    assert set(meta["signatures"]) == KINETICS_SIGNATURES and meta["kind"] == "pretrained"
    assert len(meta["object_labels"]) == 1000 and meta["object_labels"][967] == "espresso"
    assert meta["gallery"] == {"size": len(rows), "k": len(rows)}
    assert read_gallery(path)["ids"] == [Path(r.video).name for r in rows]
    assert "name: 'kinetics'" in (path.parent.parent / "models.config").read_text()


def test_real_videos_get_kinetics_labels_and_text_finds_them(kinetics):
    _, config, path, rows = kinetics
    client = LocalClient(path)
    bunny = _clip(rows, "bigbuckbunny.mp4", config)
    out = client.classify(bunny[None])
    assert out["labels"][0][0] == b"feeding birds" and out["scores"][0][0] > 0.9
    np.testing.assert_allclose(out["frame_attention"], np.full((1, 32), 1 / 32), atol=1e-6)  # no text attention
    # Paraphrases, not the class name, find the right clip among the samples.
    found = client.search(["a bird pecking at seeds on the ground", "cars and bikes on a city street"])
    assert [ids[0] for ids in found["ids"]] == [b"bigbuckbunny.mp4", b"bikes.mp4"]
    assert found["scores"][0][0] > found["scores"][0][1]


def test_only_core_tensorflow_and_tf_text_ops(kinetics):
    unknown, python_ops, text_ops = servable_ops(kinetics[2])
    assert not unknown and not python_ops
    assert any("Wordpiece" in op for op in text_ops)


def test_every_signature_in_a_fresh_process_matches_keras(kinetics, tmp_path):
    models, config, path, rows = kinetics
    frames = np.stack([_clip(rows, "bikes.mp4", config), _clip(rows, "carphone_pristine.mp4", config)])
    text = np.array([b"people riding bicycles on a street", b""], dtype=object)
    jpeg = np.array([[tf.io.encode_png(f).numpy() for f in clip] for clip in frames], dtype=object)
    np.savez(tmp_path / "in.npz", frames=frames, text=text, jpeg=jpeg)
    args = [sys.executable, "-c", FRESH, str(path), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert "FRESH OK" in result.stdout, result.stderr[-3000:]
    out = dict(np.load(tmp_path / "out.npz", allow_pickle=True))
    probabilities = models.video_probabilities(tf.constant(frames)).numpy()
    np.testing.assert_allclose(out["classify_probabilities"], probabilities, atol=1e-5)
    np.testing.assert_allclose(out["jpeg_probabilities"], probabilities, atol=1e-5)  # PNG is lossless
    labels = np.array(config.labels)
    top = np.argsort(-probabilities, axis=1)[:, :5]
    assert out["classify_labels"].astype(str).tolist() == labels[top].tolist()
    video = models.video_embedder(tf.constant(frames)).numpy()
    np.testing.assert_allclose(out["video"], video, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out["video"], axis=1), 1, atol=1e-5)
    text_embedding = models.text_embedder(tf.constant(text)).numpy()
    np.testing.assert_allclose(out["text"], text_embedding, atol=1e-5)
    gallery = {r: video for r, video in zip(read_gallery(path)["ids"], LocalClient(path).embed_video(
        np.stack([_clip(rows, Path(r.video).name, config) for r in rows])), strict=True)}  # fmt: skip
    for query, ids, scores in zip(text_embedding, out["ids"], out["scores"], strict=True):
        expected = sorted(gallery, key=lambda i: -float(query @ gallery[i]))
        assert [i.decode() for i in ids] == expected
        np.testing.assert_allclose(scores, [query @ gallery[i] for i in expected], atol=1e-5)


def test_any_number_of_frames_and_any_size(kinetics):
    _, _, path, rows = kinetics
    client = LocalClient(path)
    from kmm.data.video_io import read_frames

    native = read_frames(next(r.video for r in rows if r.video.endswith("bikes.mp4")), [0, 50, 100])  # 640 x 272
    assert native.shape[1:] == (272, 640, 3)
    for frames in (native[None], native[None, :1]):
        out = client.embed_video(frames)
        assert out.shape == (1, 384) and np.isfinite(out).all()


@pytest.mark.parametrize("signature, inputs, message", BAD_INPUTS)
def test_bad_input_is_an_invalid_argument(kinetics, signature, inputs, message):
    with pytest.raises(ServingError) as info:
        LocalClient(kinetics[2]).predict(signature, inputs)
    assert message.lower() in str(info.value).lower(), str(info.value)


def test_warmup_requests_replay_against_the_export(kinetics):
    path = kinetics[2]
    by_signature = {}
    for log in read_warmup_requests(path):
        request = log.predict_log.request
        assert request.model_spec.name == "kinetics"
        by_signature.setdefault(request.model_spec.signature_name, []).append(request)
    assert set(by_signature) == KINETICS_SIGNATURES
    loaded = tf.saved_model.load(str(path))
    for name, requests in by_signature.items():
        inputs = {k: tf.make_ndarray(v) for k, v in requests[0].inputs.items()}
        assert all(v.shape[0] == 1 for v in loaded.signatures[name](**inputs).values())


def test_cli_export_pretrained(real_encoders, tmp_path, capsys):
    from kmm.cli import main

    base = tmp_path / "saved_models"
    assert main(["export", "--pretrained", "kinetics", "--base-dir", str(base), "--no-gallery"]) == 0
    meta = read_metadata(base / "kinetics" / "1")
    assert meta["kind"] == "pretrained" and "search" not in meta["signatures"] and meta["gallery"] is None
    with pytest.raises(SystemExit, match="give a RUN_DIR or --pretrained kinetics"):
        main(["export", "--base-dir", str(base)])


def test_label_segments_matches_the_keras_models(kinetics):
    models, config, path, rows = kinetics
    frames = np.stack([_clip(rows, "bikes.mp4", config)[::2], _clip(rows, "bigbuckbunny.mp4", config)[::2]])
    out = LocalClient(path).predict("label_segments", {"frames": frames})  # 16 frames a window
    expected = models.concepts(tf.constant(frames))
    for key in ("action_probabilities", "object_probabilities", "embedding"):
        np.testing.assert_allclose(out[key], expected[key], atol=1e-5)
    top = np.argsort(-expected["action_probabilities"].numpy(), axis=1)[:, :5]
    assert out["action_labels"].astype(str).tolist() == np.array(config.labels)[top].tolist()
    assert out["action_labels"][1][0] == b"feeding birds"
    objects = np.argsort(-expected["object_probabilities"].numpy(), axis=1)[:, 0]
    assert out["object_labels"][:, 0].astype(str).tolist() == [config.object_labels[i] for i in objects]


def test_objects_reach_the_text_space(kinetics, tmp_path):
    """A still photo of a cup of coffee, as a clip: Kinetics has no action for it, ImageNet has an object."""
    import skimage.data

    from tests.data.clips import write_cv2

    _, config, path, rows = kinetics
    client = LocalClient(path)
    coffee = write_cv2(tmp_path / "coffee.mp4", np.stack([skimage.data.coffee()] * 25))
    clips = np.stack([clip_frames(coffee, 32, 224), _clip(rows, "bigbuckbunny.mp4", config)])
    videos = client.embed_video(clips)
    queries = client.embed_text(["a cup of hot coffee on a saucer", "a bird pecking at seeds on the ground"])
    similarity = queries @ videos.T
    assert similarity[0].argmax() == 0 and similarity[1].argmax() == 1
    out = client.predict("label_segments", {"frames": clips[:1]})
    assert out["object_labels"][0][0] == b"espresso"
