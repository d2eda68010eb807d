"""Ablation on kmm-shapes (default size): fusion and temporal model, same data, same budget.

Trains stage 1 on the quickstart's cached features (run `kmm quickstart` first) for each
variant and evaluates on the test and compositional splits. Rows:
- fusion = none (video only) / concat / cross_attention / co_attention / text_guided, with temporal = lstm;
- temporal = mean / lstm / transformer, with fusion = co_attention.

Run: .venv/bin/python benchmarks/ablation.py [--epochs 25] [--out benchmarks/results/ablation.json]
"""

import argparse
import json
import time
from pathlib import Path

from kmm.data.synth.generate import label_names
from kmm.eval.evaluate import evaluate_split
from kmm.models.config import PRESETS
from kmm.paths import kmm_home
from kmm.train.features import load_features
from kmm.train.trainer import TrainConfig, train_on_features

VARIANTS = [
    ("lstm", "none"),
    ("lstm", "concat"),
    ("lstm", "cross_attention"),
    ("lstm", "co_attention"),
    ("lstm", "text_guided"),
    ("mean", "co_attention"),
    ("transformer", "co_attention"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = kmm_home() / "runs" / "features-default-efficientnet-lite0@128-kmm-frames-spatial"
    parser.add_argument("--features", default=str(default), help="A quickstart feature folder.")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--out", default="benchmarks/results/ablation.json")
    args = parser.parse_args()
    folder = Path(args.features)
    if not (folder / "train.npz").exists():
        raise SystemExit(f"{folder}: no cached features; run `kmm quickstart` first.")
    arrays = {s: load_features(folder / f"{s}.npz") for s in ("train", "val", "test", "compositional")}
    rows = []
    for temporal, fusion in VARIANTS:
        config = PRESETS["default"].replace(labels=tuple(label_names()), temporal=temporal, fusion=fusion)
        start = time.perf_counter()
        parts, history = train_on_features(
            config, arrays["train"], arrays["val"], TrainConfig(epochs=args.epochs), f"/tmp/kmm-ablation/{temporal}-{fusion}", verbose=0
        )  # fmt: skip
        seconds = time.perf_counter() - start
        test, comp = evaluate_split(parts, arrays["test"]), evaluate_split(parts, arrays["compositional"])
        row = {
            "temporal": temporal,
            "fusion": fusion,
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
        "\n| temporal | fusion | test acc | action | referring | t->v R@1 | t->v R@10 | compositional acc | train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['temporal']} | {r['fusion']} | {100 * r['test_accuracy']:.1f} | {100 * r['test_action_accuracy']:.1f} "
              f"| {100 * r['test_referring_accuracy']:.1f} | {r['test_t2v_R@1']:.1f} | {r['test_t2v_R@10']:.1f} "
              f"| {100 * r['compositional_accuracy']:.1f} | {r['train_seconds']:.0f} |")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
