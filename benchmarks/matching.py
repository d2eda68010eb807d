"""Pair-matching re-ranking vs the dual encoder, on kmm-shapes (the quickstart's features).

Trains the quickstart's model and training (12 epochs, time reversal) twice, without and
with the `matching` task, on the same cached features, and reports per split: the dual
encoder's text->video R@K, the top-10 re-ranked by the matching head alone (how kmm
evaluates it), and re-ranked by `similarity logit + w * matching logit` for a few `w`.
Run `kmm quickstart` first (its features hold the reversed captions time reversal uses).

Run: .venv/bin/python benchmarks/matching.py [--epochs 12] [--out benchmarks/results/matching.json]
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from quickstart_features import add_features_argument, load_quickstart_features

from kmm.data.synth.generate import label_names
from kmm.eval.evaluate import evaluate_split
from kmm.eval.metrics import retrieval_metrics
from kmm.eval.rerank import match_scores, rerank, video_cells
from kmm.features.arrays import embed_arrays
from kmm.models.config import PRESETS
from kmm.quickstart import QUICKSTART_TRAINING
from kmm.train.trainer import train_on_features

WEIGHTS = (0.1, 0.3, 1.0, 3.0)


def mixed_recall(parts, arrays, weights=WEIGHTS):
    """text->video R@1 with the top k ordered by `scale * cosine + w * matching logit`, per `w`."""
    video, text = embed_arrays(parts, arrays)
    cells = video_cells(parts, arrays)
    similarity = text @ video.T
    k = parts.config.rerank_top_k
    top = np.argsort(-similarity, axis=1)[:, :k]
    queries = np.repeat(np.arange(len(similarity)), k)
    matching = match_scores(parts, cells, arrays, top.reshape(-1), queries)
    scale = float(np.exp(parts.similarity.log_scale.numpy()))
    logits = scale * np.take_along_axis(similarity, top, axis=1).reshape(-1)
    out = {}
    for w in weights:
        mixed = rerank(similarity, lambda q, g, w=w: logits + w * matching, k)  # same top-k, same order of pairs
        out[str(w)] = retrieval_metrics(mixed)["R@1"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_features_argument(parser)
    parser.add_argument("--epochs", type=int, default=QUICKSTART_TRAINING.epochs)
    parser.add_argument("--out", default="benchmarks/results/matching.json")
    args = parser.parse_args()
    arrays = load_quickstart_features(args.features)
    if "reversed_caption_tokens" not in arrays["train"]:
        raise SystemExit(f"{args.features}: no reversed captions; rerun `kmm quickstart` to rebuild the features.")
    train_config = dataclasses.replace(QUICKSTART_TRAINING, epochs=args.epochs)
    rows = []
    for tasks in (("classification", "retrieval"), ("classification", "retrieval", "matching")):
        config = PRESETS["default"].replace(labels=tuple(label_names()), tasks=tasks)
        start = time.perf_counter()
        run_dir = f"/tmp/kmm-matching/{'-'.join(tasks)}"
        parts, _ = train_on_features(config, arrays["train"], arrays["val"], train_config, run_dir, verbose=2)
        row = {"tasks": list(tasks), "train_s": round(time.perf_counter() - start, 1)}
        for split in ("test", "compositional"):
            r = evaluate_split(parts, arrays[split])
            row[split] = {
                "referring": r["classification_referring"]["accuracy"] * 100,
                "dual": r["retrieval"]["text_to_video"],
            }
            if "retrieval_reranked" in r:
                row[split]["reranked"] = r["retrieval_reranked"]["text_to_video"]
                row[split]["mixed_R@1"] = mixed_recall(parts, arrays[split])
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"epochs": args.epochs, "rows": rows}, indent=2) + "\n")
    print(
        "| tasks | train s | split | referring | dual R@1 | R@10 | re-ranked R@1 | "
        + " | ".join(f"w={w}" for w in WEIGHTS)
        + " |"
    )
    for row in rows:
        for split in ("test", "compositional"):
            r = row[split]
            mixed = (
                " | ".join(f"{r['mixed_R@1'][str(w)]:.1f}" for w in WEIGHTS)
                if "mixed_R@1" in r
                else " | ".join("-" for _ in WEIGHTS)
            )
            reranked = f"{r['reranked']['R@1']:.1f}" if "reranked" in r else "-"
            print(f"| {'+'.join(row['tasks'])} | {row['train_s']} | {split} | {r['referring']:.1f} | {r['dual']['R@1']:.1f} "
                  f"| {r['dual']['R@10']:.1f} | {reranked} | {mixed} |")  # fmt: skip


if __name__ == "__main__":
    main()
