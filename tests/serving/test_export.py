import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kmm.serving import preprocess as P
from kmm.serving.client import LocalClient, ServingError
from kmm.serving.export import export_model, list_versions, next_version, read_gallery, read_metadata
from kmm.serving.warmup import read_warmup_requests
from tests.serving.conftest import LABELS, clips

SIGNATURES = {"serving_default", "classify_jpeg", "embed_video", "embed_text", "search"}


def test_layout_versions_and_metadata(exported, tmp_path):
    parts, path, base, _ = exported
    assert path.parent == base / "tiny" and path.name == "1"
    assert (path / "saved_model.pb").exists() and (path / "variables").is_dir()
    meta = read_metadata(path)
    assert meta["labels"] == list(LABELS)
    assert (meta["num_frames"], meta["frame_size"]) == (parts.config.num_frames, parts.config.frame_size)
    assert set(meta["signatures"]) == SIGNATURES
    assert meta["gallery"] == {"size": 6, "k": 3}
    assert meta["metrics"] == {"test": {"accuracy": 0.5}}
    assert meta["frame_encoder"] == parts.config.frame_encoder and meta["kmm_version"]
    assert read_gallery(path)["captions"][2] == "caption 2"
    config = (base / "models.config").read_text()
    assert "name: 'tiny'" in config and "base_path: '/models/tiny'" in config
    assert "max_batch_size" in (base / "batching.config").read_text()
    # Never overwrites: a second export is version 2; no temporary directory is left behind.
    again = export_model(parts, base, "tiny", warmup=False)
    assert again.name == "2" and [p.name for p in list_versions(base / "tiny")] == ["1", "2"]
    assert sorted(p.name for p in (base / "tiny").iterdir()) == ["1", "2"]
    assert next_version(base / "tiny") == 3


def test_saved_model_cli_lists_the_signatures(exported):
    _, path, _, _ = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--dir", str(path), "--all"], capture_output=True, text=True, check=True).stdout
    for name in SIGNATURES:
        assert f"signature_def['{name}']" in out
    assert "outputs['labels']" in out and "inputs['jpeg_frames']" in out


OPS_SCRIPT = """
import json, sys
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry
sm = saved_model_pb2.SavedModel()
sm.ParseFromString(open(sys.argv[1], "rb").read())
ops = set()
for mg in sm.meta_graphs:
    ops |= {n.op for n in mg.graph_def.node}
    for f in mg.graph_def.library.function:
        ops |= {n.op for n in f.node_def}
core = {op for op in ops if op_def_registry.get(op) is not None}
import tensorflow_text  # noqa: F401  (registers TF Text's ops; nothing else is imported)
text = {op for op in ops - core if op_def_registry.get(op) is not None}
print(json.dumps({"ops": sorted(ops), "core": sorted(core), "text": sorted(text)}))
"""
PYTHON_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def servable_ops(saved_model_dir):
    """`(ops not in core TF or TF Text, Python-calling ops, TF Text ops)` of a SavedModel."""
    out = subprocess.run([sys.executable, "-c", OPS_SCRIPT, str(saved_model_dir / "saved_model.pb")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    found = json.loads(out.stdout.strip().splitlines()[-1])
    unknown = set(found["ops"]) - set(found["core"]) - set(found["text"])
    return unknown, set(found["ops"]) & PYTHON_OPS, set(found["text"])


def test_only_core_tensorflow_and_tf_text_ops(exported):
    unknown, python_ops, text_ops = servable_ops(exported[1])
    assert not unknown, f"ops TF Serving does not have: {sorted(unknown)}"
    assert not python_ops, f"Python-calling ops: {sorted(python_ops)}"
    assert any("Wordpiece" in op for op in text_ops)  # tokenization really is in the graph


def test_op_check_catches_python_functions(tmp_path):
    module = tf.Module()
    module.f = tf.function(lambda x: tf.numpy_function(np.sort, [x], tf.float32),
                           input_signature=[tf.TensorSpec([None], tf.float32)])  # fmt: skip
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.f.get_concrete_function()})
    assert servable_ops(tmp_path)[1] == {"PyFunc"}


