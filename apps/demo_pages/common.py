"""Sidebar (backend, version), cached model and index, shared widgets."""

import dataclasses
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
    default = backend.default_target()
    remote_default = default.startswith(("http://", "https://"))
    kind = st.radio("Backend", [LOCAL, REST], index=1 if remote_default else 0, key="backend")
    if kind == LOCAL:
        target = st.text_input("Export folder", backend.DEFAULT_EXPORT if remote_default else default, key="export")
        versions = backend.local_versions(target)
        version = st.selectbox("Version", versions, key="version") if versions else None
        name = Path(target).name
    else:
        target = st.text_input("TF Serving REST URL", default if remote_default else "http://localhost:8501", key="url")
        name = st.text_input("Model name", "kmm", key="model_name")
        version = st.text_input("Version (empty: newest)", "", key="remote_version").strip() or None
    st.caption("kmm: video-text multimodal learning with TensorFlow, Keras 3 and TF-Hub.")
    return Session(kind, target, name, version)


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


def frame_request(session):
    from kmm.serving.index import frame_request

    return frame_request(session.client)


def show_error(error):
    """A failed request as a message, never a traceback."""
    if isinstance(error, ServingUnavailable):
        st.error(f"The model server stopped answering: {error}", icon=":material/cloud_off:")
    elif isinstance(error, ServingError):
        st.error(f"The model rejected the request: {error}", icon=":material/error:")
    else:
        st.error(str(error), icon=":material/error:")


@st.cache_resource(show_spinner=False)
def _load_index(folder):
    from kmm.serving.index import VideoIndex

    return VideoIndex.load(folder)


def gallery_index(session):
    """The indexed gallery: built on first use with a progress bar, then cached (disk + memory)."""
    sources = backend.gallery_sources(session.export_dir)
    folder = backend.index_dir(session.client, sources)
    if not (folder / "index.faiss").exists():
        videos, ids, captions = sources
        if not videos:
            st.warning("Nothing to search: no gallery in the export and no sample videos.")
            st.stop()
        from kmm.serving.index import VideoIndex

        bar = st.progress(0.0, text=f"Indexing {len(videos)} videos (first use only)...")
        index = VideoIndex.build(
            session.client, videos, ids=ids, captions=captions, progress=False,
            on_progress=lambda done, total: bar.progress(done / total, text=f"Indexing videos: {done} / {total}"),
        )  # fmt: skip
        index.save(folder)
        bar.empty()
    return _load_index(str(folder))
