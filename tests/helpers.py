"""Test helpers shared across the suite (keras-hub's `run_layer_test`, in kmm's flavour)."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf


def _flat(x):
    return [np.asarray(t) for t in tf.nest.flatten(x)]


def assert_all_close(a, b, atol=1e-5):
    for x, y in zip(_flat(a), _flat(b), strict=True):
        np.testing.assert_allclose(x, y, atol=atol)


def run_layer_test(make_layer, inputs, tmp_path, train_target=None, atol=1e-5):
    """Config round trip, symbolic call, eager call, one `fit` step, `.keras` round trip.

    Args:
        make_layer: zero-argument callable returning a fresh layer.
        inputs: a tensor or dict of tensors (eager batch).
        tmp_path: folder for the `.keras` file.
        train_target: optional function `outputs -> tensor` reducing the layer's outputs to
            `(batch, n)` for the fit step. Defaults to the only/first float output.

    Returns:
        The trained functional model.
    """
    layer = make_layer()
    # Config JSON round trip gives an equivalent layer.
    config = json.loads(json.dumps(layer.get_config()))
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == layer.get_config()

    # Symbolic call.
    def sym(x):
        return keras.Input(x.shape[1:], dtype=x.dtype.name if hasattr(x.dtype, "name") else x.dtype)

    sym_inputs = tf.nest.map_structure(sym, inputs)
    outputs = layer(sym_inputs)
    target_fn = train_target or (lambda o: o if not isinstance(o, dict) else next(iter(o.values())))
    head = keras.layers.Dense(2, name="test_head")
    model = keras.Model(sym_inputs, head(keras.layers.Flatten()(target_fn(outputs))))

    # Eager call matches the symbolic graph's call, in shape and in value.
    eager = layer(inputs)
    graph = keras.Model(sym_inputs, outputs)(inputs)
    for out, spec, value in zip(tf.nest.flatten(eager), tf.nest.flatten(outputs), tf.nest.flatten(graph), strict=True):
        assert all(a == b for a, b in zip(out.shape[1:], spec.shape[1:], strict=True) if b is not None)
        np.testing.assert_allclose(np.asarray(out), np.asarray(value), atol=atol)

    # One fit step runs and gives a finite loss.
    batch = tf.nest.flatten(inputs)[0].shape[0]
    y = np.arange(batch) % 2
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = tf.data.Dataset.from_tensors((inputs, y))
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])

    # .keras save / load gives equal outputs.
    path = tmp_path / "layer_test.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert_all_close(model(inputs), reloaded(inputs), atol=atol)
    return model


def run_in_fresh_python(code, timeout=300):
    """Runs `code` in a new interpreter (its stdout returned); fails the test on error."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"fresh process failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc.stdout
