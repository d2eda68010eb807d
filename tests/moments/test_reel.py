"""Long real footage end to end: a reel of real clips with known cuts, through the Kinetics export."""

import json

import numpy as np
import pytest

from kmm.serving.client import LocalClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analysis(reel, reel_export):
    from kmm.moments.analyze import analyze_video

    return analyze_video(LocalClient(reel_export), reel[0], progress=False)


def _within(part, start, end, slack=0.5):
    _, a, b, _ = part
    return a - slack <= start and end <= b + slack


def test_cuts_are_found_within_half_a_second(reel, analysis):
    _, parts = reel
    starts = [s for s, _ in analysis.shots]
    for _, start, _, _ in parts:
        assert min(abs(s - start) for s in starts) <= 0.5, (start, starts)
    assert analysis.duration == pytest.approx(parts[-1][2], abs=0.1)
    covered = sum(w.end - w.start for w in analysis.windows)
    assert covered == pytest.approx(analysis.duration, abs=0.05)  # no gap in the timeline


def test_each_part_keeps_what_i3d_says_of_it_alone(reel, reel_export, analysis):
    from kmm.serving.index import clip_frames

    client = LocalClient(reel_export)
    for part in reel[1]:
        alone = client.classify(clip_frames(part[0], 32, 224)[None])["labels"][0][0].decode()
        inside = [w for w in analysis.windows if _within(part, w.start, w.end)]
        assert inside, part
        assert alone in {label for w in inside for label, _ in w.actions}, (part[0].name, alone)


