"""Model: which export and version is loaded, its signatures, labels, metrics and plots."""

import streamlit as st

from demo_pages import common


def render(session):
    import pandas as pd

    st.header("Model")
    client = common.require_client(session)
    where = getattr(client, "path", None) or getattr(client, "url", None) or getattr(client, "target", "")
    st.markdown(
        f"**Backend:** {session.kind} · **model:** `{where}`"
        + (f" · **version:** {session.version}" if session.version else "")
    )
    try:
        signatures = client.signatures()
    except Exception as e:  # noqa: BLE001
        common.show_error(e)
        return
    st.subheader("Serving signatures")
    rows = [
        {"signature": name, "inputs": ", ".join(f"{k}: {v}" for k, v in sorted(s["inputs"].items())),
         "outputs": ", ".join(f"{k}: {v}" for k, v in sorted(s["outputs"].items()))}
        for name, s in sorted(signatures.items())
    ]  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    meta = client.metadata()
    export_dir = session.export_dir
    if meta is None and export_dir is not None:
        from kmm.serving.export import read_metadata

        meta = read_metadata(export_dir)
        st.caption(f"Details below are from the local copy {export_dir}.")
    if meta is None:
        st.info("Labels and metrics live in the export's assets/kmm.json, which is not readable over REST.")
        return
    st.markdown(
        f"**{len(meta['labels'])} labels:** {common.plain(', '.join(meta['labels']))}  \n"
        f"**Frames:** {meta['num_frames']} x {meta['frame_size']} px · **encoders:** `{meta['frame_encoder']}`, "
        f"`{meta['text_encoder']}` · **kmm** {meta['kmm_version']} · exported {meta['created']}"
    )
    from kmm.serving.export import eval_files

    files = eval_files(export_dir) if export_dir else []
    tables = [f for f in files if f.name == "metrics.md"]
    if tables:
        st.subheader("Evaluation (`kmm evaluate`)")
        st.markdown(tables[0].read_text())
    images = [f for f in files if f.suffix == ".png"]
    for start in range(0, len(images), 2):
        for column, image in zip(st.columns(2), images[start : start + 2], strict=False):
            column.image(str(image), caption=image.stem.replace("_", " "))
    if not files and meta.get("metrics"):
        st.json(meta["metrics"])