FRESH = """
import sys
sys.modules["kmm"] = None  # kmm must not be importable: the export stands alone
try:
    import kmm  # noqa: F401
    raise SystemExit("kmm was importable")
except ImportError:
    pass
import numpy as np, tensorflow as tf, tensorflow_text  # noqa: F401
inputs = dict(np.load(sys.argv[2], allow_pickle=True))
loaded = tf.saved_model.load(sys.argv[1])
sig = loaded.signatures
out = {}
for k, v in sig["serving_default"](frames=inputs["frames"], text=inputs["text"]).items():
    out["classify_" + k] = v.numpy()
for k, v in sig["classify_jpeg"](jpeg_frames=inputs["jpeg"], text=inputs["text"]).items():
    out["jpeg_" + k] = v.numpy()
out["video"] = sig["embed_video"](frames=inputs["frames"])["embedding"].numpy()
out["text"] = sig["embed_text"](text=inputs["text"])["embedding"].numpy()
found = sig["search"](text=inputs["text"])
out["ids"], out["scores"] = found["ids"].numpy(), found["scores"].numpy()
np.savez(sys.argv[3], **out)
print("FRESH OK")
"""


@pytest.mark.slow  # a fresh process
def test_every_signature_in_a_fresh_process_matches_keras(exported, tmp_path):
    from kmm.models.builder import build_end_to_end

    parts, path, _, gallery = exported
    c = parts.config
    frames = clips(3, c.num_frames, c.frame_size, c.frame_size)
    text = np.array([b"the red circle", b"", b"a blue square"], dtype=object)
    jpeg = np.array([[tf.io.encode_png(f).numpy() for f in clip] for clip in frames], dtype=object)
    np.savez(tmp_path / "in.npz", frames=frames, text=text, jpeg=jpeg)
    args = [sys.executable, "-c", FRESH, str(path), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert "FRESH OK" in result.stdout, result.stderr[-3000:]
    out = dict(np.load(tmp_path / "out.npz", allow_pickle=True))

    models = build_end_to_end(parts)
    ref = models.classifier({"frames": tf.constant(frames), "text": tf.constant(text)})
    probabilities = ref["probabilities"].numpy()
    np.testing.assert_allclose(out["classify_probabilities"], probabilities, atol=1e-5)
    np.testing.assert_allclose(out["classify_frame_attention"], ref["frame_attention"].numpy(), atol=1e-5)
    np.testing.assert_allclose(out["jpeg_probabilities"], probabilities, atol=1e-5)  # PNG is lossless
    top = np.argsort(-probabilities, axis=1)[:, :3]
    assert out["classify_labels"].tolist() == [[LABELS[i].encode() for i in row] for row in top]
    np.testing.assert_allclose(out["classify_scores"], np.take_along_axis(probabilities, top, 1), atol=1e-5)
    video = models.video_embedder(tf.constant(frames)).numpy()
    text_embedding = models.text_embedder(tf.constant(text)).numpy()
    np.testing.assert_allclose(out["video"], video, atol=1e-5)
    np.testing.assert_allclose(out["text"], text_embedding, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out["video"], axis=1), 1, atol=1e-5)
    similarity = text_embedding @ gallery.embeddings.T
    best = np.argsort(-similarity, axis=1)[:, :3]
    assert out["ids"].tolist() == [[gallery.ids[i].encode() for i in row] for row in best]
    np.testing.assert_allclose(out["scores"], np.take_along_axis(similarity, best, 1), atol=1e-5)


