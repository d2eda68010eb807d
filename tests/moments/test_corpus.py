"""`kmm index --ray`: the corpus job on a local Ray cluster gives the single-process index,
survives a killed worker and an interrupted run, and lists what it cannot index."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kmm.moments.corpus import CorpusConfig, index_corpus, video_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster in this process (2 CPUs), shared by the module's jobs."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(reel, tmp_path_factory):
    """A folder of real videos (the reel's three parts, one of them twice under another name in
    a subfolder) and a file that is not a video."""
    root = tmp_path_factory.mktemp("corpus")
    for single, *_ in reel[1]:
        shutil.copyfile(single, root / single.name)
    (root / "more").mkdir()
    shutil.copyfile(reel[1][0][0], root / "more" / "again.mp4")
    (root / "broken.mp4").write_bytes(b"not a video at all")
    return root


@pytest.fixture(scope="module")
def single_process(corpus, reel_export):
    """What `kmm index` makes in one process, with its skip report."""
    from kmm.data.report import DataReport
    from kmm.moments.index import build_moment_index
    from kmm.serving.client import LocalClient
    from kmm.serving.index import find_videos

    videos = find_videos(corpus)
    report = DataReport()
    index = build_moment_index(LocalClient(reel_export), videos, [str(v.relative_to(corpus)) for v in videos], report=report,
                               progress=False)  # fmt: skip
    return index, report


def vectors(index):
    return np.stack([index.index.index.reconstruct(i) for i in range(len(index))])


def assert_same_index(index, expected):
    assert index.ids == expected.ids and len(set(index.ids)) == len(index.ids)
    assert index.videos == expected.videos
    assert (index.starts, index.ends, index.labels) == (expected.starts, expected.ends, expected.labels)
    np.testing.assert_allclose(vectors(index), vectors(expected), atol=1e-5)


def test_the_ray_index_equals_the_single_process_index(ray_cluster, corpus, reel_export, single_process, tmp_path,
                                                       capsys):  # fmt: skip
    from kmm.cli import main
    from kmm.serving.index import VideoIndex

    expected, expected_report = single_process
    assert [s.video for s in expected_report.skipped] == [str(corpus / "broken.mp4")]
    assert main(["index", str(corpus), "--out", str(tmp_path / "idx"), "--ray", "--workers", "2",
                 "--model", str(reel_export)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "4 videos indexed now, 0 already indexed before" in out
    assert f"skipped {corpus / 'broken.mp4'}: " in out  # listed with its reason, as `kmm index` does
    index = VideoIndex.load(tmp_path / "idx")
    assert_same_index(index, expected)
    assert len(list((tmp_path / "idx" / "rows").glob("*.parquet"))) == 4
    # The search answers as the single-process index's does.
    from kmm.moments.index import search_moments
    from kmm.serving.client import LocalClient

    query = LocalClient(reel_export).embed_text(["a bird pecking at seeds on the ground"])
    assert search_moments(index, query, 3) == search_moments(expected, query, 3)


def _map_workers():
    """Pids of this machine's Ray Data actor processes (their process title starts `ray::MapWorker`)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::MapWorker"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_a_killed_worker_is_retried_and_nothing_is_lost(ray_cluster, corpus, reel_export, single_process, tmp_path):
    out = tmp_path / "idx"
    done = {}
    job = threading.Thread(target=lambda: done.update(result=index_corpus(
        corpus, out, reel_export, config=CorpusConfig(workers=2), progress=False)))  # fmt: skip
    job.start()
    deadline = time.monotonic() + 300
    while not list((out / "rows").glob("*.parquet")):  # the first video is done: the workers are busy
        assert time.monotonic() < deadline and job.is_alive()
        time.sleep(0.05)
    victims = _map_workers()
    assert victims, "no Ray worker process found"
    os.kill(victims[0], signal.SIGKILL)
    job.join(timeout=600)
    index, result = done["result"]
    assert result.lost == [] and len(result.indexed) == 4
    assert [s.video for s in result.report.skipped] == [str(corpus / "broken.mp4")]
    assert_same_index(index, single_process[0])
    assert victims[0] not in _map_workers()  # it really died; the job finished on a restarted one


def test_an_interrupted_run_resumes_without_redoing_or_duplicating(ray_cluster, corpus, reel_export, single_process,
                                                                   tmp_path):  # fmt: skip
    out = tmp_path / "idx"
    command = [sys.executable, "-m", "kmm.cli", "index", str(corpus), "--out", str(out), "--ray", "--workers", "1",
               "--model", str(reel_export)]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": "local"}  # its own cluster, as a user's separate run would have
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list((out / "rows").glob("*.parquet"))) < 1:
        assert time.monotonic() < deadline and job.poll() is None, job.stdout.read().decode()[-3000:]
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # a crash: kmm and its Ray cluster
    job.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.parquet")}
    assert 1 <= len(finished) < 4
    index, result = index_corpus(corpus, out, reel_export, config=CorpusConfig(workers=2), progress=False)
    assert len(result.done_before) == len(finished) and len(result.indexed) == 4 - len(finished)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "rows").glob("*.parquet") if p.name in finished} == finished
    assert_same_index(index, single_process[0])  # each window once
    again, second = index_corpus(corpus, out, reel_export, progress=False)  # nothing left to do
    assert second.indexed == [] and len(second.done_before) == 4
    assert_same_index(again, single_process[0])


def test_qdrant_upserts_are_idempotent(ray_cluster, corpus, reel_export, single_process, tmp_path):
    from kmm.moments.index import search_moments
    from kmm.serving.client import LocalClient

    rows = len(single_process[0])
    for _ in range(2):  # the same job twice into one collection: the same points, not twice as many
        index, _ = index_corpus(corpus, tmp_path / "idx", reel_export, qdrant=tmp_path / "qdrant", progress=False)
        assert len(index.index) == rows
        index.index.close()
    from kmm.serving.index import VideoIndex

    loaded = VideoIndex.load(tmp_path / "idx")
    query = LocalClient(reel_export).embed_text(["a man in a bow tie chatting in a vehicle"])
    (hits,), (expected,) = search_moments(loaded, query, 3), search_moments(single_process[0], query, 3)
    assert [(h["item"], h["start"], h["end"], h["labels"]) for h in hits] == [
        (h["item"], h["start"], h["end"], h["labels"]) for h in expected
    ]
    np.testing.assert_allclose([h["score"] for h in hits], [h["score"] for h in expected], atol=1e-5)


def test_keys_change_with_the_file_and_bad_sources_are_named(tmp_path):
    video = tmp_path / "a.mp4"
    video.write_bytes(b"x" * 10)
    key = video_key(video)
    assert video_key(video) == key
    video.write_bytes(b"y" * 11)
    assert video_key(video) != key
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        index_corpus(tmp_path / "no-such-folder", tmp_path / "out", "unused")
