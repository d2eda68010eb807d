"""Frame encoder vs video encoder under the same towers: EfficientNet-Lite0 vs I3D on kmm-shapes.

Same data (kmm-shapes `small`: 600 train, 100 val, 300 test clips), same towers and fusion
(slots, text-guided attention over each step's cells), same training budget; only the
encoder features change:
- `default`: EfficientNet-Lite0 at 128 px, stride-16 map (8 x 8 cells), 8 frames;
- `i3d`: I3D Kinetics-400 at 224 px, mixed_5c (7 x 7 cells, one step per 8 frames), 16 frames.
Time reversal is off for both: reversing I3D's two steps would not reverse the motion inside each.

    .venv/bin/python benchmarks/video_encoder.py [--epochs 20] [--out benchmarks/results/video_encoder.json]
"""

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from kmm import paths
from kmm.data.synth import generate, vocab
from kmm.eval.evaluate import evaluate_split
from kmm.features import cache as feats
from kmm.models.config import PRESETS
from kmm.train.trainer import TrainConfig, train_on_features

SPLITS = ("train", "val", "test")


def run(preset, manifest, epochs, work):
    config = PRESETS[preset].replace(labels=tuple(generate.label_names()))
    feature_dir = work / f"features-{preset}"
    shutil.rmtree(feature_dir, ignore_errors=True)
    start = time.perf_counter()
    paths_ = feats.extract_features(manifest, config, feature_dir, SPLITS, progress=True,
                                    caption_group=vocab.caption_content)  # fmt: skip
    extract = time.perf_counter() - start
    arrays = {s: feats.load_features(paths_[s][0]) for s in SPLITS}
    clips = sum(len(a[next(iter(a))]) for a in arrays.values())
    start = time.perf_counter()
    train = TrainConfig(epochs=epochs, learning_rate=2e-3, warmup_epochs=1)
    parts, _ = train_on_features(config, arrays["train"], arrays["val"], train, work / f"run-{preset}", verbose=0)
    fit = time.perf_counter() - start
    test = evaluate_split(parts, arrays["test"])
    return {
        "preset": preset,
        "frame_encoder": config.frame_encoder,
        "frames": config.num_frames,
        "frame_size": config.frame_size,
        "feature_steps": config.feature_steps,
        "cells": parts.config.spatial_cells,
        "extract_seconds": round(extract, 1),
        "ms_per_clip": round(1000 * extract / clips, 1),
        "train_seconds": round(fit, 1),
        "test_action_accuracy": test["classification_action"]["accuracy"],
        "test_referring_accuracy": test["classification_referring"]["accuracy"],
        "test_t2v_R@1": test["retrieval"]["text_to_video"]["R@1"],
        "test_t2v_R@10": test["retrieval"]["text_to_video"]["R@10"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--presets", nargs="+", default=["default", "i3d"])
    parser.add_argument("--out", default="benchmarks/results/video_encoder.json")
    args = parser.parse_args()
    # The build the recorded numbers came from: 30% of train/val over real imagery.
    synth = dataclasses.replace(generate.PRESETS["small"], real_backgrounds=0.3)
    manifest = generate.generate(paths.kmm_home() / "data" / "kmm-shapes-small-real30", synth)
    work = paths.kmm_home() / "benchmarks" / "video_encoder"
    rows = []
    for preset in args.presets:
        rows.append(run(preset, manifest, args.epochs, work))
        print(json.dumps(rows[-1]), flush=True)
    print(
        "\n| encoder | frames | steps x cells | features ms/clip | train s | action | referring | t->v R@1 | t->v R@10 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['frame_encoder']}` | {r['frames']} @ {r['frame_size']} px | {r['feature_steps']} x {r['cells']} "
              f"| {r['ms_per_clip']:.0f} | {r['train_seconds']:.0f} | {100 * r['test_action_accuracy']:.1f} "
              f"| {100 * r['test_referring_accuracy']:.1f} | {r['test_t2v_R@1']:.1f} | {r['test_t2v_R@10']:.1f} |")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
