import subprocess
import sys

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


def test_quickstart_with_the_matching_head_reports_the_reranked_retrieval(tiny_encoders, tmp_path, capsys):
    import json

    argv = ["quickstart", "--size", "tiny", "--model", "tiny", "--epochs", "1", "--batch-size", "8", "--matching",
            "--reversal-pairs", "0", "--no-pretrained", "--run-dir", str(tmp_path / "run"),
            "--export-dir", str(tmp_path / "saved_models")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| test, top-10 re-ranked | 8 |" in out
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["test"]["retrieval_reranked"]["top_k"] == 10
    run = json.loads((tmp_path / "run" / "quickstart.json").read_text())
    assert run["kinetics_export"] is None and not (tmp_path / "saved_models" / "kinetics").exists()
    assert run["train"]["time_reversal"], "the quickstart plays clips backwards by default"
    assert run["train"]["reversal_pairs"] == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["tasks"] == ["classification", "retrieval", "matching"]


def test_data_synth_with_real_backgrounds(tmp_path, capsys):
    import json

    out = tmp_path / "shapes"
    assert main(["data", "synth", "--size", "tiny", "--out", str(out), "--real-backgrounds", "0.5"]) == 0
    info = json.loads((out / "kmm-shapes.json").read_text())
    assert info["config"]["real_backgrounds"] == 0.5 and info["counts"]["test_real"] == 8
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
