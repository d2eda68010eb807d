"""Stage-1 `fit` epochs: a new dataset iterator each epoch vs one iterator for the whole fit.

On the quickstart's cached train features (6,000 clips, batch 64, time reversal and 16
reversal pairs, as the quickstart trains), one default model per variant, `fit` for
`--epochs` epochs of 93 steps:
- `iterator per epoch` (kmm until the sixth pass): `fit(features_dataset(...))`; Keras
  re-creates the finite dataset's iterator at every epoch;
- `one iterator` (now): `fit(features_dataset(...).repeat(), steps_per_epoch=93)`.
A callback records, for each epoch, its wall time, the time inside the training steps, and
the stall before the first step. The two variants run one after the other in one process;
the first epoch (tracing) is reported but left out of the medians.

Run: .venv/bin/python benchmarks/fit_epochs.py [--epochs 5] [--features DIR] [--out benchmarks/results/fit_epochs.json]
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quickstart_features import add_features_argument, load_quickstart_features  # noqa: E402

from kmm.data.synth import generate, vocab  # noqa: E402
from kmm.models.builder import build_feature_model, build_parts  # noqa: E402
from kmm.models.config import PRESETS  # noqa: E402
from kmm.train.batches import features_dataset  # noqa: E402
from kmm.train.trainer import _compile  # noqa: E402

BATCH, PAIRS = 64, 16


class EpochClock(keras.callbacks.Callback):
    """Per epoch: wall s, s inside `train_function` calls, s before the first step."""

    def __init__(self, variant):
        super().__init__()
        self.variant, self.rows = variant, []

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.in_steps, self.stall = time.perf_counter(), 0.0, None

    def on_train_batch_begin(self, batch, logs=None):
        self.step_start = time.perf_counter()
        if self.stall is None:
            self.stall = self.step_start - self.start

    def on_train_batch_end(self, batch, logs=None):
        self.in_steps += time.perf_counter() - self.step_start

    def on_epoch_end(self, epoch, logs=None):
        wall = time.perf_counter() - self.start
        self.rows.append({"epoch": epoch, "wall_s": round(wall, 1), "steps_s": round(self.in_steps, 1),
                          "stall_before_first_step_s": round(self.stall, 2)})  # fmt: skip
        print(json.dumps({"variant": self.variant, **self.rows[-1]}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_features_argument(parser)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/fit_epochs.json")
    args = parser.parse_args()
    train = load_quickstart_features(args.features)["train"]
    config = PRESETS["default"].replace(labels=tuple(generate.label_names()))
    feature_dim, text_dim = train["video_features"].shape[-1], train["caption_tokens"].shape[-1]
    results = []
    for variant in ("iterator per epoch", "one iterator"):
        keras.utils.set_random_seed(0)
        ds = features_dataset(train, config, BATCH, training=True, time_reversal=vocab.TIME_REVERSAL,
                              reversal_pairs=PAIRS)  # fmt: skip
        steps = int(ds.cardinality())
        model = build_feature_model(build_parts(config, feature_dim, text_dim), feature_dim, text_dim)
        view = _compile(model, config, 2e-3, 1e-4, args.epochs * steps)
        clock = EpochClock(variant)
        if variant == "one iterator":
            view.fit(ds.repeat(), steps_per_epoch=steps, epochs=args.epochs, verbose=0, callbacks=[clock])
        else:
            view.fit(ds, epochs=args.epochs, verbose=0, callbacks=[clock])
        later = clock.rows[1:]
        results.append({
            "variant": variant, "steps_per_epoch": steps, "epochs": clock.rows,
            "median_epoch_s": float(np.median([r["wall_s"] for r in later])),
            "median_steps_s": float(np.median([r["steps_s"] for r in later])),
            "total_stall_s": round(sum(r["stall_before_first_step_s"] for r in later), 1),
        })  # fmt: skip
    for row in results:
        print(f"{row['variant']}: median epoch {row['median_epoch_s']} s, of which steps {row['median_steps_s']} s; "
              f"stalls before the first step, epochs 2+: {row['total_stall_s']} s in all")  # fmt: skip
    result = {"machine": platform.processor() or platform.machine(), "tensorflow": tf.__version__,
              "keras": keras.__version__, "batch_size": BATCH, "reversal_pairs": PAIRS, "rows": results}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
