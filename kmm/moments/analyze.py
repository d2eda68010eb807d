"""A long video through a model's `label_segments` signature, window by window.

`analyze_video(client, path)` decodes the video once in a decoder worker process
(`kmm.data.decoder.stream_windows`: shots, then windows), while this process sends batches
of windows to the model (any `kmm.serving.client` backend: in process, TF Serving REST or
gRPC). A reader thread keeps a few windows queued, so decoding and inference overlap and
memory holds at most `queue + batch` windows, whatever the video's length.

Per window the result keeps the top labels of each kind and the embedding; the whole
video's label scores are the duration-weighted mean of the windows' top-label scores (a label
outside a window's top 5 counts as 0 there), accumulated as it goes, so nothing but the
signature's outputs is needed (a TF Serving endpoint has no metadata file to read).

Example:

    >>> from kmm.serving.client import connect
    >>> analysis = analyze_video(connect("saved_models/kinetics"), "match.mp4")  # doctest: +SKIP
    >>> analysis.windows[0].actions[:1]  # doctest: +SKIP
    [('playing basketball', 0.83)]
"""

import dataclasses
import queue
import threading

import numpy as np
from tqdm.auto import tqdm

from kmm.data.segments import SegmentConfig

SIGNATURE = "label_segments"
KINDS = ("action", "object")


@dataclasses.dataclass
class WindowResult:
    """One window: `[start, end)` seconds of shot `shot`, its top labels of each kind, its embedding."""

    start: float
    end: float
    shot: int
    actions: list  # [(label, score)], best first
    objects: list
    embedding: np.ndarray  # (D,) unit norm
    thumbnail: np.ndarray | None = None  # (s, s, 3) uint8, when asked for

    def labels(self, kind):
        return self.actions if kind == "action" else self.objects


@dataclasses.dataclass
class VideoAnalysis:
    """What `analyze_video` learns of one video."""

    video: str
    windows: list  # [WindowResult], in time order
    shots: list  # [[start, end]] seconds
    gaps: list  # [[start, end]]: time with no frames (timestamps that jump)
    duration: float
    video_labels: dict  # {kind: [(label, score)]}: duration-weighted over the windows' top labels
    stats: dict  # the decoder's counts: frames, reordered timestamps, where decoding stopped

    def embeddings(self):
        return np.stack([w.embedding for w in self.windows]).astype(np.float32)


def check_signature(client):
    """A clear error when the model cannot label segments (a trained kmm model, for one)."""
    signatures = client.signatures()
    if SIGNATURE not in signatures:
        raise ValueError(
            f"the model ({getattr(client, 'path', client.name)}) has no `{SIGNATURE}` signature: long videos need the "
            "pretrained Kinetics export (kmm export --pretrained kinetics; --model saved_models/kinetics)."
        )


def _put(out, item, stop):
    """Puts `item` into `out` unless the consumer has stopped; returns whether it did."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.5)
            return True
        except queue.Full:
            continue
    return False


def _reader(path, config, out, stats, stop):
    """Puts windows (then None, or the exception) into `out`; runs in a thread."""
    from kmm.data.decoder import stream_windows

    try:
        for window in stream_windows(path, config, stats=stats):
            if not _put(out, window, stop):
                return  # leaving the loop closes the stream: its worker is replaced
        _put(out, None, stop)
    except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
        _put(out, error, stop)


def _windows(path, config, stats, depth):
    """Windows of `path` from a reader thread, at most `depth` queued."""
    out, stop = queue.Queue(maxsize=depth), threading.Event()
    thread = threading.Thread(target=_reader, args=(path, config, out, stats, stop), daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _thumbnail(frames, size):
    import cv2

    middle = frames[len(frames) // 2]
    return cv2.resize(middle, (size, size), interpolation=cv2.INTER_AREA)


def analyze_video(client, path, config=SegmentConfig(), batch_size=4, progress=True, on_progress=None,
                  thumbnails=0, queue_depth=8):  # fmt: skip
    """Shots, windows and per-window labels and embeddings of one video.

    Args:
        client: a `kmm.serving.client.Client` of an export with `label_segments`.
        path: str or Path. The video file.
        config: `SegmentConfig`. Window length, frames per window, caps and deadlines.
        batch_size: int. Windows per request. Defaults to `4`.
        progress: bool. A progress bar over the video's seconds.
        on_progress: callable or None. `on_progress(seconds_done, duration)` after each batch.
        thumbnails: int. Keep a thumbnail of this side per window (0: none; the demo's 96).
        queue_depth: int. Decoded windows waiting for the model. Defaults to `8`.

    Raises:
        VideoDecodeError: the file cannot be used (see `kmm.data.shot_stream.decode_windows`).
    """
    from kmm.data.decoder import probe
    from kmm.data.shot_stream import check_duration, duration_s

    check_signature(client)
    info = probe(path)
    check_duration(path, info, config)
    total = duration_s(info)
    stats, windows, batch = {}, [], []
    sums, covered = {}, 0.0
    bar = tqdm(total=total, desc=f"labelling {str(path).rsplit('/', 1)[-1]}", disable=not progress,
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s of video [{elapsed}<{remaining}]")  # fmt: skip

    def flush():
        nonlocal covered
        if not batch:
            return
        out = client.predict(SIGNATURE, {"frames": np.stack([w.frames for w in batch])})
        for i, window in enumerate(batch):
            weight = window.end - window.start
            for kind in KINDS:
                for label, score in _top(out[f"{kind}_labels"][i], out[f"{kind}_scores"][i]):
                    sums.setdefault(kind, {})[label] = sums.get(kind, {}).get(label, 0.0) + weight * score
            windows.append(WindowResult(
                window.start, window.end, window.shot,
                actions=_top(out["action_labels"][i], out["action_scores"][i]),
                objects=_top(out["object_labels"][i], out["object_scores"][i]),
                embedding=np.asarray(out["embedding"][i], np.float32),
                thumbnail=_thumbnail(window.frames, thumbnails) if thumbnails else None,
            ))  # fmt: skip
            covered += weight
        done = batch[-1].end
        bar.n = min(done, total)  # seconds of video labelled so far
        bar.refresh()
        if on_progress:
            on_progress(done, total)
        batch.clear()

    try:
        for window in _windows(path, config, stats, queue_depth):
            batch.append(window)
            if len(batch) == batch_size:
                flush()
        flush()
    finally:
        bar.close()
    video_labels = {
        kind: sorted(((label, total_score / max(covered, 1e-9)) for label, total_score in sums[kind].items()),
                     key=lambda x: -x[1])[:5]
        for kind in KINDS if kind in sums
    }  # fmt: skip
    duration = max([total] + [w.end for w in windows])
    return VideoAnalysis(str(path), windows, stats.get("shots", []), stats.get("gaps", []), duration, video_labels,
                         {k: v for k, v in stats.items() if k not in ("shots", "gaps")})  # fmt: skip


def _top(labels, scores):
    return [(label.decode() if isinstance(label, bytes) else str(label), float(score))
            for label, score in zip(labels, scores, strict=True)]  # fmt: skip
