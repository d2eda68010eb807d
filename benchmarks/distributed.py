"""Stage-1 training throughput under `tf.distribute`, side by side in one run: one process
(default strategy) vs `MirroredStrategy` on 2 logical CPUs vs 2 worker processes
(`MultiWorkerMirroredStrategy` over 127.0.0.1, one thread each), on the same features and
global batch. In the 2-worker run it also times a ring all-reduce of the model's trainable
weights (what each step exchanges), from which it estimates N machines.

Data: a run's cached features (default: the quickstart's, `kmm quickstart` first), the
first `--clips` train clips and 128 val clips; the model is that run's `config.json`.
Timing: the second epoch's steps (the first traces), from the first to the last batch.

Run: .venv/bin/python benchmarks/distributed.py [--run-dir $KMM_HOME/runs/quickstart]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODES = ("one", "mirrored", "multi_worker")


def worker(args):
    """One training process; prints a JSON line with its timings."""
    if args.mode == "mirrored":
        from kmm.train.distribute import use_logical_cpus

        use_logical_cpus(2)
    import keras
    import numpy as np
    import tensorflow as tf

    from kmm.features import cache as feats
    from kmm.models.config import ModelConfig
    from kmm.train.distribute import make_strategy
    from kmm.train.trainer import TrainConfig, train_on_features

    strategy = make_strategy(args.mode)
    run_dir = Path(args.run_dir)
    feature_dir = Path((run_dir / "features.txt").read_text().strip())
    config = ModelConfig.from_json((run_dir / "config.json").read_text())
    train = {k: v[: args.clips] for k, v in feats.load_features(feature_dir / "train.npz").items()}
    val = {k: v[:128] for k, v in feats.load_features(feature_dir / "val.npz").items()}

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.first = None

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                self.first = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last, self.steps = time.perf_counter(), batch + 1

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append((self.last - self.first) / self.steps)

    clock = Clock()
    from kmm.train import trainer

    callbacks = trainer._callbacks
    trainer._callbacks = lambda *a, **k: [clock] + callbacks(*a, **k)
    out = Path(args.out) / f"{args.mode}-{os.getpid()}"
    train_config = TrainConfig(epochs=2, batch_size=args.batch, strategy=args.mode)
    parts, _ = train_on_features(config, train, val, train_config, out, verbose=0)
    result = {"mode": args.mode, "replicas": strategy.num_replicas_in_sync, "s_per_step": clock.epochs[-1]}
    if args.mode == "multi_worker":
        size = sum(int(np.prod(w.shape)) for w in parts.video_tower.trainable_weights + parts.head.trainable_weights
                   + parts.text_tower.trainable_weights)  # fmt: skip
        values = tf.ones([size])

        @tf.function
        def all_reduce():
            return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce("SUM", values))

        all_reduce()
        start = time.perf_counter()
        for _ in range(10):
            all_reduce()
        result.update(weights=size, all_reduce_s=(time.perf_counter() - start) / 10)
    print("RESULT " + json.dumps(result), flush=True)


def launch(args, mode):
    command = [sys.executable, __file__, "--role", "worker", "--mode", mode, "--run-dir", args.run_dir, "--out",
               args.out, "--clips", str(args.clips), "--batch", str(args.batch)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if mode != "multi_worker":
        processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)]
    else:
        from kmm.train.distribute import local_tf_configs

        processes = []
        for tf_config in local_tf_configs(2):
            threads = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}
            processes.append(subprocess.Popen(command, env={**env, "TF_CONFIG": tf_config, **threads},
                                              stdout=subprocess.PIPE, text=True))  # fmt: skip
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=3600)
        if process.returncode:
            raise SystemExit(f"{mode}: a process failed (exit {process.returncode})")
        results.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
    return results[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    home = Path(os.environ.get("KMM_HOME", Path.home() / ".kmm"))
    parser.add_argument("--run-dir", default=str(home / "runs" / "quickstart"))
    parser.add_argument("--clips", type=int, default=1280, help="Train clips (steps per epoch = clips / batch).")
    parser.add_argument("--batch", type=int, default=64, help="Global batch.")
    parser.add_argument("--out", default="/tmp/kmm-bench-distributed")
    parser.add_argument("--role", default="main", choices=["main", "worker"])
    parser.add_argument("--mode", choices=MODES)
    parser.add_argument("--results", default="benchmarks/results/distributed.json")
    args = parser.parse_args()
    if args.role == "worker":
        return worker(args)
    rows = []
    for mode in MODES:
        result = launch(args, mode)
        result["examples_per_s"] = args.batch / result["s_per_step"]
        result["steps_per_s"] = 1 / result["s_per_step"]
        rows.append(result)
        print(json.dumps(result), flush=True)
    multi = rows[-1]
    # Ring all-reduce moves 2 (N - 1) / N of the weights per worker; on N machines each
    # computes batch / N clips. Compute per clip from the one-process run on this machine.
    compute_per_clip = rows[0]["s_per_step"] / args.batch
    weights_bytes = multi["weights"] * 4
    estimate = {}
    for n, gbit in ((2, 10), (4, 10), (8, 10), (8, 100)):
        exchange = 2 * (n - 1) / n * weights_bytes / (gbit * 1e9 / 8)
        step = compute_per_clip * args.batch / n + exchange
        estimate[f"{n} machines, {gbit} Gbit/s"] = {"s_per_step": round(step, 4),
                                                     "speedup": round(rows[0]["s_per_step"] / step, 2)}  # fmt: skip
    record = {"command": " ".join(sys.argv), "batch": args.batch, "clips": args.clips, "rows": rows,
              "estimate": estimate}  # fmt: skip
    Path(args.results).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(estimate, indent=1))


if __name__ == "__main__":
    main()