def test_frames_contract_any_length_and_size(exported):
    parts, path, _, _ = exported
    c = parts.config
    client = LocalClient(path)
    base = clips(2, 1, 64, 96, seed=3)  # one frame, 64 x 96
    long = np.repeat(base, 13, axis=1)  # 13 copies of it: resampling must pick the same content
    a, b = client.embed_video(base), client.embed_video(long)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # In-graph resampling picks exactly kmm.data.sampling.uniform's frames.
    from kmm.data.sampling import uniform

    for length in (1, 3, 8, 13, 100):
        assert P.uniform_indices(length, c.num_frames).numpy().tolist() == uniform(length, c.num_frames).tolist()
    odd = client.classify(clips(1, 5, 17, 61), ["the red circle"])  # aspect within the max_aspect cap
    assert odd["probabilities"].shape == (1, len(LABELS)) and abs(odd["probabilities"].sum() - 1) < 1e-5


def test_fit_images_matches_the_training_resize():
    from kmm.data.video_io import fit_frame

    image = clips(1, 1, 90, 160, seed=5)[0, 0]
    shrunk = P.fit_images(image[None], 32).numpy()[0].astype(int)
    assert shrunk.shape == (32, 32, 3)
    assert np.abs(shrunk - fit_frame(image, 32).astype(int)).max() <= 1  # same crop, same area filter
    enlarged = P.fit_images(image[None], 120).numpy()[0].astype(int)
    assert np.abs(enlarged - fit_frame(image, 120).astype(int)).mean() < 2  # bilinear both sides


BAD_INPUTS = [
        ("embed_video", {"frames": np.zeros((2, 4, 32, 32), np.uint8)}, "got rank != 5"),
        ("embed_video", {"frames": np.zeros((0, 4, 32, 32, 3), np.uint8)}, "got an empty batch"),
        ("embed_video", {"frames": np.zeros((1, 0, 32, 32, 3), np.uint8)}, "got T = 0 frames"),
        ("embed_video", {"frames": np.zeros((1, 4, 8, 32, 3), np.uint8)}, "frame side below 16"),
        ("embed_video", {"frames": np.zeros((1, 4, 32, 32, 4), np.uint8)}, "channel count other than 3"),
        ("embed_video", {"frames": np.zeros((1, 4, 32, 32, 3), np.float32)}, "uint8"),
        ("embed_text", {"text": np.array([], dtype=object)}, "`text` must be a string tensor [batch]"),
        ("embed_text", {"text": np.array([[b"a"]], dtype=object)}, "got rank != 1"),
        ("classify_jpeg", {"jpeg_frames": np.array([b"a", b"b"], dtype=object), "text": np.array([b"", b""], dtype=object)}, "`jpeg_frames` must be"),
        ("classify_jpeg", {"jpeg_frames": np.array([[b"not an image"]], dtype=object), "text": np.array([b""], dtype=object)}, "image"),
        ("serving_default", {"frames": np.zeros((2, 4, 32, 32, 3), np.uint8), "text": np.array([b""], dtype=object)}, "same batch size"),
]  # fmt: skip


@pytest.mark.parametrize("signature, inputs, message", BAD_INPUTS)
def test_bad_input_is_an_invalid_argument_that_says_what_was_expected(exported, signature, inputs, message):
    client = LocalClient(exported[1])
    with pytest.raises(ServingError) as info:
        client.predict(signature, inputs)
    assert message.lower() in str(info.value).lower(), str(info.value)


def test_warmup_requests_replay_against_the_export(exported):
    _, path, _, _ = exported
    logs = read_warmup_requests(path)
    by_signature = {}
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == "tiny"
        by_signature.setdefault(request.model_spec.signature_name, []).append(request)
    assert set(by_signature) == SIGNATURES and all(len(v) == 2 for v in by_signature.values())
    loaded = tf.saved_model.load(str(path))
    for name, requests in by_signature.items():
        for request in requests:
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            out = loaded.signatures[name](**inputs)
            assert all(v.shape[0] == len(next(iter(inputs.values()))) for v in out.values())
