"""The serving graph's frame fitting: per-frame resize under request caps vs one batched resize.

`kmm.serving.preprocess.fit_clips` checks the request's caps, then resizes the sampled
frames one at a time (`tf.map_fn`), so its float32 intermediate is a few frames, not the
request. The baseline, in the same run, is what the graph did before: the same sampling,
then one `tf.image.resize` over every frame of the batch. Both run as `tf.function`s on the
same uint8 batch; the table gives the median time and the size of the float32 intermediate
each one allocates at once.

Run: .venv/bin/python benchmarks/serving_preprocess.py [--repeats 7]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from kmm.serving import preprocess as P


def batched_fit(frames, num_frames, size):
    """The baseline: resample, then one resize over the whole batch, then crop."""
    frames = P.resample_time(frames, num_frames)
    shape = tf.shape(frames)
    flat = tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))
    return tf.reshape(P.fit_images(flat, size), [shape[0], num_frames, size, size, 3])


def capped_fit(frames, num_frames, size):
    return P.fit_clips(P.check_frames(frames, num_frames=num_frames), num_frames, size)


def timed(fn, x, repeats):
    fn(x)  # trace
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="benchmarks/results/serving_preprocess.json")
    args = parser.parse_args()
    num_frames, size = 8, 128
    rows = []
    for batch, frames, h, w in [(1, 16, 240, 320), (32, 16, 240, 320), (8, 16, 720, 1280)]:
        x = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, frames, h, w, 3), dtype=np.uint8))
        scale = size / min(h, w)
        resized = round(h * scale) * round(w * scale) * 3 * 4  # float32 bytes of one resized frame
        row = {"request": f"{batch} x {frames} x {h} x {w}", "model frames": f"{num_frames} x {size}"}
        for name, fn, frames_at_once in [
            ("batched (baseline)", batched_fit, batch * num_frames),
            ("per frame, capped", capped_fit, min(P.RESIZE_PARALLELISM, batch * num_frames)),
        ]:
            graph = tf.function(lambda v, fn=fn: fn(v, num_frames, size))
            row[f"{name} ms"] = round(timed(graph, x, args.repeats), 1)
            row[f"{name} float32 MB at once (from shapes)"] = round(
                frames_at_once * (h * w * 3 * 4 + resized) / 2**20, 1
            )
        rows.append(row)
        print(json.dumps(row))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"repeats": args.repeats, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
