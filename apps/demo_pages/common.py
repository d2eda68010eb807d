"""Sidebar (backend, version), cached model and index, shared widgets."""

import dataclasses
import re
from pathlib import Path

import streamlit as st

from kmm.demo import backend
from kmm.serving.client import ServingError, ServingUnavailable

LOCAL, REST = "Local export", "TF Serving (REST)"


@dataclasses.dataclass
class Session:
    """What the sidebar chose; `client` is None until `require_client` succeeds."""

    kind: str
    target: str
    name: str
    version: str | None
    client: object = None

    @property
    def export_dir(self):
        """The local export folder (for gallery and plots), also when serving remotely."""
        path = getattr(self.client, "path", None)
        if path is not None:
            return Path(path)
        versions = backend.local_versions(backend.DEFAULT_EXPORT)
        return Path(backend.DEFAULT_EXPORT) / versions[0] if versions else None


def sidebar():
    """The model to use. A browser user picks among what the operator offered: the exports
    next to `kmm demo --model` (never a typed path), or the TF Serving URL given as
    `--model http://...` (never a typed URL: the server would fetch it)."""
    default = backend.default_target()
    remote_default = default.startswith(("http://", "https://"))
    kind = st.radio("Backend", [LOCAL, REST], index=1, key="backend") if remote_default else LOCAL
    if kind == LOCAL:
        choices = backend.model_choices(backend.DEFAULT_EXPORT if remote_default else default)
        target = st.selectbox("Exported model", choices, format_func=_model_label, key="export")
        versions = backend.local_versions(target)
        version = st.selectbox("Version", versions, key="version") if versions else None
        name = Path(target).name
    else:
        target = default
        st.caption(f"TF Serving: {plain(target)}")
        name = st.text_input("Model name", "kmm", key="model_name").strip()
        version = st.text_input("Version (empty: newest)", "", key="remote_version").strip() or None
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name) or (version and not version.isdigit()):
            st.error("Model name: letters, digits, `_`, `.` and `-`; version: a number.")
            st.stop()
    st.caption("kmm: video-text multimodal learning with TensorFlow, Keras 3 and TF-Hub.")
    return Session(kind, target, name, version)


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>#+\-!|~$:])")


def plain(text):
    """`text` with Markdown's special characters escaped: captions, file names and queries
    come from users and data sets, and must not render as links, images or formatting."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", str(text))


def _model_label(folder):
    """`kinetics: real videos, Kinetics-400` / `kmm: trained, 8 labels` / the folder itself."""
    from kmm.serving.export import read_metadata

    versions = backend.local_versions(folder)
    if not versions:
        return folder
    path = Path(folder) if (Path(folder) / "saved_model.pb").exists() else Path(folder) / versions[0]
    try:
        meta = read_metadata(path)
    except (OSError, ValueError):
        return folder
    if meta.get("kind") == "pretrained":
        return f"{Path(folder).name}: real videos, Kinetics-{len(meta['labels'])}"
    return f"{Path(folder).name}: trained, {len(meta['labels'])} labels"


@st.cache_resource(show_spinner="Loading the model...")
def _client(kind, target, name, version):
    return backend.open_client(target, name, version)


def require_client(session):
    """Connects (cached) or shows what to do and stops the page."""
    try:
        session.client = _client(session.kind, session.target, session.name, session.version)
    except ServingUnavailable as e:
        st.error(str(e), icon=":material/error:")
        if session.kind == REST:
            st.info("Start TF Serving (see the README's serving section), or switch the backend to a local export.")
        st.stop()
    return session.client


def show_error(error):
    """A failed request as a message, never a traceback."""
    if isinstance(error, ServingUnavailable):
        st.error(f"The model server stopped answering: {plain(error)}", icon=":material/cloud_off:")
    elif isinstance(error, ServingError):
        st.error(f"The model rejected the request: {plain(error)}", icon=":material/error:")
    else:
        st.error(plain(error), icon=":material/error:")


@st.cache_resource(show_spinner=False)
def _load_index(folder):
    from kmm.serving.index import VideoIndex

    return VideoIndex.load(folder)


def gallery_sources(export_dir):
    """`(videos, ids, captions)` of the gallery (the export's clips, the samples, the user's own), read once."""
    return _gallery_sources(export_dir, backend.user_videos_folder())


@st.cache_data(show_spinner=False)
def _gallery_sources(export_dir, user_folder):
    return backend.gallery_sources(export_dir, user_folder)


def gallery_index(session):
    """The indexed gallery: built on first use with a progress bar, then cached (disk + memory)."""
    bar = None

    def progress(done, total):
        nonlocal bar
        bar = bar or st.progress(0.0)
        bar.progress(min(done / total, 1.0), text=f"Indexing videos (first use only): {done:.1f} / {total}")

    try:
        folder = backend.ensure_index(session.client, gallery_sources(session.export_dir), on_progress=progress)
    except backend.NoExport as e:
        st.warning(str(e))
        st.stop()
    if bar is not None:
        bar.empty()
    return _load_index(str(folder))
