"""`kmm index`: embed a video collection through any kmm client, search it with faiss or Qdrant.

An index folder holds `index.faiss` (inner product over unit-norm embeddings = cosine; absent
when the vectors live in Qdrant), `captions.faiss` (the distinct captions, for video -> text)
and `items.json` (`ids`, `videos`, `captions`, the frames sent, what was skipped, and where
the vectors are).
Videos that cannot be decoded are skipped, counted and listed, never silently dropped.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kmm.data.report import DataReport
from kmm.paths import replacing
from kmm.serving.vectors import FaissVectors, QdrantVectors

INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.json"
CAPTION_INDEX_FILE = "captions.faiss"
DEFAULT_FRAMES, DEFAULT_SIZE = 16, 160  # what is sent when the model's own values are unknown (remote)


def find_videos(root):
    """Video files under `root` (recursive), sorted."""
    from kmm.data.video_io import VIDEO_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder of videos.")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())


def clip_frames(path, num_frames, size):
    """`num_frames` uniformly sampled RGB frames of a video file, `size` px, `(num_frames, size, size, 3)`."""
    from kmm.data.decoder import probe, read_frames
    from kmm.data.sampling import uniform

    info = probe(path)
    return read_frames(path, uniform(info.num_frames, num_frames), size, info=info)


def frame_request(client):
    """`(num_frames, frame_size)` to send: the model's own when its metadata is readable."""
    meta = client.metadata()
    if meta:
        return meta["num_frames"], meta["frame_size"]
    return DEFAULT_FRAMES, DEFAULT_SIZE


