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
    """`(frames, name)` for the chosen video, or `(None, None)`; errors are shown, not raised."""
    source = st.radio("Video", [SAMPLE, UPLOAD], horizontal=True, key="classify_source")
    if source == UPLOAD:
        limit = media.max_upload_mb()
        upload = st.file_uploader(f"A video file (up to {limit:g} MB)", type=list(media.UPLOAD_TYPES), key="upload")
        if upload is None:
            return None, None
        try:
            return media.frames_from_upload(upload.name, upload.getvalue(), num_frames, size), upload.name
        except media.UploadError as e:
            st.error(str(e), icon=":material/error:")
            return None, None
    choices = _sample_choices(session)
    if not choices:
        st.info("No sample videos: upload one instead.")
        return None, None
    label = st.selectbox("Clip", list(choices), key="classify_clip")
    try:
        return clip_frames(choices[label], num_frames, size), Path(choices[label]).name
    except (ValueError, OSError) as e:
        st.error(f"{common.plain(choices[label])} could not be decoded: {common.plain(e)}", icon=":material/error:")
        return None, None


def render(session):
    st.header("Classify a video")
    client = common.require_client(session)
    reads_text = not _pretrained(client)
    st.caption("Pick or upload a video" + ("; add a text such as *the red circle* to ask about one object."
               if reads_text else ": the Kinetics-400 model names the action in real footage."))  # fmt: skip
    num_frames, size = frame_request(client)
    frames, name = _get_frames(session, num_frames, size)
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
