"""Classify: a video (uploaded or from the gallery) + optional text -> labels and frame attention."""

from pathlib import Path

import numpy as np
import streamlit as st

from demo_pages import common
from kmm import specs
from kmm.data.sampling import uniform
from kmm.demo import media
from kmm.serving.index import clip_frames, frame_request

SAMPLE, UPLOAD = "Sample gallery", "Upload"
STRIP_FRAMES = 8  # frames shown in the strip (a Kinetics model sees 32)
TIMELINE_THUMBNAILS = 8  # windows shown under a long video's timeline


def _pretrained(client):
    """A pretrained (zero-shot) export: its classifier does not read text."""
    meta = client.metadata()
    return bool(meta) and meta.get("kind") == "pretrained"


def _sample_choices(session, limit=12, user_limit=200):
    """The export's first gallery clips, the real samples and the user's own videos."""
    videos, ids, captions = common.gallery_sources(session.export_dir)
    items = list(zip(ids, videos, captions, strict=True))
    samples = [x for x in items if x[0].startswith("samples/")]
    own = [x for x in items if x[0].startswith("videos/")]
    export = [x for x in items if x not in samples and x not in own]
    return {f"{i}  ({c})" if c else i: v for i, v, c in export[:limit] + samples + own[:user_limit]}


def _attention_figure(attention):
    """A one-row heat map: the weight the text put on each frame."""
    import matplotlib.pyplot as plt

    n = len(attention)
    fig, ax = plt.subplots(figsize=(6, 1.9))
    image = ax.imshow(np.asarray(attention)[None], cmap="magma", aspect="auto", vmin=0)
    for i, weight in enumerate(attention):
        ax.text(
            i, 0, f"{weight:.2f}", ha="center", va="center", color="white" if weight < 0.6 * max(attention) else "black"
        )
    ax.set_xticks(range(n), [f"frame {i + 1}" for i in range(n)], fontsize=8)
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    return fig


def _get_frames(session, num_frames, size):
    """`(frames, name, path)` for the chosen video, or `(None, None, None)`; errors are shown, not raised."""
    source = st.radio("Video", [SAMPLE, UPLOAD], horizontal=True, key="classify_source")
    if source == UPLOAD:
        limit = media.max_upload_mb()
        upload = st.file_uploader(f"A video file (up to {limit:g} MB)", type=list(media.UPLOAD_TYPES), key="upload")
        if upload is None:
            return None, None, None
        try:
            path = media.saved_upload(upload.name, upload.getvalue())
            return media.frames_from_upload(upload.name, upload.getvalue(), num_frames, size), upload.name, path
        except media.UploadError as e:
            st.error(str(e), icon=":material/error:")
            return None, None, None
    choices = _sample_choices(session)
    if not choices:
        st.info("No sample videos: upload one instead.")
        return None, None, None
    label = st.selectbox("Clip", list(choices), key="classify_clip")
    try:
        return clip_frames(choices[label], num_frames, size), Path(choices[label]).name, Path(choices[label])
    except (ValueError, OSError) as e:
        st.error(f"{common.plain(choices[label])} could not be decoded: {common.plain(e)}", icon=":material/error:")
        return None, None, None


@st.cache_data(show_spinner=False, max_entries=8)
def _timeline(_client, _on_progress, client_key, path, mtime_ns):
    """The timeline JSON, the plot (PNG bytes) and a few window thumbnails of a long video."""
    import tempfile

    from kmm.moments.analyze import analyze_video
    from kmm.moments.timeline import plot_timeline, timeline_json, tracks

    analysis = analyze_video(_client, path, progress=False, thumbnails=96, on_progress=_on_progress)
    doc = timeline_json(analysis, tracks(analysis.windows))
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(plot_timeline(doc, Path(tmp) / "timeline.png")).read_bytes()
    picked = uniform(len(analysis.windows), min(len(analysis.windows), TIMELINE_THUMBNAILS))
    thumbs = [(analysis.windows[i].thumbnail, analysis.windows[i].start, analysis.windows[i].end) for i in picked]
    return doc, png, thumbs


