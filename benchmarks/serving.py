"""Serving latency: every signature of a kmm export at batch 1 and 32, next to a baseline.

The baseline is the same trained model called in-process as Keras models (`build_end_to_end`)
on frames already sampled and resized by the client, which is what the export does in its
graph; the difference is the cost of the serving contract (any T, H, W; in-graph decoding).
Export inputs: 16 frames of 240 x 320 per clip (a typical decode), resampled and resized in
the graph; `classify_jpeg` gets those frames as JPEG strings. Median of `--repeats` runs
after 2 warm-up runs, in one process, on this machine's CPU.

Run: .venv/bin/python benchmarks/serving.py [--model saved_models/kmm] [--run ~/.cache/kmm/runs/quickstart]
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from kmm.paths import kmm_home
from kmm.serving.client import LocalClient


def timed(fn, repeats):
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def folder_mb(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20


def cases(client, baseline, batch, n, size):
    """`(signature, export call, baseline call)` on the same random clips and texts."""
    rng = np.random.default_rng(batch)
    raw = rng.integers(0, 256, (batch, 16, 240, 320, 3), dtype=np.uint8)
    fitted = tf.constant(rng.integers(0, 256, (batch, n, size, size, 3), dtype=np.uint8))
    jpeg = [[tf.io.encode_jpeg(f).numpy() for f in clip] for clip in raw]
    text = ["the red circle"] * batch
    tt = tf.constant(text)
    return [
        ("serving_default", lambda: client.classify(raw, text), lambda: baseline["classify"](fitted, tt)),
        ("classify_jpeg", lambda: client.classify_jpeg(jpeg, text), lambda: baseline["classify"](fitted, tt)),
        ("embed_video", lambda: client.embed_video(raw), lambda: baseline["video"](fitted)),
        ("embed_text", lambda: client.embed_text(text), lambda: baseline["text"](tt)),
        ("search", lambda: client.search(text), lambda: baseline["text"](tt)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="saved_models/kmm", help="Export (model folder: newest version).")
    parser.add_argument("--run", default=str(kmm_home() / "runs" / "quickstart"), help="The run it was exported from.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/serving.json")
    args = parser.parse_args()

    from kmm.models.builder import build_end_to_end
    from kmm.serving.from_run import run_encoders
    from kmm.train.trainer import load_run

    client = LocalClient(args.model)
    meta = client.metadata()
    n, size = meta["num_frames"], meta["frame_size"]
    models = build_end_to_end(load_run(args.run), encoders=run_encoders(args.run))
    baseline = {
        "classify": tf.function(lambda f, t: models.classifier({"frames": f, "text": t}, training=False)),
        "video": tf.function(lambda f: models.video_embedder(f, training=False)),
        "text": tf.function(lambda t: models.text_embedder(t, training=False)),
    }
    rows = []
    for batch in (1, 32):
        for name, export_fn, base_fn in cases(client, baseline, batch, n, size):
            ms, base_ms = timed(export_fn, args.repeats), timed(base_fn, args.repeats)
            rows.append(
                {"signature": name, "batch": batch, "export_ms": round(ms, 1), "keras_baseline_ms": round(base_ms, 1)}
            )
            print(f"{name:<16} batch {batch:>2}: export {ms:8.1f} ms   keras baseline {base_ms:8.1f} ms")
    result = {
        "export": str(client.path),
        "export_mb": round(folder_mb(client.path), 1),
        "cpu_count": os.cpu_count(),
        "gallery": meta.get("gallery"),
        "rows": rows,
        "command": "benchmarks/serving.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
    }
    print(f"export size: {result['export_mb']} MB ({client.path})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
