"""Search: text -> videos (animated previews) and video -> captions, over the indexed gallery."""

import streamlit as st

from demo_pages import common
from kmm.demo import media
from kmm.serving.index import clip_frames, frame_request

COLUMNS = 4


def _clock(seconds):
    minutes, rest = divmod(float(seconds), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def _moments(session, index, query, k):
    """Moment hits: each a player that starts at the moment, with its time range."""
    from kmm.moments.index import search_moments

    try:
        hits = search_moments(index, session.client.embed_text([query]), k)[0]
    except Exception as e:  # noqa: BLE001
        common.show_error(e)
        return
    videos = len(set(index.videos))
    st.write(f"Top {len(hits)} moments of {len(index)} in {videos} videos for *{common.plain(query)}*:")
    for start in range(0, len(hits), COLUMNS):
        for column, hit in zip(st.columns(COLUMNS), hits[start : start + COLUMNS], strict=False):
            with column:
                begin, stop = media.player_span(hit["start"], hit["end"])
                st.video(hit["video"], start_time=begin, end_time=stop)
                name = hit.get("item") or hit["video"].rsplit("/", 1)[-1]
                st.markdown(f"**{hit['score']:.3f}** · {common.plain(name)} · "
                            f"{_clock(hit['start'])}–{_clock(hit['end'])}")  # fmt: skip
                if hit.get("labels"):
                    st.caption(common.plain(", ".join(hit["labels"])))


def _text_to_video(session, index):
    query = st.text_input("Describe a video", "", placeholder="e.g. a red circle moving left", key="query")
    k = st.slider("Results", 4, 16, 8, step=4, key="k")
    if not query.strip():
        return
    if index.has_moments:
        _moments(session, index, query, k)
        return
    try:
        hits = index.search(session.client.embed_text([query]), k)[0]
    except Exception as e:  # noqa: BLE001
        common.show_error(e)
        return
    st.write(f"Top {len(hits)} of {len(index)} videos for *{common.plain(query)}*:")
    for start in range(0, len(hits), COLUMNS):
        for column, (item, score, video, caption) in zip(
            st.columns(COLUMNS), hits[start : start + COLUMNS], strict=False
        ):
            with column:
                try:
                    st.image(media.preview(video), width="stretch")
                except (ValueError, OSError):
                    st.warning(f"{common.plain(item)}: no preview")
                st.markdown(f"**{score:.3f}** · {common.plain(item)}")
                if caption:
                    st.caption(common.plain(caption))


def _video_to_text(session, index):
    if index.has_moments:
        st.info("Video -> text needs captions: this gallery of moments has none. Text -> video finds moments.")
        return
    choice = st.selectbox("Pick a video from the gallery", index.ids[:200], key="video_query")
    if choice is None:
        return
    video = index.videos[index.ids.index(choice)]
    num_frames, size = frame_request(session.client)
    left, right = st.columns([1, 2])
    with left:
        st.image(media.preview(video), caption=choice)
    try:
        hits = index.search_captions(session.client.embed_video(clip_frames(video, num_frames, size)[None]), 5)[0]
    except Exception as e:  # noqa: BLE001
        common.show_error(e)
        return
    with right:
        import pandas as pd

        st.subheader("Nearest captions")
        st.dataframe(pd.DataFrame(hits, columns=["caption", "score"]), hide_index=True, width="stretch")


def render(session):
    st.header("Search")
    common.require_client(session)
    index = common.gallery_index(session)
    ids = sorted({i.rpartition("@")[0] for i in index.ids}) if index.has_moments else index.ids
    own = sum(i.startswith("videos/") for i in ids)
    moments = f" cut into {len(index)} moments" if index.has_moments else ""
    st.caption(f"Gallery: {len(ids)} videos{moments} (the export's gallery, the real sample videos"
               + (f" and {own} of your own" if own else "") + f"), {len(index.caption_texts)} captions.")  # fmt: skip
    to_video, to_text = st.tabs(["Text -> video", "Video -> text"])
    with to_video:
        _text_to_video(session, index)
    with to_text:
        _video_to_text(session, index)
