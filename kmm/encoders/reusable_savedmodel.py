"""Writes TF-Hub "reusable SavedModels" (the TF2 format that `hub.load` expects).

A reusable SavedModel exposes a callable `__call__(inputs, training=False)` plus the
attributes `variables`, `trainable_variables` and `regularization_losses`, so that a
host layer can fine-tune it. See https://www.tensorflow.org/hub/reusable_saved_models.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

MANIFEST = "kmm_encoder.json"


def tf_variables(keras_model):
    """The underlying `tf.Variable`s of a Keras 3 model (TensorFlow backend)."""
    return [w.value for w in keras_model.weights], [w.value for w in keras_model.trainable_weights]


def save_reusable_savedmodel(export_dir, call, input_spec, keras_model, functions=None, assets=(), manifest=None):
    """Saves `call` as a reusable SavedModel, atomically.

    Args:
        export_dir: str or Path. Destination; replaced only once the new one is complete.
        call: Python function `(inputs, training) -> dict of tensors`.
        input_spec: `tf.TensorSpec` of `inputs`.
        keras_model: `keras.Model` whose variables `call` uses.
        functions: dict of name -> `tf.function` with an input signature; each is also
            attached to the object and exported as a serving signature of that name.
        assets: paths of files to ship in `assets/` (e.g. a vocabulary).
        manifest: JSON-serializable dict written to `assets.extra/kmm_encoder.json`.
    """
    export_dir = Path(export_dir)
    root = tf.train.Checkpoint()
    variables, trainable = tf_variables(keras_model)
    root.variables = variables
    root.trainable_variables = trainable
    root.regularization_losses = []
    # Dropout's RNG seed state is a variable too; it must be reachable from the root.
    weight_ids = {id(v) for v in variables}
    root.rng_state = [v.value for v in keras_model.variables if id(v.value) not in weight_ids]
    root.__call__ = tf.function(call)
    for training in (False, True):
        root.__call__.get_concrete_function(input_spec, training=training)
    root.assets = [tf.saved_model.Asset(str(p)) for p in assets]
    signatures = {"serving_default": root.__call__.get_concrete_function(input_spec, training=False)}
    for name, fn in (functions or {}).items():
        setattr(root, name, fn)
        signatures[name] = fn.get_concrete_function()

    export_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{export_dir.name}.", dir=export_dir.parent))
    try:
        tf.saved_model.save(root, str(tmp), signatures=signatures)
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / MANIFEST).write_text(json.dumps(manifest or {}, indent=2) + "\n")
        if export_dir.exists():
            shutil.rmtree(export_dir)
        os.replace(tmp, export_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return export_dir


def read_manifest(export_dir):
    """Returns the `kmm_encoder.json` written next to a kmm-built encoder, or `{}`."""
    path = Path(export_dir) / "assets.extra" / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}
