"""EfficientNet-Lite in Keras 3, and the loader for EfficientNet-PyTorch-named weights.

Lite variants drop squeeze-excite, use ReLU6 everywhere and fix the stem (32) and head
(1280) widths, which makes them quick on CPU. Padding is TF "same", exactly what the
PyTorch port's `Conv2dStaticSamePadding` computes.
"""

import dataclasses

import keras

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


def _conv_bn(x, filters, kernel, stride, name, activation=True, depthwise=False, epsilon=1e-3):
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name + "_conv")(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name + "_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=epsilon, name=name + "_bn")(x)
    return keras.layers.ReLU(6.0, name=name + "_relu6")(x) if activation else x


def expanded_block_args(config):
    """One `(kernel, stride, expand_ratio, in, out)` tuple per block, repeats unrolled."""
    args = []
    for repeats, kernel, stride, expand, cin, cout in config.blocks:
        for r in range(repeats):
            args.append((kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
    return args


def build_efficientnet_lite(config=EfficientNetLiteConfig()):
    """Returns a functional model: normalized images `(n, h, w, 3)` -> `{features, logits, feature_map}`.

    `features` is the globally average-pooled head output `(n, head_channels)`;
    `logits` the classifier output `(n, num_classes)`; `feature_map` the last block's
    output `(n, h/32, w/32, channels)`, which keeps the spatial layout that pooling drops;
    `feature_map_16` the last stride-16 block's output `(n, h/16, w/16, channels)` (finer
    cells, mid-level features), when the architecture has one.
    """
    eps = config.batch_norm_epsilon
    images = keras.Input((None, None, 3), name="images")
    x = _conv_bn(images, config.stem_channels, 3, 2, "stem", epsilon=eps)
    stride_total, feature_map_16 = 2, None
    for i, (kernel, stride, expand, cin, cout) in enumerate(expanded_block_args(config)):
        if stride_total == 16 and stride == 2:
            feature_map_16 = x  # the last stride-16 block's output, before the next downsampling
        stride_total *= stride
        inputs = x
        if expand != 1:
            x = _conv_bn(x, cin * expand, 1, 1, f"block{i}_expand", epsilon=eps)
        x = _conv_bn(x, None, kernel, stride, f"block{i}_depthwise", depthwise=True, epsilon=eps)
        x = _conv_bn(x, cout, 1, 1, f"block{i}_project", activation=False, epsilon=eps)
        if stride == 1 and cin == cout:
            x = keras.layers.Add(name=f"block{i}_add")([inputs, x])
    feature_map = x  # (n, h/32, w/32, last block channels): keeps where things are
    x = _conv_bn(x, config.head_channels, 1, 1, "head", epsilon=eps)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)  # (n, head_channels)
    logits = keras.layers.Dense(config.num_classes, name="classifier")(features)
    outputs = {"features": features, "logits": logits, "feature_map": feature_map}
    if feature_map_16 is not None:
        outputs["feature_map_16"] = feature_map_16
    return keras.Model(images, outputs, name="efficientnet_lite")


def load_efficientnet_pytorch_weights(model, state, config=EfficientNetLiteConfig()):
    """Copies an EfficientNet-PyTorch `state_dict` (numpy arrays) into the Keras model."""

    def conv(layer, key):
        w = state[key]  # (out, in, kh, kw), or (channels, 1, kh, kw) for depthwise
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            layer.set_weights([w.transpose(2, 3, 0, 1)])  # (kh, kw, channels, 1)
        else:
            layer.set_weights([w.transpose(2, 3, 1, 0)])  # (kh, kw, in, out)

    def bn(layer, prefix):
        layer.set_weights([state[prefix + s] for s in (".weight", ".bias", ".running_mean", ".running_var")])

    def pair(name, conv_key, bn_key):
        conv(model.get_layer(name + "_conv"), conv_key)
        bn(model.get_layer(name + "_bn"), bn_key)

    pair("stem", "_conv_stem.weight", "_bn0")
    for i, (_, _, expand, _, _) in enumerate(expanded_block_args(config)):
        p = f"_blocks.{i}."
        if expand != 1:
            pair(f"block{i}_expand", p + "_expand_conv.weight", p + "_bn0")
        pair(f"block{i}_depthwise", p + "_depthwise_conv.weight", p + "_bn1")
        pair(f"block{i}_project", p + "_project_conv.weight", p + "_bn2")
    pair("head", "_conv_head.weight", "_bn1")
    model.get_layer("classifier").set_weights([state["_fc.weight"].T, state["_fc.bias"]])
