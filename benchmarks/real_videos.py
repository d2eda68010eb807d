"""The README's real-video tables: the Kinetics model's top 5 for each sample video, and
text -> video search over them with queries that do not name a Kinetics class.

Uses the Kinetics export (`kmm export --pretrained kinetics`, or the quickstart's) through
the same client as `kmm classify` / `kmm search`, and prints Markdown.

    .venv/bin/python benchmarks/real_videos.py [--model saved_models/kinetics]
"""

import argparse
from pathlib import Path

import numpy as np

QUERIES = (
    "a bird pecking at seeds on the ground",
    "an animated animal in a meadow",
    "cars and bikes on a city street",
    "a man walking past parked cars",
    "a man talking on the phone in a car",
    "someone chatting while riding in a vehicle",
    "people riding bicycles on a street",
)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="saved_models/kinetics")
    args = parser.parse_args()
    from kmm.data.manifest import read_manifest
    from kmm.data.samples import fetch_samples
    from kmm.serving.client import connect
    from kmm.serving.index import clip_frames, frame_request

    client = connect(args.model)
    num_frames, size = frame_request(client)
    rows = read_manifest(fetch_samples())
    frames = np.stack([clip_frames(r.video, num_frames, size) for r in rows])
    out = client.classify(frames)
    print("| video | top 5 Kinetics-400 classes (probability) |\n|---|---|")
    for row, labels, scores in zip(rows, out["labels"], out["scores"], strict=True):
        top = ", ".join(f"{label.decode()} ({score:.2f})" for label, score in zip(labels, scores, strict=True))
        print(f"| `{Path(row.video).name}` | {top} |")
    embeddings = client.embed_video(frames)
    queries = client.embed_text(list(QUERIES))
    similarity = queries @ embeddings.T  # (queries, videos)
    print("\n| query | top clip | score | runner-up | score |\n|---|---|---|---|---|")
    for query, scores in zip(QUERIES, similarity, strict=True):
        first, second = np.argsort(-scores)[:2]
        print(f"| {query} | `{Path(rows[first].video).name}` | {scores[first]:.3f} "
              f"| `{Path(rows[second].video).name}` | {scores[second]:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
