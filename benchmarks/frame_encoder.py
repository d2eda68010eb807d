"""Offline frame encoder (EfficientNet-Lite0 at 128 px): batch norms folded into the convolutions vs not.

Side by side in one process, from the pip package's ImageNet weights:
- `batch norm` (kmm's encoder before the sixth pass): Conv2D without bias, then a Keras
  `BatchNormalization`, and every frame resized to 128 px (antialiased) even at 128 px;
- `folded` (now): each batch norm folded into its convolution's kernel and bias, and the
  resize skipped when frames are already at the encoder's size.
Both run `preprocess -> CNN -> feature_map_16` (what the stage-1 feature cache keeps) in a
`tf.function`, on the same uint8 clips (`--clips` x 8 frames x 128 x 128), in alternating
rounds so a slower stretch of this shared machine hits both alike; median ms a clip, the
largest difference between their outputs, and what 7,800 clips (the quickstart) would take.

Run: .venv/bin/python benchmarks/frame_encoder.py [--rounds 5] [--out benchmarks/results/frame_encoder.json]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kmm import specs
from kmm.encoders.builtin import package_dir
from kmm.encoders.efficientnet_lite import build_efficientnet_lite, load_efficientnet_pytorch_weights
from kmm.encoders.frame_encoder import preprocess_frames
from kmm.weights import read_torch_legacy

SIZE, FRAMES, QUICKSTART_CLIPS = 128, 8, 7800


def always_resize(frames, image_size):
    """The preprocessing before the sixth pass: resize every frame, whatever its size."""
    shape = tf.shape(frames)
    images = tf.reshape(frames, tf.concat([[-1], shape[2:]], axis=0))
    images = tf.image.resize(tf.cast(images, tf.float32), [image_size, image_size], antialias=True)
    return (images - 127.0) / 128.0


def encoder(batch_norm, state, preprocess):
    cnn = build_efficientnet_lite(batch_norm=batch_norm)
    load_efficientnet_pytorch_weights(cnn, state)
    stride16 = keras.Model(cnn.input, cnn.output["feature_map_16"])
    return tf.function(lambda frames: stride16(preprocess(frames, SIZE), training=False))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32, help="clips a batch (the feature cache's batch)")
    parser.add_argument("--batches", type=int, default=4, help="batches a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/frame_encoder.json")
    args = parser.parse_args()
    pth = package_dir(specs.EFFICIENTNET_LITE0) / "models" / "efficientnet-lite0-57934424.pth"
    state = read_torch_legacy(pth)
    variants = {"batch norm, always resize": encoder(True, state, always_resize),
                "folded, resize skipped": encoder(False, state, preprocess_frames)}  # fmt: skip
    rng = np.random.default_rng(0)
    frames = tf.constant(rng.integers(0, 256, (args.clips, FRAMES, SIZE, SIZE, 3), dtype=np.uint8))
    outputs = {name: fn(frames).numpy() for name, fn in variants.items()}  # also traces outside the timing
    reference, folded = outputs.values()
    difference = float(np.abs(folded - reference).max())
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(args.batches):
                fn(frames)
            times[name].append(round(1000 * (time.perf_counter() - t0) / (args.batches * args.clips), 2))
    rows = []
    for name in variants:
        median = float(np.median(times[name]))
        rows.append({"variant": name, "ms_per_clip": times[name], "median_ms_per_clip": median,
                     "quickstart_clips_s": round(median * QUICKSTART_CLIPS / 1000, 1)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    print(f"largest output difference: {difference:.2e} (outputs up to {float(np.abs(reference).max()):.1f})")
    result = {"machine": platform.processor() or platform.machine(), "tensorflow": tf.__version__,
              "frames_per_clip": FRAMES, "frame_size": SIZE, "clips_per_batch": args.clips,
              "max_abs_difference": difference, "rows": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