def _show_timeline(client, path, name):
    """Shots, the label timeline plot and the windows' frames of a long video."""
    from kmm.data.decoder import probe
    from kmm.data.shot_stream import duration_s

    bar = st.progress(0.0, text="Labelling the video, window by window")

    def progress(done, total):
        bar.progress(min(done / total, 1.0), text=f"Labelling the video: {done:.0f} of {total:.0f} s")

    try:
        doc, png, thumbs = _timeline(client, progress, str(getattr(client, "path", "")), str(path),
                                     Path(path).stat().st_mtime_ns)  # fmt: skip
    except Exception as e:  # noqa: BLE001
        common.show_error(e)
        return
    finally:
        bar.empty()
    seconds = duration_s(probe(path))
    st.subheader(f"Timeline: {len(doc['shots'])} shots, {len(doc['segments'])} windows over {seconds:.0f} s")
    st.image(png, caption=f"Labels of {common.plain(name)} over time (blue: actions, orange: objects; lines: cuts)")
    strip = st.columns(len(thumbs))
    for column, (thumb, start, end) in zip(strip, thumbs, strict=True):
        with column:
            st.image(thumb, caption=f"{start:.1f}–{end:.1f} s", width="stretch")
    for gap in doc["gaps"]:
        st.warning(f"No frames from {gap['start']:.1f} s to {gap['end']:.1f} s (the video's timestamps jump).")


def _is_long(client, path):
    """A long video, and a model that labels its windows: the timeline is shown."""
    from kmm.data.decoder import probe
    from kmm.data.shot_stream import duration_s
    from kmm.moments.cli import LONG_VIDEO_S

    if path is None or "label_segments" not in (client.metadata() or {}).get("signatures", ()):
        return False
    try:
        return duration_s(probe(path)) > LONG_VIDEO_S
    except (ValueError, OSError):
        return False


def render(session):
    st.header("Classify a video")
    client = common.require_client(session)
    reads_text = not _pretrained(client)
    st.caption("Pick or upload a video" + ("; add a text such as *the red circle* to ask about one object."
               if reads_text else ": the Kinetics-400 model names the action in real footage."))  # fmt: skip
    num_frames, size = frame_request(client)
    frames, name, path = _get_frames(session, num_frames, size)
    text = (
        st.text_input("Optional text", "", placeholder="e.g. the red circle", key="classify_text") if reads_text else ""
    )
    if frames is None:
        return
    try:
        out = client.classify(frames[None], [text])
    except Exception as e:  # noqa: BLE001  (any failure is shown as a message, never a traceback)
        common.show_error(e)
        return
    labels = [label.decode() for label in out["labels"][0]]
    scores = [float(s) for s in out["scores"][0]]
    st.success(f"**{common.plain(labels[0])}** ({scores[0]:.0%}) for {common.plain(name)}"
               + (f", text: *{common.plain(text)}*" if text else ""))  # fmt: skip
    attention = out[specs.FRAME_ATTENTION][0]
    if len(attention) != len(frames):  # the server resampled them: show the ones it kept
        frames = frames[uniform(len(frames), len(attention))]
    shown = frames[uniform(len(frames), min(len(frames), STRIP_FRAMES))]
    st.image(media.frame_strip(shown), caption=f"{len(shown)} of the {len(frames)} frames the model sees")
    if _is_long(client, path):
        _show_timeline(client, path, name)
    left, right = st.columns(2) if reads_text else (st.container(), None)
    with left:
        import pandas as pd

        st.subheader("Top labels")
        st.bar_chart(
            pd.DataFrame({"score": scores}, index=pd.Index(labels, name="label")), horizontal=True, sort="-score"
        )
    if right is None:
        return
    with right:
        st.subheader("Which frames the text attended to")
        st.pyplot(_attention_figure(attention))
        st.caption("Brighter = the text looked at that frame more (uniform when there is no text to ground).")
