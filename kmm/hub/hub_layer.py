"""A Keras 3 layer that hosts any TF-Hub module, trainable on request.

`hub.KerasLayer` cannot live in a Keras 3 model (tensorflow/tensorflow#65419,
tensorflow/hub#920). `HubLayer` loads the module with `hub.load` and wraps each of the
module's own `tf.Variable`s in a `keras.Variable` (the same variable, no copy), so Keras
tracks them: `trainable=True` puts them in `trainable_weights` and `fit` updates them,
`.keras` files store their values, and `model.export` carries the module along.
"""

import re

import keras
import tensorflow as tf

from kmm.hub.handles import check_keras_config, load_module


def _keras_name(variable, index):
    # Keras names may not contain "/" or ":" (optimizer slots are named after them).
    return f"{index:03d}_" + re.sub(r"[^A-Za-z0-9_.-]", "_", variable.name)


def _accepts_training(fn):
    for concrete in getattr(fn, "concrete_functions", ()):
        args, kwargs = concrete.structured_input_signature
        if "training" in kwargs or len(args) > 1:
            return True
    return False


@keras.saving.register_keras_serializable(package="kmm")
class HubLayer(keras.layers.Layer):
    """Runs a TF-Hub module (`hub.load` of a URL, a local folder or `kmm://<name>`).

    The module is called either as a reusable SavedModel (`module(inputs, training=...)`,
    the default) or through one of its signatures. Outputs are a dict of tensors, or one
    of them when `output_key` is set.

    Args:
        handle: str. `kmm://<name>` (kmm's offline encoders), a local SavedModel folder,
            or a TF-Hub / Kaggle URL.
        signature: str or None. Call `module.signatures[signature]` instead of the
            module itself. Defaults to `None`.
        input_key: str or None. With a signature: the keyword that receives a single
            input tensor. Defaults to the signature's only input.
        output_key: str or None. Return only this output. Defaults to `None` (all).
        trainable: bool. Fine-tune the module's variables. Defaults to `False`: a frozen
            module contributes no trainable weights.

    Call arguments:
        inputs: a tensor, or a dict of tensors passed as keywords to a signature.
        training: bool. Forwarded to modules whose `__call__` accepts it (dropout, batch norm).

    Example:

        >>> text = keras.Input((), dtype="string")
        >>> emb = HubLayer("kmm://tiny-text", output_key="pooled_output")(text)
        >>> model = keras.Model(text, keras.layers.Dense(2)(emb))
    """

    def __init__(self, handle, signature=None, input_key=None, output_key=None, trainable=False, **kwargs):
        super().__init__(**kwargs)
        self.handle = str(handle)
        self.signature = signature
        self.input_key = input_key
        self.output_key = output_key
        self._module = load_module(self.handle)
        if signature is not None:
            if signature not in self._module.signatures:
                raise ValueError(
                    f"Module {self.handle!r} has no signature {signature!r}; it has {sorted(self._module.signatures)}."
                )
            self._fn = self._module.signatures[signature]
            self._call_training = False
        else:
            if not callable(self._module):
                raise ValueError(
                    f"Module {self.handle!r} is not callable; pass one of its signatures: "
                    f"{sorted(self._module.signatures)}."
                )
            self._fn = self._module
            self._call_training = _accepts_training(self._module.__call__)
        module_vars = list(getattr(self._module, "variables", []))
        trainable_ids = {id(v) for v in getattr(self._module, "trainable_variables", [])}
        if trainable and module_vars and not trainable_ids:
            raise ValueError(
                f"Module {self.handle!r} exposes no `trainable_variables`, so it cannot be fine-tuned. "
                "Only reusable SavedModels (https://www.tensorflow.org/hub/reusable_saved_models) can."
            )
        # The same tf.Variables, now tracked by Keras (no copy).
        self._hub_variables = [
            keras.Variable(initializer=v, trainable=id(v) in trainable_ids, name=_keras_name(v, i))
            for i, v in enumerate(module_vars)
        ]
        # Keras' setter freezes or unfreezes exactly the variables registered as trainable,
        # so `layer.trainable = True` later (staged training) unfreezes the module again.
        self.trainable = trainable
        self.built = True

    def _single_input_key(self):
        if self.input_key is not None:
            return self.input_key
        keys = sorted(self._fn.structured_input_signature[1])
        if len(keys) != 1:
            raise ValueError(f"Signature {self.signature!r} of {self.handle!r} takes {keys}; pass a dict of inputs.")
        return keys[0]

    def call(self, inputs, training=None):
        if self.signature is not None:
            kwargs = inputs if isinstance(inputs, dict) else {self._single_input_key(): inputs}
            outputs = self._fn(**kwargs)
        elif self._call_training:
            outputs = self._fn(inputs, training=bool(training) and self.trainable)
        else:
            outputs = self._fn(inputs)
        if self.output_key is not None:
            if not isinstance(outputs, dict) or self.output_key not in outputs:
                available = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
                raise KeyError(f"Module {self.handle!r} has no output {self.output_key!r}; it returns {available}.")
            return outputs[self.output_key]
        return outputs

    def compute_output_spec(self, inputs, training=None):
        # Trace the module once on symbolic inputs to learn its output shapes and dtypes.
        def spec(x):
            return tf.TensorSpec(x.shape, x.dtype)

        flat = tf.nest.map_structure(spec, inputs)
        concrete = tf.function(lambda x: self.call(x, training=False)).get_concrete_function(flat)
        return tf.nest.map_structure(
            lambda t: keras.KerasTensor(t.shape, dtype=t.dtype.name), concrete.structured_outputs
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            handle=self.handle, signature=self.signature, input_key=self.input_key, output_key=self.output_key
        )
        return config

    @classmethod
    def from_config(cls, config):
        check_keras_config(config)  # a network handle in a .keras file: only outside safe mode
        return cls(**config)
