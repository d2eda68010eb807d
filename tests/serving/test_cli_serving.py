"""`kmm classify | search | index | export` on the tiny export."""

import re

import numpy as np
import pytest

from kmm.cli import main
from kmm.serving.index import VideoIndex
from tests.data.clips import write_cv2
from tests.serving.conftest import LABELS, clips


def make_videos(folder):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(3):
        path = folder / f"clip{i}.mp4"
        write_cv2(path, clips(1, 12, 48, 64, seed=i)[0])
        paths.append(path)
    (folder / "broken.mp4").write_bytes(b"this is not a video")
    return paths


def test_classify_prints_top_labels(exported, tmp_path, capsys):
    video = make_videos(tmp_path / "videos")[0]
    assert main(["classify", str(video), "--text", "the red circle", "--model", str(exported[1])]) == 0
    out = capsys.readouterr().out
    assert "the red circle" in out
    printed = [re.match(r"^\s+(\d\.\d{3})\s+#*\s+(\S.*)$", line) for line in out.splitlines()[1:]]
    # The same answer straight from the export: every label, best first, with its probability.
    from kmm.serving.client import connect
    from kmm.serving.index import clip_frames, frame_request

    client = connect(str(exported[1]))
    num_frames, size = frame_request(client)
    probabilities = client.classify(clip_frames(video, num_frames, size)[None], ["the red circle"])["probabilities"][0]
    best_first = np.argsort(-probabilities)
    assert [m.group(2) for m in printed] == [LABELS[i] for i in best_first]
    np.testing.assert_allclose([float(m.group(1)) for m in printed], probabilities[best_first], atol=6e-4)


def test_search_over_the_export_gallery(exported, capsys):
    assert main(["search", "a red circle", "--model", str(exported[2] / "tiny"), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert " 1. " in out and " 2. " in out and " 3. " not in out and "-- caption" in out


def test_index_counts_and_lists_what_it_skips_then_search_uses_it(exported, tmp_path, capsys):
    videos = make_videos(tmp_path / "videos")
    model = str(exported[1])
    assert main(["index", str(tmp_path / "videos"), "--out", str(tmp_path / "index"), "--model", model]) == 0
    out = capsys.readouterr().out
    assert "rows read 4 = used 3 + skipped 1" in out and "broken.mp4" in out
    index = VideoIndex.load(tmp_path / "index")
    assert sorted(index.ids) == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    # A clip's own embedding finds that clip first.
    from kmm.serving.client import LocalClient
    from kmm.serving.index import clip_frames

    client = LocalClient(model)
    query = client.embed_video(clip_frames(videos[1], 4, 32)[None])
    assert index.search(query, k=1)[0][0][0] == "clip1.mp4"
    assert main(["search", "a red circle", "--index", str(tmp_path / "index"), "--model", model]) == 0
    assert "clip" in capsys.readouterr().out
    # items.json is the completion marker: removed first when saving again, written last.
    from kmm.serving.index import ITEMS_FILE, is_complete

    (tmp_path / "index" / ITEMS_FILE).unlink()  # as a save killed before its last file
    assert not is_complete(tmp_path / "index")
    with pytest.raises(FileNotFoundError, match="no complete index"):
        VideoIndex.load(tmp_path / "index")
    index.save(tmp_path / "index")
    assert is_complete(tmp_path / "index") and not list((tmp_path / "index").glob(".*.tmp"))


def test_missing_export_is_a_one_line_error(tmp_path, capsys):
    assert main(["search", "x", "--model", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmm: error:") and "No kmm export" in err


def test_embeddings_are_unit_norm_through_the_cli_client(exported):
    from kmm.serving.client import connect

    embedding = connect(exported[1]).embed_text(["a", ""])
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("store", [["--kind", "hnsw"], ["--qdrant", "QDRANT"]])
def test_index_in_another_store_answers_like_the_flat_index(store, exported, tmp_path, capsys):
    make_videos(tmp_path / "videos")
    model = str(exported[1])
    store = [str(tmp_path / "qdrant") if s == "QDRANT" else s for s in store]
    for out, extra in (("flat", []), ("other", store)):
        assert main(["index", str(tmp_path / "videos"), "--out", str(tmp_path / out), "--model", model, *extra]) == 0
    flat, other = VideoIndex.load(tmp_path / "flat"), VideoIndex.load(tmp_path / "other")
    assert other.info["vectors"]["backend"] == ("qdrant" if "--qdrant" in store else "faiss")
    from kmm.serving.client import LocalClient

    query = LocalClient(model).embed_text(["a red circle", "a blue square"])
    for a, b in zip(flat.search(query, k=3), other.search(query, k=3), strict=True):
        assert [hit[0] for hit in a] == [hit[0] for hit in b]
        np.testing.assert_allclose([hit[1] for hit in a], [hit[1] for hit in b], atol=1e-5)
    if "--qdrant" in store:
        other.index.close()  # local mode locks its folder: one client at a time
    capsys.readouterr()
    assert main(["search", "a red circle", "--index", str(tmp_path / "other"), "--model", model]) == 0
    assert "clip" in capsys.readouterr().out