def _caption_index(client, texts, batch_size=64):
    if not texts:
        return None
    vectors = np.concatenate([client.embed_text(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])
    return FaissVectors.build(vectors, "flat")


def embed_videos(client, videos, batch_size=16, progress=True, report=None, on_progress=None):
    """Embeds `videos` (paths) with `client.embed_video`, `batch_size` clips per request.

    Returns `(kept, embeddings, (num_frames, size))`: the positions in `videos` that decoded,
    their unit-norm embeddings `(len(kept), D)`, and the frames sent. Undecodable videos are
    skipped and recorded in `report` (a `DataReport`); `on_progress(done, total)` is called
    after each video (e.g. to drive a UI progress bar).
    """
    from kmm.data.video_io import VideoDecodeError

    report = report if report is not None else DataReport()
    num_frames, size = frame_request(client)
    kept, embeddings, batch = [], [], []

    def flush():
        if batch:
            embeddings.append(client.embed_video(np.stack([frames for _, frames in batch])))
            kept.extend(i for i, _ in batch)
            batch.clear()

    for i, video in enumerate(tqdm(videos, desc="indexing videos", unit="video", disable=not progress)):
        report.read()
        try:
            batch.append((i, clip_frames(video, num_frames, size)))
            report.used()
        except (VideoDecodeError, OSError, ValueError) as e:
            report.skip(i, str(video), "undecodable", str(e))
        if len(batch) == batch_size:
            flush()
        if on_progress:
            on_progress(i + 1, len(videos))
    flush()
    if not kept:
        raise ValueError(f"No decodable video among {len(videos)}: {report.summary()}")
    return kept, np.concatenate(embeddings).astype(np.float32), (num_frames, size)


def is_complete(out_dir):
    """True when `out_dir` holds a whole saved index (its `items.json` is written last)."""
    return (Path(out_dir) / ITEMS_FILE).exists()


class VideoIndex:
    """Embeddings of a video collection in a vector store (`kmm.serving.vectors`): faiss, or Qdrant."""

    def __init__(self, index, ids, videos, captions, info=None, caption_index=None, starts=None, ends=None,
                 labels=None):  # fmt: skip
        self.index, self.ids, self.videos, self.captions, self.info = index, ids, videos, captions, info or {}
        self.caption_index = caption_index  # the distinct non-empty captions, for video -> text
        self.caption_texts = sorted({c for c in captions if c})
        # A moment index (`kmm.moments.index`): each row is a window of a video, [start, end) seconds.
        self.starts, self.ends, self.labels = starts, ends, labels

    @property
    def has_moments(self):
        return self.starts is not None

    def __len__(self):
        return len(self.ids)

    @classmethod
    def build(cls, client, videos, ids=None, captions=None, batch_size=16, progress=True, report=None,
              on_progress=None, kind="auto", qdrant=None):  # fmt: skip
        """Embeds `videos` (paths) with `embed_videos` and indexes them; captions (when given)
        are embedded too, for video -> text search.

        `kind`: the faiss index (`kmm.serving.vectors.KINDS`); `qdrant`: a folder or a Qdrant
        server URL to keep the video vectors in instead of faiss.
        """
        report = report if report is not None else DataReport()
        ids = [str(i) for i in (ids or [Path(v).name for v in videos])]
        captions = list(captions) if captions is not None else [""] * len(videos)
        kept, vectors, (num_frames, size) = embed_videos(client, videos, batch_size, progress, report, on_progress)
        store = QdrantVectors.build(vectors, qdrant) if qdrant else FaissVectors.build(vectors, kind)
        info = {
            "num_frames": num_frames,
            "frame_size": size,
            "skipped": [dataclasses.asdict(s) for s in report.skipped],
            "vectors": store.describe(),
        }
        built = cls(store, [ids[i] for i in kept], [str(videos[i]) for i in kept], [captions[i] for i in kept], info)
        built.caption_index = _caption_index(client, built.caption_texts)
        return built

    def search_captions(self, video_embeddings, k=5):
        """Unit-norm video embeddings `(b, D)` -> list (per video) of `(caption, score)`."""
        if self.caption_index is None or not self.caption_texts:
            return [[] for _ in range(len(video_embeddings))]
        k = min(k, len(self.caption_texts))
        scores, rows = self.caption_index.search(np.asarray(video_embeddings, np.float32), k)
        return [
            [(self.caption_texts[j], float(s)) for s, j in zip(srow, jrow, strict=True) if j >= 0]
            for srow, jrow in zip(scores, rows, strict=True)
        ]

    def search(self, queries, k=10):
        """Unit-norm query embeddings `(b, D)` -> list (per query) of `(id, score, video, caption)`."""
        k = min(k, len(self))
        scores, rows = self.index.search(np.asarray(queries, np.float32), k)
        return [
            [
                (self.ids[j], float(s), self.videos[j], self.captions[j])
                for s, j in zip(srow, jrow, strict=False)
                if j >= 0
            ]
            for srow, jrow in zip(scores, rows, strict=False)
        ]

    def save(self, out_dir):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        # `items.json` marks a complete index: removed first, written last, every file renamed
        # into place, so a killed save never leaves an index that loads with the wrong items.
        (out_dir / ITEMS_FILE).unlink(missing_ok=True)
        (out_dir / CAPTION_INDEX_FILE).unlink(missing_ok=True)
        (out_dir / INDEX_FILE).unlink(missing_ok=True)
        if isinstance(self.index, FaissVectors):  # a Qdrant collection is saved where it lives
            self.index.save(out_dir / INDEX_FILE)
        if self.caption_index is not None:
            self.caption_index.save(out_dir / CAPTION_INDEX_FILE)
        items = {"ids": self.ids, "videos": self.videos, "captions": self.captions, "info": self.info}
        if self.has_moments:
            items.update(starts=self.starts, ends=self.ends, labels=self.labels)
        with replacing(out_dir / ITEMS_FILE) as tmp:
            tmp.write_text(json.dumps(items, default=str) + "\n")
        return out_dir

    @classmethod
    def load(cls, out_dir):
        out_dir = Path(out_dir)
        if not is_complete(out_dir):
            raise FileNotFoundError(
                f"{out_dir}: no complete index ({ITEMS_FILE}); build one with `kmm index VIDEO_DIR --out {out_dir}`."
            )
        items = json.loads((out_dir / ITEMS_FILE).read_text())
        where = items.get("info", {}).get("vectors", {"backend": "faiss", "kind": "flat"})
        if where["backend"] == "qdrant":
            store = QdrantVectors.open(where["location"], where["collection"])
        else:
            store = FaissVectors.load(out_dir / INDEX_FILE, where["kind"])
        captions = out_dir / CAPTION_INDEX_FILE
        caption_index = FaissVectors.load(captions) if captions.exists() else None
        return cls(store, items["ids"], items["videos"], items["captions"], items.get("info"), caption_index,
                   items.get("starts"), items.get("ends"), items.get("labels"))  # fmt: skip
