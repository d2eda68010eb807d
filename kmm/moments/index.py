"""Moment search: an index whose rows are windows of videos, and hits that say where.

`build_moment_index(client, videos)` runs each video through `kmm.moments.analyze` and keeps
one row per window (`video`, `start`, `end`, its top action and object, its embedding) in a
`kmm.serving.index.VideoIndex` (faiss or Qdrant, as `kmm index` always did).
`search_moments` ranks windows for each query and merges the windows of one moment
(`merge_moments`: neighbouring windows that score nearly as well join the best one, weaker
neighbours are dropped), so the top k are k places, not five neighbouring windows of one shot.

Moment ids read `<video id>@<start>-<end>` (seconds), so a TF Serving `search` answer over a
segment gallery says where without any other file (`parse_moment_id`).

Example:

    >>> parse_moment_id("reel.mp4@12.80-15.36")
    ('reel.mp4', 12.8, 15.36)
    >>> hits = [("a", 0.0, 2.5, 0, 0.9), ("a", 2.5, 5.0, 0, 0.88), ("a", 5.0, 7.5, 0, 0.6), ("b", 0.0, 2.5, 0, 0.7)]
    >>> [(m["video"], m["start"], m["end"], m["score"]) for m in merge_moments(hits, k=2)]
    [('a', 0.0, 5.0, 0.9), ('b', 0.0, 2.5, 0.7)]
"""

import dataclasses
from pathlib import Path

import numpy as np

from kmm.data.report import DataReport
from kmm.data.segments import SegmentConfig

CANDIDATES = 10  # windows ranked per moment asked for, before merging
TOUCH_S = 0.05
MERGE_MARGIN = 0.05  # a neighbouring window joins a moment when its cosine is at most this below the best


def moment_id(video_id, start, end):
    return f"{video_id}@{start:.2f}-{end:.2f}"


def parse_moment_id(item):
    """`"<video>@<start>-<end>"` -> `(video, start, end)`; `(item, None, None)` for a whole-video id."""
    video, at, span = str(item).rpartition("@")
    start, dash, end = span.partition("-")
    try:
        if at and dash:
            return video, float(start), float(end)
    except ValueError:
        pass
    return str(item), None, None


def merge_moments(hits, k, window_s=SegmentConfig.window_s, margin=MERGE_MARGIN):
    """`hits`: `(video, start, end, shot, score)` best first -> the top `k` moments.

    Temporal non-maximum suppression that grows: each hit, best first, either starts a
    moment or falls next to one already found (touching it, or in the same shot at most
    `window_s` away). Next to one, it extends that moment when it scores within `margin` of
    the moment's best window, and is dropped otherwise (a weaker neighbour is the same place,
    not another hit). A moment scores as its best window.
    """
    moments = []
    for video, start, end, shot, score in hits:
        near = next((m for m in moments if m["video"] == video and _near(m, start, end, shot, window_s)), None)
        if near is None:
            moments.append({"video": video, "start": start, "end": end, "shot": shot, "score": float(score),
                            "windows": 1})  # fmt: skip
        elif score >= near["score"] - margin:
            near["start"], near["end"] = min(near["start"], start), max(near["end"], end)
            near["windows"] += 1
            for other in [m for m in moments if m is not near and m["video"] == video]:  # a window that bridges two
                if other["score"] >= near["score"] - margin and _near(near, other["start"], other["end"], None, 0):
                    near["start"], near["end"] = min(near["start"], other["start"]), max(near["end"], other["end"])
                    near["windows"] += other["windows"]
                    near["score"] = max(near["score"], other["score"])
                    moments.remove(other)
    return sorted(moments, key=lambda m: -m["score"])[:k]


def _near(moment, start, end, shot, window_s):
    gap = max(start - moment["end"], moment["start"] - end)  # < 0 when they overlap
    same_shot = shot is not None and shot == moment["shot"]
    return gap <= TOUCH_S or (same_shot and gap <= window_s + TOUCH_S)


