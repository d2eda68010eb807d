"""Support for the Streamlit demo (`apps/demo.py`): backends, media, the gallery index.

Nothing here imports Streamlit, so all of it is testable without a browser.
"""
