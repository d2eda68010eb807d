import json

import pytest

from kmm.data.manifest import ManifestError, Row, from_class_folders, from_msrvtt, read_manifest, write_manifest
from kmm.data.report import DataReport


def _csv(tmp_path, text, encoding="utf-8"):
    path = tmp_path / "m.csv"
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_csv_round_trip_and_relative_paths(tmp_path):
    rows = [Row(0, str(tmp_path / "v" / "a.mp4"), "a cat", "run", "", "train"), Row(1, "/abs/b.mp4", split="test")]
    for suffix in (".csv", ".jsonl"):
        path = write_manifest(rows, tmp_path / f"m{suffix}")
        if suffix == ".csv":
            assert "v/a.mp4" in path.read_text() and str(tmp_path) not in path.read_text()
        back = read_manifest(path, video_root="/")  # /abs/b.mp4 is outside the manifest's folder
        assert [(r.video, r.caption, r.label, r.split) for r in back] == [
            (str(tmp_path / "v" / "a.mp4"), "a cat", "run", "train"),
            ("/abs/b.mp4", "", "", "test"),
        ]


def test_bad_rows_are_skipped_with_reasons(tmp_path):
    text = (
        "video,caption,label,split\n"
        "a.mp4,ok,run,train\n"
        ",no video,run,train\n"
        "b.mp4,x,fly,train\n"  # unknown label
        "a.mp4,ok,run,train\n"  # duplicate
        f"c.mp4,{'long ' * 500},run,train\n"
    ).encode() + b"d.mp4,caf\xe9 latin-1,run,train\n"
    report = DataReport()
    rows = read_manifest(_csv(tmp_path, text), report, label_names=["run", "walk"])
    assert [r.index for r in rows] == [0]
    assert {s.row: s.reason for s in report.skipped} == {
        1: "missing_video_path",
        2: "unknown_label",
        3: "duplicate_row",
        4: "caption_too_long",
        5: "caption_not_utf8",
    }
    assert report.rows_read == 6 and report.reconciles() is False  # `used` is counted by the pipeline


def test_strict_fails_fast_with_the_row(tmp_path):
    with pytest.raises(ManifestError, match="row 1: missing_video_path"):
        read_manifest(_csv(tmp_path, "video,caption\na.mp4,x\n,y\n"), strict=True)


def test_unusable_manifest_files(tmp_path):
    with pytest.raises(ManifestError, match="needs a header with a 'video' column"):
        read_manifest(_csv(tmp_path, "path,caption\na.mp4,x\n"))
    with pytest.raises(ManifestError, match="unknown manifest format"):
        read_manifest(tmp_path / "m.txt" if (tmp_path / "m.txt").write_text("x") else None)
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nope.csv")


def test_jsonl_bad_lines_are_counted(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"video": "a.mp4"}\nnot json\n[1, 2]\n\n{"video": "b.mp4", "caption": "hi"}\n')
    report = DataReport()
    rows = read_manifest(path, report)
    assert len(rows) == 2 and report.rows_read == 4
    assert [s.reason for s in report.skipped] == ["bad_record", "bad_record"]


def test_importers(tmp_path):
    for cls, clips in {"jump": ["a.mp4", "b.avi"], "run": ["c.webm"]}.items():
        (tmp_path / "ucf" / cls).mkdir(parents=True)
        for c in clips:
            (tmp_path / "ucf" / cls / c).write_bytes(b"x")
    (tmp_path / "ucf" / "run" / "notes.txt").write_text("not a video")
    rows = from_class_folders(tmp_path / "ucf", split="train")
    assert [(r.label, r.video.rsplit("/", 1)[1]) for r in rows] == [
        ("jump", "a.mp4"),
        ("jump", "b.avi"),
        ("run", "c.webm"),
    ]
    msr = tmp_path / "msrvtt.json"
    msr.write_text(json.dumps({
        "videos": [{"video_id": "video0", "split": "train"}, {"video_id": "video1", "split": "validate"}],
        "sentences": [{"video_id": "video0", "caption": "a man sings"}, {"video_id": "video1", "caption": "cars race"},
                      {"video_id": "video0", "caption": "someone performs"}],
    }))  # fmt: skip
    rows = from_msrvtt(msr, tmp_path / "videos")
    assert [(r.video.rsplit("/", 1)[1], r.split, r.caption) for r in rows] == [
        ("video0.mp4", "train", "a man sings"),
        ("video1.mp4", "val", "cars race"),
        ("video0.mp4", "train", "someone performs"),
    ]


def test_required_columns(tmp_path):
    path = _csv(tmp_path, "video,caption\na.mp4,a dog runs\nb.mp4,\nc.mp4,   \n")
    report = DataReport()
    rows = read_manifest(path, report, require=("caption",))
    assert [r.video.rsplit("/", 1)[1] for r in rows] == ["a.mp4"]
    assert [s.reason for s in report.skipped] == ["empty_caption", "empty_caption"]
    assert len(read_manifest(path)) == 3, "captions are optional unless required"


def test_a_bom_header_and_an_oversized_cell_are_clear(tmp_path):
    bom = tmp_path / "excel.csv"
    bom.write_bytes("\ufeffvideo,label\na.mp4,x\n".encode())
    assert [r.label for r in read_manifest(bom)] == ["x"]  # the BOM is not part of 'video'
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("file,label\na.mp4,x\n")
    with pytest.raises(ManifestError, match="needs a header with a 'video' column; found 'file', 'label'"):
        read_manifest(wrong)
    huge = tmp_path / "huge.csv"
    huge.write_text('video,caption\na.mp4,"' + "x" * 200_000 + '"\n')
    with pytest.raises(ManifestError, match="line 2: not readable as CSV: field larger than field limit"):
        read_manifest(huge)


def test_videos_outside_the_video_root_are_skipped_and_listed(tmp_path):
    """A manifest from elsewhere cannot point kmm at other files of the machine."""
    (tmp_path / "data" / "clips").mkdir(parents=True)
    (tmp_path / "secret.mp4").write_bytes(b"x")
    (tmp_path / "data" / "clips" / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    manifest = tmp_path / "data" / "manifest.csv"
    manifest.write_text(f"video\nclips/a.mp4\n../secret.mp4\n{tmp_path / 'secret.mp4'}\nclips/link.mp4\n")
    report = DataReport()
    rows = read_manifest(manifest, report)
    assert [r.video for r in rows] == [str(tmp_path / "data" / "clips" / "a.mp4")]
    assert sorted(s.reason for s in report.skipped) == ["outside_root"] * 3
    assert "outside the video root" in report.skipped[0].detail
    assert len(read_manifest(manifest, video_root=tmp_path)) == 4  # a root that holds them allows them
    with pytest.raises(ManifestError, match="row 1: outside_root: .*set the video root"):
        read_manifest(manifest, strict=True)