def search_moments(index, queries, k=5):
    """Unit-norm query embeddings `(b, D)` over a moment `VideoIndex` -> per query, merged moments.

    Each moment: `video` (its path), `item` (its id in the index), `start`, `end`, `score`,
    `windows` (how many merged), `shot`, and `labels` (the best window's top action and object).
    """
    if not index.has_moments:
        raise ValueError("this index holds whole videos, not moments; rebuild it with the Kinetics model "
                         "(kmm index SOURCE --out DIR --model saved_models/kinetics).")  # fmt: skip
    n = min(len(index), k * CANDIDATES)
    scores, rows = index.index.search(np.asarray(queries, np.float32), n)
    shots = index.info.get("shots") or [None] * len(index)
    results = []
    for srow, jrow in zip(scores, rows, strict=True):
        hits = [(index.videos[j], index.starts[j], index.ends[j], shots[j], float(s))
                for s, j in zip(srow, jrow, strict=True) if j >= 0]  # fmt: skip
        moments = merge_moments(hits, k)
        for m in moments:
            best = next(j for s, j in zip(srow, jrow, strict=True)
                        if j >= 0 and index.videos[j] == m["video"] and m["start"] <= index.starts[j] < m["end"])  # fmt: skip
            m["labels"] = index.labels[best] if index.labels else []
            m["item"] = parse_moment_id(index.ids[best])[0]  # the video's id in the index
        results.append(moments)
    return results


@dataclasses.dataclass
class MomentRows:
    """The windows of a video collection: one entry per window in each list, embeddings `(n, D)`."""

    ids: list
    videos: list
    starts: list
    ends: list
    shots: list
    labels: list  # [top action, top object]
    embeddings: np.ndarray
    partial: dict  # video -> where its decoding stopped (seconds)
    gaps: dict  # video -> [[start, end]] with no frames


def moment_rows(client, videos, ids=None, config=SegmentConfig(), report=None, progress=True, on_progress=None,
                batch_size=4):  # fmt: skip
    """Every window of `videos` (paths), embedded by `client`'s `label_segments`.

    Videos that cannot be decoded are skipped and recorded in `report`; a video whose
    decoding stopped part-way keeps the windows before that point (`partial` says where).
    `on_progress(video_index, seconds, duration)` after each batch of windows.
    """
    from kmm.data.video_io import VideoDecodeError
    from kmm.moments.analyze import analyze_video

    report = report if report is not None else DataReport()
    ids = [str(i) for i in (ids or [Path(v).name for v in videos])]
    rows = MomentRows([], [], [], [], [], [], None, {}, {})
    embeddings = []
    for i, video in enumerate(videos):
        report.read()
        step = (lambda done, total, i=i: on_progress(i, done, total)) if on_progress else None
        try:
            analysis = analyze_video(client, video, config, batch_size=batch_size, progress=progress, on_progress=step)
        except (VideoDecodeError, OSError) as e:
            report.skip(i, str(video), getattr(e, "reason", "undecodable"), str(e))
            continue
        report.used()
        for w in analysis.windows:
            rows.ids.append(moment_id(ids[i], w.start, w.end))
            rows.videos.append(str(video))
            rows.starts.append(round(w.start, 3))
            rows.ends.append(round(w.end, 3))
            rows.shots.append(w.shot)
            rows.labels.append([w.actions[0][0], w.objects[0][0]])
        embeddings.append(analysis.embeddings())
        if "stopped_at" in analysis.stats:
            rows.partial[str(video)] = analysis.stats["stopped_at"]
        if analysis.gaps:
            rows.gaps[str(video)] = analysis.gaps
    if not embeddings:
        raise ValueError(f"No decodable video among {len(videos)}: {report.summary()}")
    rows.embeddings = np.concatenate(embeddings).astype(np.float32)
    return rows


def build_moment_index(client, videos, ids=None, config=SegmentConfig(), report=None, kind="auto", qdrant=None,
                       progress=True, on_progress=None, batch_size=4):  # fmt: skip
    """A `VideoIndex` of `moment_rows(...)` in faiss (`kind`) or Qdrant (`qdrant`: a folder or URL)."""
    report = report if report is not None else DataReport()
    rows = moment_rows(client, videos, ids, config, report, progress, on_progress, batch_size)
    return moment_index(rows, config, report, kind, qdrant)


def moment_index(rows, config, report, kind="auto", qdrant=None):
    """The `VideoIndex` of `MomentRows` (from `moment_rows`, or gathered from many machines by
    `kmm.moments.corpus`): faiss (`kind`) or Qdrant (`qdrant`: a folder or URL; point ids are
    row numbers, so writing the same rows again replaces them)."""
    from kmm.serving.index import VideoIndex
    from kmm.serving.vectors import FaissVectors, QdrantVectors

    store = QdrantVectors.build(rows.embeddings, qdrant) if qdrant else FaissVectors.build(rows.embeddings, kind)
    info = {
        "moments": True,
        "segments": config.to_json(),
        "shots": rows.shots,
        "skipped": [dataclasses.asdict(s) for s in report.skipped],
        "partial": rows.partial,
        "gaps": rows.gaps,
        "vectors": store.describe(),
    }
    return VideoIndex(store, rows.ids, rows.videos, [""] * len(rows.ids), info, starts=rows.starts, ends=rows.ends,
                      labels=rows.labels)  # fmt: skip
