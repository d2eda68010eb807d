"""kmm demo: video classification and text-video retrieval on an exported kmm model.

Run with `kmm demo` (binds 127.0.0.1), or `streamlit run apps/demo.py`. The app loads an
export (never builds a model): a local `saved_models/<name>` folder, or a TF Serving REST
endpoint. `KMM_DEMO_MODEL` sets the default backend, `KMM_DEMO_MAX_UPLOAD_MB` the upload limit.
"""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).parent))  # the page modules next to this file

from demo_pages import classify, common, model, search  # noqa: E402

PAGES = {"Classify": classify.render, "Search": search.render, "Model": model.render}

st.set_page_config(page_title="kmm demo", layout="wide")
with st.sidebar:
    st.title("kmm demo")
    page = st.radio("Page", list(PAGES), key="page")
    session = common.sidebar()
PAGES[page](session)
