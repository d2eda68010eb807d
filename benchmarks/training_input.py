"""Stage-1 input pipeline: the per-clip `tf.data` pipeline vs kmm's per-batch one.

Side by side in one run, on the quickstart's cached train features (6,000 clips, 8 x 7,168
features each, reversed captions cached), batch 64, time reversal on:
- `per-clip baseline`: `from_tensor_slices` -> shuffle -> per-clip time-reversal `map` ->
  batch (kmm's pipeline until the fourth pass);
- `kmm per-batch`: `features_dataset`, which draws each batch's indices (and which clips
  play backwards) in numpy and gathers and reverses the whole batch in one `map`;
(A third variant, caption-neighbour batches, left with `TrainConfig.neighbours` in kmm 0.2.0;
its numbers are in BENCHMARKS.md.)
For each: one epoch iterated alone (the pipeline's own cost). Then what training pays:
one default model, `fit` on 30 batches of each pipeline in turn, 3 rounds (alternating,
so that a slower stretch of the machine hits every pipeline alike), mean ms a step.

Run: .venv/bin/python benchmarks/training_input.py [--features DIR] [--out benchmarks/results/training_input.json]
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quickstart_features import add_features_argument, load_quickstart_features  # noqa: E402

from kmm import tasks  # noqa: E402
from kmm.data.synth import generate, vocab  # noqa: E402
from kmm.features import arrays as feats  # noqa: E402
from kmm.models.config import PRESETS  # noqa: E402
from kmm.train import batches  # noqa: E402
from kmm.train.trainer import TrainConfig, _compile  # noqa: E402

BATCH = 64


def per_clip_baseline(arrays, config, seed=0):
    """The pre-fourth-pass pipeline: shuffle clips, reverse each clip in its own `map` call."""
    inputs = feats.model_inputs(arrays, config)
    backwards = feats.reversed_caption_inputs(arrays, config)
    inputs = {**inputs, **{feats.REVERSED + k: v for k, v in backwards.items()}}
    labels = arrays["label_id"]
    targets = tasks.targets(config, labels, np.arange(len(labels), dtype=np.float32))
    reversed_ids = tf.constant(batches.reversed_label_ids(config.labels, vocab.TIME_REVERSAL))
    generator = tf.random.Generator.from_seed(seed)

    def augment(x, y):
        target = tf.gather(reversed_ids, tf.cast(y["logits"], tf.int32))
        flip = tf.logical_and(generator.uniform(()) < 0.5, target >= 0)
        x = dict(x)
        x["video_features"] = tf.where(flip, tf.reverse(x["video_features"], [0]), x["video_features"])
        for key in [k for k in x if k.startswith(feats.REVERSED)]:
            value = x.pop(key)
            x[key[len(feats.REVERSED) :]] = tf.where(flip, value, x[key[len(feats.REVERSED) :]])
        y = dict(y)
        y["logits"] = tf.where(flip, tf.cast(target, y["logits"].dtype), y["logits"])
        return x, y, {k: tf.ones(()) for k in y}

    ds = tf.data.Dataset.from_tensor_slices((inputs, targets)).shuffle(len(labels), seed=seed)
    return ds.map(augment).batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def iterate(name, make_dataset):
    t0 = time.perf_counter()
    ds = make_dataset()
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    batches = sum(1 for _ in ds)
    seconds = time.perf_counter() - t0
    row = {"pipeline": name, "batches": batches, "build_s": round(build, 2), "iterate_s": round(seconds, 2),
           "iterate_ms_per_batch": round(1000 * seconds / batches, 1)}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row, ds


def fit_in_turns(datasets, config, arrays, steps=30, rounds=3):
    """Mean ms a `fit` step per pipeline: one model, the pipelines' `fit` calls alternating."""
    from kmm.models.builder import build_feature_model, build_parts

    dims = arrays["video_features"].shape[-1], arrays["text_tokens"].shape[-1]
    model = build_feature_model(build_parts(config, *dims), *dims)
    view = _compile(model, config, 1e-3, 1e-4, 10 * steps * rounds * len(datasets))
    for ds in datasets.values():
        view.fit(ds.take(3), verbose=0)  # trace outside the timing
    times = {name: [] for name in datasets}
    for _ in range(rounds):
        for name, ds in datasets.items():
            t0 = time.perf_counter()
            view.fit(ds.take(steps), verbose=0)
            times[name].append(1000 * (time.perf_counter() - t0) / steps)
    return {name: [round(t, 1) for t in ts] for name, ts in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_features_argument(parser)
    parser.add_argument("--out", default="benchmarks/results/training_input.json")
    args = parser.parse_args()
    arrays = load_quickstart_features(args.features)["train"]
    config = PRESETS["default"].replace(labels=tuple(generate.label_names()))
    train = TrainConfig(time_reversal=vocab.TIME_REVERSAL)

    pipelines = {
        "per-clip baseline": lambda: per_clip_baseline(arrays, config),
        "kmm per-batch": lambda: batches.features_dataset(arrays, config, BATCH, True, 0, train.time_reversal),
    }
    rows, datasets = [], {}
    for name, make in pipelines.items():
        row, datasets[name] = iterate(name, make)
        rows.append(row)
    fit_ms = fit_in_turns(datasets, config, arrays)
    for row in rows:
        row["fit_ms_per_step"] = fit_ms[row["pipeline"]]
        row["fit_ms_per_step_mean"] = round(float(np.mean(fit_ms[row["pipeline"]])), 1)
        print(row["pipeline"], "fit ms/step", row["fit_ms_per_step"], flush=True)
    result = {"machine": platform.processor() or platform.machine(), "tensorflow": tf.__version__,
              "clips": int(len(arrays["label_id"])), "batch_size": BATCH, "rows": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
