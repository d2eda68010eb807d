"""I3D (kmm://i3d-kinetics-400) throughput at 224 px on this machine, against its dense matmul peak.

For 16, 32 and 64 frames at batch 1 and 4: clips/s and ms a clip through the built
encoder's uint8 call (frames already 224 px, so no resize), and the achieved GFLOP/s
(TensorFlow's own FLOP count of the graph, 2 per multiply-add) next to a 2048 x 2048 fp32
matmul measured in the same run, the practical ceiling.

    .venv/bin/python benchmarks/i3d_speed.py [--repeats 3] [--out benchmarks/results/i3d_speed.json]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

FRAMES = (16, 32, 64)
BATCHES = (1, 4)


def graph_flops(fn, spec):
    """FLOPs of one call of `fn` on inputs of `spec` (fully defined), by TF's profiler."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    graph = convert_variables_to_constants_v2(tf.function(fn).get_concrete_function(spec)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def matmul_gflops(n=2048, repeats=10):
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    step = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step().numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/i3d_speed.json")
    args = parser.parse_args()
    from kmm.encoders.i3d import build_i3d
    from kmm.hub.handles import load_module

    module = load_module("kmm://i3d-kinetics-400")
    call = tf.function(lambda x: module(x)["logits"])
    network = build_i3d()  # same architecture: its FLOP count is the encoder's
    peak = matmul_gflops()
    print(f"dense matmul 2048^2 fp32: {peak:.1f} GFLOP/s")
    print(f"{'frames':>6} {'batch':>5} {'ms/clip':>9} {'clips/s':>8} {'GFLOP/clip':>11} {'GFLOP/s':>8} {'of peak':>8}")
    rows = []
    for frames in FRAMES:
        flops = graph_flops(lambda x: network(x)["logits"], tf.TensorSpec([1, frames, 224, 224, 3], tf.float32))
        for batch in BATCHES:
            clips = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, frames, 224, 224, 3), np.uint8))
            call(clips).numpy()  # trace and warm up
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                call(clips).numpy()
                times.append(time.perf_counter() - start)
            seconds = min(times) / batch
            row = {"frames": frames, "batch": batch, "ms_per_clip": 1000 * seconds, "clips_per_s": 1 / seconds,
                   "gflop_per_clip": flops / 1e9, "gflops": flops / seconds / 1e9}  # fmt: skip
            row["fraction_of_matmul_peak"] = row["gflops"] / peak
            rows.append(row)
            print(f"{frames:>6} {batch:>5} {row['ms_per_clip']:9.0f} {row['clips_per_s']:8.2f} "
                  f"{row['gflop_per_clip']:11.1f} {row['gflops']:8.1f} {row['fraction_of_matmul_peak']:8.0%}")  # fmt: skip
    ten_s = next(r for r in rows if r["frames"] == 32 and r["batch"] == 1)
    print(f"\na 10 s clip (32 frames sampled uniformly, as kmm's Kinetics model does): "
          f"{ten_s['ms_per_clip'] / 1000:.2f} s of I3D on this machine, plus decoding")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"matmul_gflops": peak, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
