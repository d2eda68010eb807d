"""Ablation on kmm-shapes (default size): fusion, temporal model and retrieval towers, same data, same budget.

Trains stage 1 on the quickstart's cached features (run `kmm quickstart` first) for each
variant and evaluates on the test and compositional splits. Rows:
- fusion = none (video only) / concat / cross_attention / co_attention / text_guided, with temporal = lstm;
- temporal = mean / lstm / transformer, with fusion = co_attention;
- retrieval towers: video_embedding = temporal / slots x text_embedding = pooled / tokens (text_guided, lstm).

Run: .venv/bin/python benchmarks/ablation.py [--epochs 25] [--out benchmarks/results/ablation.json]
"""

import argparse
import json
import time
from pathlib import Path

from quickstart_features import add_features_argument, load_quickstart_features

from kmm.data.synth.generate import label_names
from kmm.eval.evaluate import evaluate_split
from kmm.models.config import PRESETS
from kmm.train.trainer import TrainConfig, train_on_features

VARIANTS = [
    ("lstm", "none", "slots", "tokens"),
    ("lstm", "concat", "slots", "tokens"),
    ("lstm", "cross_attention", "slots", "tokens"),
    ("lstm", "co_attention", "slots", "tokens"),
    ("lstm", "text_guided", "slots", "tokens"),
    ("mean", "co_attention", "slots", "tokens"),
    ("transformer", "co_attention", "slots", "tokens"),
    ("lstm", "text_guided", "temporal", "pooled"),
    ("lstm", "text_guided", "temporal", "tokens"),
    ("lstm", "text_guided", "slots", "pooled"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_features_argument(parser)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--only", type=int, nargs="*", help="Run only these rows of VARIANTS (0-based).")
    parser.add_argument("--out", default="benchmarks/results/ablation.json")
    args = parser.parse_args()
    arrays = load_quickstart_features(args.features)
    rows = []
    variants = [VARIANTS[i] for i in args.only] if args.only else VARIANTS
    for temporal, fusion, video_embedding, text_embedding in variants:
        config = PRESETS["default"].replace(
            labels=tuple(label_names()), temporal=temporal, fusion=fusion,
            video_embedding=video_embedding, text_embedding=text_embedding,
        )  # fmt: skip
        start = time.perf_counter()
        run_dir = f"/tmp/kmm-ablation/{temporal}-{fusion}-{video_embedding}-{text_embedding}"
        parts, history = train_on_features(
            config, arrays["train"], arrays["val"], TrainConfig(epochs=args.epochs), run_dir, verbose=0
        )  # fmt: skip
        seconds = time.perf_counter() - start
        test, comp = evaluate_split(parts, arrays["test"]), evaluate_split(parts, arrays["compositional"])
        row = {
            "temporal": temporal,
            "fusion": fusion,
            "video_embedding": video_embedding,
            "text_embedding": text_embedding,
            "epochs": len(history.history["loss"]),
            "train_seconds": round(seconds, 1),
            "test_accuracy": test["classification"]["accuracy"],
            "test_action_accuracy": test["classification_action"]["accuracy"],
            "test_referring_accuracy": test["classification_referring"]["accuracy"],
            "test_t2v_R@1": test["retrieval"]["text_to_video"]["R@1"],
            "test_t2v_R@10": test["retrieval"]["text_to_video"]["R@10"],
            "compositional_accuracy": comp["classification"]["accuracy"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        "\n| temporal | fusion | video emb | text emb | test acc | action | referring | t->v R@1 | t->v R@10 | compositional acc | train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['temporal']} | {r['fusion']} | {r['video_embedding']} | {r['text_embedding']} | {100 * r['test_accuracy']:.1f} | {100 * r['test_action_accuracy']:.1f} "
              f"| {100 * r['test_referring_accuracy']:.1f} | {r['test_t2v_R@1']:.1f} | {r['test_t2v_R@10']:.1f} "
              f"| {100 * r['compositional_accuracy']:.1f} | {r['train_seconds']:.0f} |")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