def test_paraphrases_find_their_part_first_in_an_index(reel, reel_export, tmp_path, capsys):
    from kmm.cli import main

    videos = reel[0].parent
    (videos / "junk.mp4").write_bytes(b"not a video at all" * 100)
    try:
        assert main(["index", str(videos), "--out", str(tmp_path / "idx"), "--model", str(reel_export)]) == 0
    finally:
        (videos / "junk.mp4").unlink()
    printed = capsys.readouterr().out
    assert "rows read 2 = used 1 + skipped 1" in printed and "skipped" in printed and "junk.mp4" in printed
    queries = [query for *_, query in reel[1]]
    assert main(["search", *queries, "--index", str(tmp_path / "idx"), "--model", str(reel_export), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    for part, result in zip(reel[1], found, strict=True):
        first = result["hits"][0]
        assert first["video"].endswith("reel.mp4") and _within(part, first["start"], first["end"]), (part, first)
        assert {"video", "start", "end", "score"} <= set(first)
        spans = [(h["start"], h["end"]) for h in result["hits"]]
        assert all(b1 <= a2 or b2 <= a1 for i, (a1, b1) in enumerate(spans) for a2, b2 in spans[i + 1 :])


def test_the_export_gallery_answers_where(reel, reel_export, capsys):
    from kmm.cli import main
    from kmm.moments.index import parse_moment_id
    from kmm.serving.export import read_gallery, read_metadata

    meta = read_metadata(reel_export)
    assert {"label_segments", "classify_labels", "search"} <= set(meta["signatures"])
    gallery = read_gallery(reel_export)
    assert len(gallery["starts"]) == len(gallery["ids"]) > 3
    found = LocalClient(reel_export).search([reel[1][0][3]])
    video, start, end = parse_moment_id(found["ids"][0][0].decode())
    assert video == "reel.mp4" and _within(reel[1][0], start, end)
    assert main(["search", reel[1][2][3], "--model", str(reel_export), "--json", "-k", "2"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert _within(reel[1][2], hits[0]["start"], hits[0]["end"]) and len(hits) <= 2


def test_timeline_cli_json_and_plot(reel, reel_export, tmp_path, capsys):
    from kmm.cli import main

    plot = tmp_path / "reel.png"
    argv = ["classify", str(reel[0]), "--timeline", "--json", "--plot", str(plot), "--model", str(reel_export),
            "--labels", "birds eating,city traffic,a birthday party"]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert plot.stat().st_size > 10_000 and doc["plot"] == str(plot)
    assert len(doc["shots"]) >= 3 and doc["gaps"] == []
    assert {"action", "object"} <= set(doc["labels"])
    kinds = {t["kind"] for t in doc["tracks"]}
    assert kinds == {"action", "object", "label"}
    for track in doc["tracks"]:
        assert {"label", "kind", "confidence", "segments"} <= set(track)
        assert all(s["start"] < s["end"] for s in track["segments"])
    by_label = {t["label"]: t for t in doc["tracks"] if t["kind"] == "label"}
    bunny, street, _ = reel[1]
    assert any(_within(bunny, s["start"], s["end"]) for s in by_label["birds eating"]["segments"])
    assert any(_within(street, s["start"], s["end"]) for s in by_label["city traffic"]["segments"])
    assert not any(_within(bunny, s["start"], s["end"]) for s in by_label["city traffic"]["segments"])
    assert main(["classify", str(reel[0]), "--timeline", "--model", str(reel_export), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert "shots" in printed and "whole video, actions:" in printed and "feeding birds" in printed


def test_own_labels_on_a_clip(reel, reel_export, capsys):
    from kmm.cli import main
    from kmm.moments.timeline import label_prototypes
    from kmm.serving.index import clip_frames

    client = LocalClient(reel_export)
    labels = ["birds eating", "a car ride", "a birthday party"]
    frames = np.stack([clip_frames(p[0], 32, 224) for p in reel[1]])
    out = client.classify_labels(frames, labels)
    assert out["probabilities"].shape == (3, 3)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1, atol=1e-5)
    assert out["probabilities"][0].argmax() == 0 and out["probabilities"][2].argmax() == 1
    # The graph's prototypes and the client's (used for timelines) are the same numbers.
    meta = client.metadata()
    expected = client.embed_video(frames) @ label_prototypes(client, labels, meta["prompts"]).T
    np.testing.assert_allclose(out["similarities"], expected, atol=1e-4)
    assert main(["classify", str(reel[1][0][0]), "--labels", ",".join(labels), "--model", str(reel_export)]) == 0
    printed = capsys.readouterr().out
    assert printed.index("birds eating") < printed.index("a birthday party")


def test_a_model_without_segments_is_a_clear_error(tiny_encoders, reel, tmp_path, capsys):
    from kmm.cli import main
    from kmm.serving.export import export_model
    from tests.serving.conftest import tiny_parts

    model = export_model(tiny_parts(), tmp_path, "tiny")  # a trained-model export: no label_segments
    assert main(["classify", str(reel[0]), "--timeline", "--model", str(model)]) == 2
    assert "has no `label_segments` signature" in capsys.readouterr().err


def test_tf_serving_rest_and_grpc_answer_the_same_timeline_and_moments(reel, reel_export, capsys):
    """Through TF Serving's wire formats (the test double runs the same SavedModel)."""
    from kmm.cli import main
    from tests.serving.fake_tf_serving import FakeTFServing

    def run(argv):
        assert main(argv) == 0
        return json.loads(capsys.readouterr().out)

    video = str(reel[1][2][0])  # one part of the reel: the wire formats, not the length, are under test here
    local_timeline = run(["classify", video, "--timeline", "--json", "--model", str(reel_export)])
    local_hits = run(["search", reel[1][1][3], "--json", "--model", str(reel_export)])
    with FakeTFServing(reel_export.parent.parent) as server:
        for url in (server.rest_url, server.grpc_target):
            remote = ["--model", url, "--name", "kinetics"]
            timeline = run(["classify", video, "--timeline", "--json", *remote])
            assert [t["label"] for t in timeline["tracks"]] == [t["label"] for t in local_timeline["tracks"]]
            assert timeline["shots"] == local_timeline["shots"] and timeline["labels"] == local_timeline["labels"]
            hits = run(["search", reel[1][1][3], "--json", *remote])
            assert [(h["start"], h["end"]) for h in hits[0]["hits"]] == [
                (h["start"], h["end"]) for h in local_hits[0]["hits"]
            ]
