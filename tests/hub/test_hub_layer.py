import keras
import numpy as np
import pytest
import tensorflow as tf

from kmm import specs
from kmm.hub.hub_layer import HubLayer
from tests.helpers import assert_all_close, run_in_fresh_python, run_layer_test

TEXTS = tf.constant(["a red circle", "a blue square moves left", "the green star", "a white triangle"])
LABELS = np.array([0, 1, 0, 1])


def _text_classifier(trainable):
    text = keras.Input((), dtype="string", name="text")
    hub = HubLayer("kmm://tiny-text", output_key=specs.POOLED_OUTPUT, trainable=trainable, name="hub")
    logits = keras.layers.Dense(2, name="head")(hub(text))
    return keras.Model(text, logits), hub


def test_layer_contract(tiny_encoders, tmp_path):
    run_layer_test(lambda: HubLayer("kmm://tiny-text", output_key=specs.POOLED_OUTPUT), TEXTS, tmp_path)


def test_frozen_by_default(tiny_encoders):
    model, hub = _text_classifier(trainable=False)
    assert hub.trainable_weights == []
    assert len(hub.non_trainable_weights) == len(hub._module.variables)
    assert [w.name for w in model.trainable_weights] == ["kernel", "bias"]


def test_fine_tuning_updates_the_module_variables(tiny_encoders):
    model, hub = _text_classifier(trainable=True)
    assert len(hub.trainable_weights) == len(hub._module.trainable_variables) > 0
    before = [v.numpy().copy() for v in hub._module.trainable_variables]
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = tf.data.Dataset.from_tensors((TEXTS, LABELS)).repeat(20)
    history = model.fit(ds, epochs=1, verbose=0)
    loss_after = model.evaluate(tf.data.Dataset.from_tensors((TEXTS, LABELS)), verbose=0)
    changed = [not np.allclose(b, v.numpy()) for b, v in zip(before, hub._module.trainable_variables, strict=True)]
    assert sum(changed) > len(changed) // 2, "fine-tuning left most module variables unchanged"
    assert loss_after < history.history["loss"][0]


def test_keras_round_trip_keeps_fine_tuned_weights(tiny_encoders, tmp_path):
    model, hub = _text_classifier(trainable=True)
    for v in hub._module.trainable_variables:  # a "fine-tuned" state that differs from the handle
        v.assign(v + 0.01)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert_all_close(model(TEXTS), reloaded(TEXTS))
    assert reloaded.get_layer("hub").get_config()["handle"] == "kmm://tiny-text"


def test_a_keras_file_cannot_make_kmm_download_a_module(tiny_encoders, tmp_path, monkeypatch):
    """A network handle stored in a .keras file is refused in Keras' safe mode (the default)."""
    import json
    import zipfile

    model, _ = _text_classifier(trainable=False)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    hub = next(layer for layer in config["config"]["layers"] if layer["config"]["name"] == "hub")
    hub["config"]["handle"] = "https://evil.example/module"
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    with pytest.raises(ValueError, match="from the network.*safe_mode=False"):
        keras.models.load_model(tmp_path / "evil.keras")


def test_a_run_folder_cannot_make_kmm_download_a_module(tiny_encoders, tmp_path, monkeypatch):
    import json

    from kmm.train.trainer import load_run, save_run
    from tests.serving.conftest import tiny_parts

    parts = tiny_parts()
    save_run(tmp_path, parts, 64 * 16, 32)  # the tiny encoders: 64 cells x 16 channels, 32-d text
    config = json.loads((tmp_path / "config.json").read_text())
    config["text_encoder"] = "https://evil.example/module"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="KMM_TRUST_REMOTE_HANDLES=1"):
        load_run(tmp_path)
    monkeypatch.setenv("KMM_TRUST_REMOTE_HANDLES", "1")
    assert load_run(tmp_path).config.text_encoder == "https://evil.example/module"  # trusted: loads


@pytest.mark.slow  # a fresh process
def test_export_round_trip_in_fresh_process(tiny_encoders, tmp_path):
    model, _ = _text_classifier(trainable=True)
    model.export(tmp_path / "export", verbose=False)
    code = f"""
        import numpy as np, tensorflow as tf, tensorflow_text, sys
        m = tf.saved_model.load({str(tmp_path / "export")!r})
        out = m.serve(tf.constant({[t.decode() for t in TEXTS.numpy()]!r}))
        assert "kmm" not in sys.modules
        print(np.array2string(out.numpy().ravel(), precision=6, separator=","))
    """
    out = np.array(eval(run_in_fresh_python(code)))
    np.testing.assert_allclose(out, model(TEXTS).numpy().ravel(), atol=1e-5)


def test_signature_call_and_errors(tiny_encoders):
    hub = HubLayer("kmm://tiny-text", signature="tokenize", output_key=specs.INPUT_IDS)
    assert hub(TEXTS).dtype == tf.int32
    with pytest.raises(ValueError, match="has no signature 'nope'"):
        HubLayer("kmm://tiny-text", signature="nope")
    with pytest.raises(KeyError, match="no output 'nope'"):
        HubLayer("kmm://tiny-text", output_key="nope")(TEXTS)


def test_bad_handles_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown built-in encoder 'kmm://nope'"):
        HubLayer("kmm://nope")
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        HubLayer(str(tmp_path))


def test_url_handles_are_passed_to_tensorflow_hub(monkeypatch):
    from kmm.hub import handles

    assert (
        handles.resolve_handle("https://tfhub.dev/deepmind/mil-nce/s3d/1") == "https://tfhub.dev/deepmind/mil-nce/s3d/1"
    )
    seen = []
    monkeypatch.setattr(handles.hub, "load", lambda h: seen.append(h) or tf.Module())
    handles.load_module(
        "https://www.kaggle.com/models/google/movinet/TensorFlow2/a0-base-kinetics-600-classification/3"
    )
    assert seen == ["https://www.kaggle.com/models/google/movinet/TensorFlow2/a0-base-kinetics-600-classification/3"]


def test_unfreezing_later_restores_the_module_trainable_set(tiny_encoders):
    """Staged training: stage 1 frozen, stage 2 `layer.trainable = True`."""
    model, hub = _text_classifier(trainable=False)
    assert len(model.trainable_weights) == 2
    hub.trainable = True
    assert len(hub.trainable_weights) == len(hub._module.trainable_variables)
    assert len(model.trainable_weights) == 2 + len(hub._module.trainable_variables)


def test_batch_norm_statistics_stay_non_trainable(tiny_encoders):
    hub = HubLayer("kmm://tiny-frames", output_key=specs.FRAME_FEATURES, trainable=True)
    n_all, n_train = len(hub._module.variables), len(hub._module.trainable_variables)
    assert n_train < n_all  # moving means / variances
    assert len(hub.trainable_weights) == n_train and len(hub.non_trainable_weights) == n_all - n_train
