"""EfficientNet-Lite in Keras 3, and the loader for EfficientNet-PyTorch-named weights.

Lite variants drop squeeze-excite, use ReLU6 everywhere and fix the stem (32) and head
(1280) widths, which makes them quick on CPU. Padding is TF "same", exactly what the
PyTorch port's `Conv2dStaticSamePadding` computes.

For inference, `build_efficientnet_lite(config, batch_norm=False)` builds the same network
with each batch normalization folded into the convolution before it (a kernel scale and a
bias); `load_efficientnet_pytorch_weights` folds the checkpoint's statistics into it. Same
outputs (within 1e-4; values reach 27), 42% of the time on CPU
(`benchmarks/frame_encoder.py`): a convolution with a bias and ReLU6 can run as one fused
op, while a separate batch normalization makes extra passes over every activation.
"""

import dataclasses
import functools

import keras
import numpy as np

# (repeats, kernel, stride, expand_ratio, in_channels, out_channels) of EfficientNet-B0/Lite0.
LITE0_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclasses.dataclass(frozen=True)
class EfficientNetLiteConfig:
    """Architecture of an EfficientNet-Lite image encoder. Defaults are Lite0."""

    blocks: tuple = LITE0_BLOCKS
    stem_channels: int = 32
    head_channels: int = 1280
    num_classes: int = 1000
    batch_norm_epsilon: float = 1e-3


def _conv_bn(x, filters, kernel, stride, name, activation=True, depthwise=False, epsilon=1e-3, batch_norm=True):
    """Convolution, then batch normalization, or (`batch_norm=False`) a bias folded from it."""
    conv = dict(padding="same", use_bias=not batch_norm, name=name + "_conv")
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, stride, **conv)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, **conv)(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(epsilon=epsilon, name=name + "_bn")(x)
    return keras.layers.ReLU(6.0, name=name + "_relu6")(x) if activation else x


def expanded_block_args(config):
    """One `(kernel, stride, expand_ratio, in, out)` tuple per block, repeats unrolled."""
    args = []
    for repeats, kernel, stride, expand, cin, cout in config.blocks:
        for r in range(repeats):
            args.append((kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
    return args


def build_efficientnet_lite(config=EfficientNetLiteConfig(), batch_norm=True):
    """Returns a functional model: normalized images `(n, h, w, 3)` -> `{features, logits, feature_map}`.

    `batch_norm=False` folds each batch normalization into its convolution (inference
    form: for pretrained weights loaded with `load_efficientnet_pytorch_weights`, or
    fine-tuning without batch statistics).

    `features` is the globally average-pooled head output `(n, head_channels)`;
    `logits` the classifier output `(n, num_classes)`; `feature_map` the last block's
    output `(n, h/32, w/32, channels)`, which keeps the spatial layout that pooling drops;
    `feature_map_16` the last stride-16 block's output `(n, h/16, w/16, channels)` (finer
    cells, mid-level features), when the architecture has one.
    """
    conv_bn = functools.partial(_conv_bn, epsilon=config.batch_norm_epsilon, batch_norm=batch_norm)
    images = keras.Input((None, None, 3), name="images")
    x = conv_bn(images, config.stem_channels, 3, 2, "stem")
    stride_total, feature_map_16 = 2, None
    for i, (kernel, stride, expand, cin, cout) in enumerate(expanded_block_args(config)):
        if stride_total == 16 and stride == 2:
            feature_map_16 = x  # the last stride-16 block's output, before the next downsampling
        stride_total *= stride
        inputs = x
        if expand != 1:
            x = conv_bn(x, cin * expand, 1, 1, f"block{i}_expand")
        x = conv_bn(x, None, kernel, stride, f"block{i}_depthwise", depthwise=True)
        x = conv_bn(x, cout, 1, 1, f"block{i}_project", activation=False)
        if stride == 1 and cin == cout:
            x = keras.layers.Add(name=f"block{i}_add")([inputs, x])
    feature_map = x  # (n, h/32, w/32, last block channels): keeps where things are
    x = conv_bn(x, config.head_channels, 1, 1, "head")
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)  # (n, head_channels)
    logits = keras.layers.Dense(config.num_classes, name="classifier")(features)
    outputs = {"features": features, "logits": logits, "feature_map": feature_map}
    if feature_map_16 is not None:
        outputs["feature_map_16"] = feature_map_16
    return keras.Model(images, outputs, name="efficientnet_lite")


def load_efficientnet_pytorch_weights(model, state, config=EfficientNetLiteConfig()):
    """Copies an EfficientNet-PyTorch `state_dict` (numpy arrays) into the Keras model.

    Into a model built with `batch_norm=False`, each batch normalization's statistics are
    folded into its convolution: `kernel * s` and bias `beta - mean * s`, with
    `s = gamma / sqrt(var + eps)`.
    """

    def kernel(layer, key):
        w = state[key]  # (out, in, kh, kw), or (channels, 1, kh, kw) for depthwise
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            return w.transpose(2, 3, 0, 1)  # (kh, kw, channels, 1)
        return w.transpose(2, 3, 1, 0)  # (kh, kw, in, out)

    def pair(name, conv_key, bn_key):
        conv = model.get_layer(name + "_conv")
        w = kernel(conv, conv_key)
        gamma, beta, mean, var = (state[bn_key + s] for s in (".weight", ".bias", ".running_mean", ".running_var"))
        if not conv.use_bias:
            conv.set_weights([w])
            model.get_layer(name + "_bn").set_weights([gamma, beta, mean, var])
            return
        scale = gamma / np.sqrt(var + config.batch_norm_epsilon)  # per output channel
        w = w * (scale[:, None] if isinstance(conv, keras.layers.DepthwiseConv2D) else scale)
        conv.set_weights([w.astype(np.float32), (beta - mean * scale).astype(np.float32)])

    pair("stem", "_conv_stem.weight", "_bn0")
    for i, (_, _, expand, _, _) in enumerate(expanded_block_args(config)):
        p = f"_blocks.{i}."
        if expand != 1:
            pair(f"block{i}_expand", p + "_expand_conv.weight", p + "_bn0")
        pair(f"block{i}_depthwise", p + "_depthwise_conv.weight", p + "_bn1")
        pair(f"block{i}_project", p + "_project_conv.weight", p + "_bn2")
    pair("head", "_conv_head.weight", "_bn1")
    model.get_layer("classifier").set_weights([state["_fc.weight"].T, state["_fc.bias"]])
