"""Stage-1 training step of the default model, two designs side by side.

The default model (kmm-shapes labels, EfficientNet-Lite0 stride-16 features: 8 frames x
64 cells x 112 channels, MiniLM text, batch 64) built twice in one process: the layer
normalization of the encoder's features with a trained scale and shift (before) vs fixed at
1 and 0 (now: nothing below it has a gradient, so the backward pass stops there). (The
frame-token comparison this script also ran, `frame_cell_dim` 0 vs 16, left with the field;
its numbers are in BENCHMARKS.md.)
Both `train_on_batch` on the same random batch, in alternating windows of `--steps` steps
(so a slower stretch of this shared machine hits both alike); median ms a step.

Run: .venv/bin/python benchmarks/training_step.py [--rounds 6]
(results in `benchmarks/results/training_step_feature_norm.json` unless `--out`).
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from kmm.data.synth import generate
from kmm.features.arrays import model_inputs
from kmm.models.builder import build_feature_model, build_parts
from kmm.models.config import PRESETS
from kmm.tasks import targets
from kmm.train.trainer import _compile

BATCH, FEATURE_DIM, TEXT_DIM = 64, 64 * 112, 384


def batch(config, rng):
    x = {
        "video_features": rng.normal(size=(BATCH, config.num_frames, FEATURE_DIM)).astype("float32"),
        "text_tokens": rng.normal(size=(BATCH, config.max_text_tokens, TEXT_DIM)).astype("float32"),
        "text_padding_mask": np.ones((BATCH, config.max_text_tokens), bool),
        "caption_embedding": rng.normal(size=(BATCH, TEXT_DIM)).astype("float32"),
        "caption_tokens": rng.normal(size=(BATCH, config.max_caption_tokens, TEXT_DIM)).astype("float32"),
        "caption_padding_mask": np.ones((BATCH, config.max_caption_tokens), bool),
    }
    y = targets(config, rng.integers(0, len(config.labels), BATCH), np.arange(BATCH, dtype="float32"))
    return model_inputs(x, config), y


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", default="benchmarks/results/training_step_feature_norm.json")
    args = parser.parse_args()
    base = PRESETS["default"].replace(labels=tuple(generate.label_names()), spatial_cells=64)
    variants = {"feature norm trained": (base, True), "feature norm fixed": (base, False)}
    rng = np.random.default_rng(0)
    views, data, params = {}, {}, {}
    for name, (config, train_feature_norm) in variants.items():
        parts = build_parts(config, FEATURE_DIM, TEXT_DIM)
        for layer in parts.video_tower.layers:
            if layer.name in ("feature_norm", "guided_feature_norm"):
                layer.trainable = train_feature_norm
        model = build_feature_model(parts, FEATURE_DIM, TEXT_DIM)
        views[name] = _compile(model, config, 1e-3, 1e-4, 10_000)
        params[name] = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        data[name] = batch(config, rng)
        for _ in range(3):  # trace outside the timing
            views[name].train_on_batch(*data[name])
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name in variants:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                views[name].train_on_batch(*data[name])
            times[name].append(round(1000 * (time.perf_counter() - t0) / args.steps, 1))
    rows = []
    for name in variants:
        row = {"variant": name, "trainable_params": params[name], "ms_per_step": times[name],
               "median_ms_per_step": float(np.median(times[name]))}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"machine": platform.processor() or platform.machine(), "tensorflow": tf.__version__,
              "compare": "feature-norm", "batch_size": BATCH, "steps_per_window": args.steps, "rows": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
