"""Index a video corpus on a Ray cluster: the moments `kmm index` finds, from many machines.

    videos (a folder, a manifest, a list file; local or `gs://` through `tf.io.gfile`)
      -> Ray Data, one task per video
      -> an actor pool: each actor opens the model once (`connect(model)`: an export folder
         every node can read, or a TF Serving URL) and runs `moment_rows` on its video, the
         single-process code, unchanged
      -> `OUT/rows/<key>.parquet`, one file per video (written under a temporary name and
         renamed), rows `{id, video, start, end, shot, action, object, embedding}`
      -> the index, built from the files in the order of the source (faiss or Qdrant).

Nothing lost, nothing twice. A video's key is its path, size and modification time; its rows
are one file named by the key, so a retried task rewrites the same file and a rerun of the
same command skips every video whose file exists (a crash or Ctrl-C loses at most the videos
in flight). An actor that dies is restarted and its task retried (`retries` times, Ray's
`max_restarts` / `max_task_retries`); a video still without rows after that is listed as
`lost`, and one that cannot be decoded as `kmm index` lists it. The index is built from this
source's files only, one file per video, so each window is in it once.

Example:

    >>> index, report = index_corpus("videos/", "corpus_index", "saved_models/kinetics")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
"""

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from kmm.data.report import DataReport
from kmm.data.segments import SegmentConfig
from kmm.moments.index import MomentRows, moment_index, moment_rows

