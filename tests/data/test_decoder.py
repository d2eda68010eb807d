"""Decoding in worker processes: same results as in-process, and a decoder call that never
returns (opening a FIFO blocks in the kernel, where no deadline check can run) or a worker
that dies costs one clip, in bounded time, and the next clip decodes."""

import dataclasses
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kmm.data import decoder, video_io
from kmm.data.video_io import VideoDecodeError
from tests.data.clips import index_clip


def _decoder_children():
    """Pids of this process's decoder workers."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"kmm.data.decoder" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


@pytest.fixture
def clip(tmp_path):
    return index_clip(tmp_path / "clip.mp4", num_frames=20, keyint=5)


@pytest.fixture
def hanging(tmp_path, clip, monkeypatch):
    """A FIFO no one writes to, with the probe of a real clip: the worker's decoder blocks opening it."""
    fifo = tmp_path / "never.mp4"
    os.mkfifo(fifo)
    monkeypatch.setattr(decoder, "GRACE_S", 0.5)
    return fifo, dataclasses.replace(video_io.probe(clip), path=str(fifo))


def test_probe_and_frames_equal_in_process_decoding(clip):
    assert decoder.probe(clip) == video_io.probe(clip)
    indices = [19, 0, 7, 7]
    np.testing.assert_array_equal(decoder.read_frames(clip, indices, 24), video_io.read_frames(clip, indices, 24))
    with pytest.raises(VideoDecodeError) as e:
        decoder.probe(Path(clip).with_name("missing.mp4"))
    assert e.value.reason == "missing"
    with pytest.raises(ValueError, match=r"frame indices must be in \[0, 20\)"):
        decoder.read_frames(clip, [20])


def test_a_decoder_call_that_never_returns_is_killed_and_the_next_clip_decodes(clip, hanging):
    fifo, info = hanging
    start = time.monotonic()
    with pytest.raises(VideoDecodeError) as e:
        decoder.read_frames(fifo, [0, 5], 24, info=info, deadline_s=0.5)
    assert e.value.reason == "timeout" and "did not answer in 1 s" in str(e.value)
    assert time.monotonic() - start < 5
    assert decoder.read_frames(clip, [0, 5], 24).shape == (2, 24, 24, 3)
    idle = {worker.process.pid for worker in decoder._pool().idle}
    assert set(_decoder_children()) == idle  # every worker left is an idle one: the stuck one is gone


def test_a_worker_that_dies_is_reported_as_crashed_and_replaced(clip, hanging):
    fifo, info = hanging
    decoder.read_frames(clip, [0], 24)  # a worker is up

    def kill_the_workers():
        time.sleep(0.3)
        for pid in _decoder_children():
            os.kill(pid, 9)

    threading.Thread(target=kill_the_workers).start()
    with pytest.raises(VideoDecodeError) as e:
        decoder.read_frames(fifo, [0], 24, info=info, deadline_s=30)
    assert e.value.reason == "crashed" and "exit code -9" in str(e.value)
    assert decoder.read_frames(clip, [3], 24).shape == (1, 24, 24, 3)
    for pid in _decoder_children():  # idle workers killed from outside are replaced unnoticed
        os.kill(pid, 9)
    time.sleep(0.2)
    np.testing.assert_array_equal(decoder.read_frames(clip, [3], 24), video_io.read_frames(clip, [3], 24))


def test_an_answer_larger_than_asked_for_is_refused_unread_and_the_worker_replaced(clip):
    info = video_io.probe(clip)
    request = {"op": "read_frames", "path": str(clip), "indices": [0, 1], "size": 24, "mode": "crop",
               "info": dataclasses.asdict(info), "deadline_s": 30}  # fmt: skip
    with pytest.raises(VideoDecodeError) as e:  # as if a worker taken over by a file sent more
        decoder._pool().run(request, 30, max_bytes=24 * 24 * 3)
    assert e.value.reason == "too_large" and "over 1728 bytes" in str(e.value)
    np.testing.assert_array_equal(decoder.read_frames(clip, [5], 24), video_io.read_frames(clip, [5], 24))
