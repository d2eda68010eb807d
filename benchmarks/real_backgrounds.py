"""The quickstart's training with a fraction of kmm-shapes drawn over real imagery.

Builds kmm-shapes (default size) with `SynthConfig.real_backgrounds = F` (that fraction of the
train and val clips over the `train` pool of real pictures; test and compositional stay
synthetic, test_real is over the held-out pool), then runs the quickstart's training
(`QUICKSTART_TRAINING`, `--epochs` of it) and evaluation through `train_and_evaluate`, and
prints action / referring accuracy and text->video R@1 / R@10 per split. F = 0 is the
quickstart itself.

Run: .venv/bin/python benchmarks/real_backgrounds.py --fraction 0.5 [--epochs 22] [--work DIR]
[--set slots=12 ...] [--train batch_size=128 ...] (`--set`: `ModelConfig` fields, `--train`:
`TrainConfig` fields, JSON values; results in
`benchmarks/results/real_backgrounds_<F>_e<epochs>[_<field><value>...].json` unless `--out`).
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

from kmm.data.synth import generate, vocab
from kmm.models.config import PRESETS
from kmm.quickstart import QUICKSTART_TRAINING, SPLITS
from kmm.train.run import train_and_evaluate


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, required=True, help="SynthConfig.real_backgrounds")
    parser.add_argument("--epochs", type=int, default=QUICKSTART_TRAINING.epochs)
    parser.add_argument("--work", default="/tmp/kmm-real-backgrounds", help="data, features and runs go here")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="ModelConfig overrides")
    parser.add_argument("--train", nargs="*", default=[], metavar="FIELD=VALUE", help="TrainConfig overrides")
    parser.add_argument("--out")
    args = parser.parse_args()
    work = Path(args.work)
    overrides, training = ({k: json.loads(v) for k, v in (item.split("=", 1) for item in items)}
                           for items in (args.set, args.train))  # fmt: skip
    name = f"{args.fraction:g}_e{args.epochs}" + "".join(f"_{k}{v}" for k, v in {**overrides, **training}.items())
    out = Path(args.out or f"benchmarks/results/real_backgrounds_{name}.json")
    synth = dataclasses.replace(generate.PRESETS["default"], real_backgrounds=args.fraction)
    start = time.perf_counter()
    manifest = generate.generate(work / f"data-{args.fraction:g}", synth, progress=True)
    config = PRESETS["default"].replace(labels=tuple(generate.label_names()), **overrides)
    train = dataclasses.replace(QUICKSTART_TRAINING, epochs=args.epochs, **training)
    _, _, _, results = train_and_evaluate(
        manifest, config, train, work / f"run-{name}", list(SPLITS),
        feature_dir=work / f"features-{args.fraction:g}", reverse_caption=vocab.reverse_caption,
        caption_group=vocab.caption_content, verbose=0,
    )  # fmt: skip
    rows = {}
    for split, r in results.items():
        t2v = r["retrieval"]["text_to_video"]
        rows[split] = {
            "action": round(100 * r["classification_action"]["accuracy"], 1),
            "referring": round(100 * r["classification_referring"]["accuracy"], 1),
            "t2v_R@1": round(t2v["R@1"], 1),
            "t2v_R@10": round(t2v["R@10"], 1),
        }
        print(split, rows[split], flush=True)
    result = {"fraction": args.fraction, "epochs": args.epochs, "model": overrides, "train": training,
              "seconds": round(time.perf_counter() - start, 1), "splits": rows}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