ROWS_DIR = "rows"
REMOTE_PREFIXES = ("gs://", "s3://", "hdfs://")
MANIFEST_SUFFIXES = (".csv", ".jsonl")


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """How the corpus job runs on the cluster.

    Args:
        address: a Ray cluster (`ray://head:10001`, `auto`, a head's `host:6379`) or None: the
            cluster in `$RAY_ADDRESS`, else a local one started in this process.
        workers: actors (model copies). None: one per `cpus_per_worker` CPUs of the cluster,
            or one per GPU when it has GPUs.
        cpus_per_worker: CPUs each actor reserves; TensorFlow in the actor uses that many threads.
        retries: restarts of a dead actor and retries of its task, per video.
        batch_size: windows per model call inside an actor.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: int = 1
    retries: int = 3
    batch_size: int = 4


def is_remote(path):
    return str(path).startswith(REMOTE_PREFIXES)


def list_videos(source):
    """`(videos, ids)` of a source: a video file, a folder (recursive), a manifest (`.csv`/`.jsonl`,
    its `video` column) or a text file of paths (`.txt`, one per line); a `gs://` folder is
    listed with `tf.io.gfile`. Ids are the paths relative to the folder (or the manifest's)."""
    from kmm.data.video_io import VIDEO_EXTENSIONS
    from kmm.serving.index import find_videos

    source = str(source)
    if is_remote(source):
        import tensorflow as tf

        if not tf.io.gfile.isdir(source):
            return [source], [source.rstrip("/").rsplit("/", 1)[-1]]
        root = source.rstrip("/")
        found = sorted(f"{folder.rstrip('/')}/{name}" for folder, _, files in tf.io.gfile.walk(root)
                       for name in files if Path(name).suffix.lower() in VIDEO_EXTENSIONS)  # fmt: skip
        return found, [v[len(root) + 1 :] for v in found]
    path = Path(source)
    if path.is_dir():
        videos = find_videos(path)
        return [str(v) for v in videos], [str(v.relative_to(path)) for v in videos]
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        from kmm.data.manifest import read_manifest

        videos = list(dict.fromkeys(str(r.video) for r in read_manifest(path)))
    elif path.suffix.lower() == ".txt":
        lines = [line.strip() for line in path.read_text().splitlines()]
        videos = [v if is_remote(v) else str((path.parent / v).resolve()) for v in lines if v and not v.startswith("#")]
    elif path.is_file():
        return [str(path)], [path.name]
    else:
        raise FileNotFoundError(f"{source}: no such video, folder or manifest.")
    root = path.parent.resolve()
    ids = [v if is_remote(v) else os.path.relpath(v, root) for v in videos]
    return videos, ids


def video_key(path):
    """A video's identity across runs: a hash of its path, size and modification time (a
    changed file is indexed again; the bytes are not read: hashing them would cost a full read
    of the corpus before any work). Raises `FileNotFoundError` for a missing file."""
    path = str(path)
    if is_remote(path):
        import tensorflow as tf

        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(path)
        stat = tf.io.gfile.stat(path)
        size, mtime = stat.length, stat.mtime_nsec
    else:
        stat = os.stat(path)
        path, size, mtime = str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns
    return hashlib.sha1(f"{path}\0{size}\0{mtime}".encode()).hexdigest()[:24]


def write_rows(rows, video, video_id, path):
    """Writes one video's `MomentRows` as a Parquet file, atomically (temporary name, rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    embeddings = np.asarray(rows.embeddings, np.float32)
    table = pa.table({
        "id": rows.ids, "video": [video] * len(rows.ids), "start": rows.starts, "end": rows.ends,
        "shot": rows.shots, "action": [a for a, _ in rows.labels], "object": [o for _, o in rows.labels],
        "embedding": pa.FixedSizeListArray.from_arrays(embeddings.reshape(-1), embeddings.shape[1]),
    })  # fmt: skip
    meta = {"video": video, "id": video_id, "partial": rows.partial.get(video), "gaps": rows.gaps.get(video, [])}
    table = table.replace_schema_metadata({"kmm": json.dumps(meta)})
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_rows(paths):
    """`MomentRows` of Parquet files written by `write_rows`, in the order given."""
    import pyarrow.parquet as pq

    rows = MomentRows([], [], [], [], [], [], None, {}, {})
    embeddings = []
    for path in paths:
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"kmm"])
        columns = table.to_pydict()
        rows.ids += columns["id"]
        rows.videos += columns["video"]
        rows.starts += columns["start"]
        rows.ends += columns["end"]
        rows.shots += columns["shot"]
        rows.labels += [list(p) for p in zip(columns["action"], columns["object"], strict=True)]
        embeddings.append(np.asarray(columns["embedding"], np.float32).reshape(len(columns["id"]), -1))
        if meta["partial"] is not None:
            rows.partial[meta["video"]] = meta["partial"]
        if meta["gaps"]:
            rows.gaps[meta["video"]] = meta["gaps"]
    rows.embeddings = np.concatenate(embeddings) if embeddings else np.zeros((0, 0), np.float32)
    return rows


class MomentWorker:
    """A Ray Data actor: opens the model once, then indexes one video per call."""

    def __init__(self, model, model_name, segments, rows_dir, threads, batch_size):
        import tensorflow as tf

        from kmm import logs

        logs.quiet()
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        from kmm.serving.client import connect

        self.client = connect(model, model_name)
        self.config = SegmentConfig(**segments)
        self.rows_dir, self.batch_size = Path(rows_dir), batch_size

    def __call__(self, batch):
        """`{key, reason, detail}` per video: why it has no rows ("" when its file was written)."""
        out = {"key": [], "reason": [], "detail": []}
        for key, video, video_id in zip(batch["key"], batch["video"], batch["id"], strict=True):
            reason, detail = self.index_one(str(key), str(video), str(video_id))
            for name, value in zip(out, (key, reason, detail), strict=True):
                out[name].append(value)
        return {name: np.asarray(values) for name, values in out.items()}

    def index_one(self, key, video, video_id):
        """`(reason, detail)` of a skip, or `("", "")` after writing `rows/<key>.parquet`."""
        local, scratch = video, None
        try:
            if is_remote(video):  # the decoder reads local files: copy it next to the actor first
                import tensorflow as tf

                scratch = tempfile.mkdtemp(prefix="kmm-video-")
                local = str(Path(scratch) / Path(video).name)
                tf.io.gfile.copy(video, local)
            report = DataReport()
            try:
                rows = moment_rows(self.client, [local], [video_id], self.config, report, progress=False,
                                   batch_size=self.batch_size)  # fmt: skip
            except ValueError:  # no decodable video: the report says why
                skip = report.skipped[0] if report.skipped else None
                return (skip.reason, skip.detail) if skip else ("undecodable", "")
            rows.videos = [video] * len(rows.ids)
            rows.partial = {video: rows.partial[local]} if local in rows.partial else {}
            rows.gaps = {video: rows.gaps[local]} if local in rows.gaps else {}
            write_rows(rows, video, video_id, self.rows_dir / f"{key}.parquet")
            return "", ""
        except Exception as e:  # noqa: BLE001  (one video's failure is reported, not the job's)
            return "error", f"{type(e).__name__}: {e}"
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)


@dataclasses.dataclass
class CorpusReport:
    """What a corpus job did, per video: `indexed` now, `done` before (skipped), `skipped`
    (with the reason), `lost` (no rows after every retry)."""

    report: DataReport
    indexed: list = dataclasses.field(default_factory=list)
    done_before: list = dataclasses.field(default_factory=list)
    lost: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    workers: int = 0

    def summary(self):
        """One line: what this run did (the skips and their reasons: `report.summary()`)."""
        return (f"{len(self.indexed)} videos indexed now, {len(self.done_before)} already indexed before (not "
                f"redone); {self.workers} Ray workers, {self.seconds:.1f} s")  # fmt: skip


def _start_ray(address):
    import ray

    from kmm import logs

    level = logging.ERROR if logs.is_quiet() else logging.INFO
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level=level, log_to_driver=not logs.is_quiet())
    logging.getLogger("ray").setLevel(level)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # kmm's own bar follows the videos
    context.print_on_execution_start = False
    context.max_errored_blocks = -1  # a video whose task fails every retry is listed as lost, not the job's end
    return ray


def _pool(ray, config):
    """`(workers, ray_remote_args)` from the cluster's resources."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return config.workers or gpus, {"num_gpus": 1, "num_cpus": config.cpus_per_worker}
    workers = config.workers or max(1, int(resources.get("CPU", 1)) // config.cpus_per_worker)
    return workers, {"num_cpus": config.cpus_per_worker}


def index_corpus(source, out, model, model_name="kmm", segments=SegmentConfig(), config=CorpusConfig(), kind="auto",
                 qdrant=None, progress=True):  # fmt: skip
    """Indexes the moments of every video of `source` on Ray; returns `(VideoIndex, CorpusReport)`.

    The rows of each video land in `out/rows/` as they are made; the index (faiss in `out`, or
    `qdrant`) is built from them at the end. Run it again after a crash: finished videos are
    not redone. `model` must be reachable from every worker (a shared folder or a URL).
    """
    from tqdm.auto import tqdm

    out = Path(out)
    rows_dir = out / ROWS_DIR
    rows_dir.mkdir(parents=True, exist_ok=True)
    videos, ids = list_videos(source)
    if not videos:
        raise FileNotFoundError(f"{source}: no video files found.")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{source}: two videos have the same id; give each a distinct path.")
    result = CorpusReport(DataReport())
    report = result.report
    keys, todo = {}, []
    for i, (video, video_id) in enumerate(zip(videos, ids, strict=True)):
        try:
            keys[video] = video_key(video)
        except FileNotFoundError:
            report.read()
            report.skip(i, video, "missing", "no such file")
            continue
        if (rows_dir / f"{keys[video]}.parquet").exists():
            result.done_before.append(video)
        else:
            todo.append({"key": keys[video], "video": video, "id": video_id})
    started = time.perf_counter()
    outcomes = {}
    if todo:
        ray = _start_ray(config.address)
        workers, remote_args = _pool(ray, config)
        workers = min(workers, len(todo))  # no idle model copies for the last few videos
        result.workers = workers
        model = str(model) if "://" in str(model) else str(Path(model).resolve())  # a URL, or a shared folder
        with warnings.catch_warnings():
            # Ray 2.60 has no named parameter for an actor's restarts and task retries (its
            # defaults retry forever) and warns that the remote-args route will go in 2.64.
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            dataset = ray.data.from_items(todo, override_num_blocks=len(todo)).map_batches(
                MomentWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
                fn_constructor_kwargs={"model": model, "model_name": model_name,
                                       "segments": dataclasses.asdict(segments), "rows_dir": str(rows_dir.resolve()),
                                       "threads": config.cpus_per_worker, "batch_size": config.batch_size},
                max_restarts=config.retries, max_task_retries=config.retries, **remote_args,
            )  # fmt: skip
        with tqdm(total=len(todo), unit="video", desc="indexing on Ray", disable=not progress) as bar:
            for row in dataset.iter_rows():
                outcomes[str(row["key"])] = row
                bar.update(1)
    result.seconds = time.perf_counter() - started
    files = []
    for i, video in enumerate(videos):
        if video not in keys:
            continue
        report.read()
        path = rows_dir / f"{keys[video]}.parquet"
        outcome = outcomes.get(keys[video])
        if path.exists():
            files.append(path)
            report.used()
            if outcome is not None:
                result.indexed.append(video)
        elif outcome is not None:
            report.skip(i, video, str(outcome["reason"]), str(outcome["detail"]))
        else:
            result.lost.append(video)
            report.skip(i, video, "lost", f"no rows after {config.retries} retries of its task (its worker died)")
    if not files:
        raise ValueError(f"No decodable video in {source}: {report.summary()}")
    index = moment_index(read_rows(files), segments, report, kind, qdrant)
    index.info["corpus"] = {"rows": str(rows_dir), "workers": result.workers, "seconds": round(result.seconds, 2)}
    index.save(out)
    return index, result
