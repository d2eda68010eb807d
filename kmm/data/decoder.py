"""Decoding in separate processes: a hung or crashing decoder costs one clip, not the job.

`probe` and `read_frames` here have the signatures of `kmm.data.video_io`'s and the same
results, but run in a worker process (`python -m kmm.data.decoder`) under an address-space
limit (`DECODER_MEMORY_BYTES`). The caller waits at most the deadline plus `GRACE_S`; a
worker past it is killed (reason `timeout`), one that dies is replaced (reason `crashed`).
`video_io`'s own deadline check between frames still ends most slow files inside the
worker; this one also ends a single demuxer or decoder call that never returns.

The worker speaks JSON and raw bytes, never pickle: a video that took over a worker
could otherwise send the parent a pickle that runs code.

Example:

    >>> from kmm.data.decoder import read_frames
    >>> read_frames("clip.mp4", [0, 4, 8], size=112).shape  # doctest: +SKIP
    (3, 112, 112, 3)
"""

import atexit
import concurrent.futures
import dataclasses
import functools
import json
import os
import select
import subprocess
import sys
import threading
import time

import numpy as np

from kmm.data import video_io
from kmm.data.video_io import DECODE_DEADLINE_S, VideoDecodeError

DECODER_MEMORY_BYTES = 4 << 30  # address space of one worker: a decoder that asks for more fails
GRACE_S = 10.0  # on top of the deadline: the worker's start-up and the transfer of the frames
PROBE_DEADLINE_S = 60.0  # demuxing one file's packets in `probe`
MAX_HEADER_BYTES = 16 << 20  # a probe's answer lists every keyframe


def probe(path, deadline_s=PROBE_DEADLINE_S):
    """`kmm.data.video_io.probe` in a worker process; `timeout` / `crashed` as `read_frames`."""
    path = os.fspath(path)
    try:
        stat = os.stat(path)
    except OSError:
        return video_io.probe(path)  # missing: the same error, with no process involved
    return _probe_cached(path, stat.st_mtime_ns, stat.st_size, deadline_s)


@functools.lru_cache(maxsize=4096)
def _probe_cached(path, _mtime, size, deadline_s):
    if size == 0:
        return video_io.probe(path)  # empty (or not a regular file): refused before any demuxing
    info = _pool().run({"op": "probe", "path": path}, deadline_s + GRACE_S, max_bytes=0)
    return video_io.VideoInfo.from_dict(info)


def read_frames(path, indices, size=None, mode="crop", info=None, deadline_s=DECODE_DEADLINE_S):
    """`kmm.data.video_io.read_frames` in a worker process (see the module docstring).

    Raises:
        VideoDecodeError: as `video_io.read_frames`, and with reason `timeout` when the
            worker does not answer in `deadline_s + GRACE_S`, `crashed` when it dies.
    """
    info = info or probe(path)
    indices = video_io.checked_indices(path, indices, info)
    request = {
        "op": "read_frames",
        "path": os.fspath(path),
        "indices": indices.tolist(),
        "size": size,
        "mode": mode,
        "info": dataclasses.asdict(info),
        "deadline_s": deadline_s,
    }
    pixels = size * size if size else (info.height * info.width or video_io.MAX_FRAME_PIXELS)
    expected = indices.size * pixels * 3
    return _pool().run(request, deadline_s + GRACE_S, max_bytes=expected)


def stream_windows(path, config, info=None, stats=None):
    """`kmm.data.shot_stream.decode_windows` in a worker process: yields `Window`s.

    Each window must arrive within `config.window_deadline_s + GRACE_S` (a deadline per
    window, not per file, so a two-hour video is not cut short). `stats` receives the
    worker's closing counts (shots, gaps, frames, where decoding stopped).
    """
    from kmm.data.segments import Window

    info = info or probe(path)
    request = {"op": "windows", "path": os.fspath(path), "config": config.to_json(), "info": dataclasses.asdict(info)}
    expected = config.frames * config.size * config.size * 3
    for header, frames in _pool().stream(request, config.window_deadline_s + GRACE_S, expected):
        if frames is None:
            if stats is not None:
                stats.update(header["done"])
            return
        w = header["window"]
        yield Window(w["start"], w["end"], w["shot"], frames)


class _Worker:
    answered = True  # whether the last request's answer was read whole (the worker can take another)

    def __init__(self):
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)  # kmm, as imported here
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kmm.data.decoder", str(DECODER_MEMORY_BYTES)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )  # fmt: skip

    def run(self, request, wait_s, max_bytes):
        """The worker's answer to `request`: frames or a probe's fields, or the
        `VideoDecodeError` it raised. Frames larger than `max_bytes` are refused unread."""
        self.send(request)
        header, frames = self.receive(request["path"], wait_s, max_bytes)
        if "info" in header:
            return header["info"]
        return frames

    def send(self, request):
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
        except OSError as e:  # it died between requests
            raise VideoDecodeError(request["path"], "crashed", f"the decoder process is gone ({e})") from e
        self.answered, self.buffer = False, bytearray()

    def receive(self, path, wait_s, max_bytes, last=True):
        """One message: `(header, frames or None)`; raises the worker's `VideoDecodeError`.

        `last`: whether this message ends the answer (a stream sends several).
        """
        self.wait_s, stop = wait_s, time.monotonic() + wait_s
        while b"\n" not in self.buffer:
            self._fill(stop, path, MAX_HEADER_BYTES)
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        header = json.loads(line)
        if "error" in header:
            self.answered = not self.buffer
            raise VideoDecodeError(path, str(header["reason"]), str(header["error"]))
        if "shape" not in header:
            self.answered = last and not self.buffer
            return header, None
        shape = tuple(int(n) for n in header["shape"])
        size = int(np.prod(shape))
        if size > max_bytes:
            raise VideoDecodeError(path, "too_large", f"the decoder answered {shape}, over {max_bytes} bytes")
        while len(self.buffer) < size:
            self._fill(stop, path, size)
        frames = np.frombuffer(bytes(self.buffer[:size]), np.uint8).reshape(shape)
        self.buffer = self.buffer[size:]
        self.answered = last and not self.buffer
        return header, frames

    def _fill(self, stop, path, limit):
        """Reads what the worker has sent (up to `limit` bytes buffered) before `stop`."""
        left, fd = stop - time.monotonic(), self.process.stdout.fileno()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise VideoDecodeError(path, "timeout", f"the decoder did not answer in {self.wait_s:g} s")
        if len(self.buffer) >= limit:
            raise VideoDecodeError(path, "crashed", f"the decoder sent over {limit} bytes of header")
        data = os.read(fd, min(1 << 20, limit - len(self.buffer)))
        if not data:
            code = self.process.wait()
            raise VideoDecodeError(path, "crashed", f"the decoder process died (exit code {code})")
        self.buffer += data

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()


class _Pool:
    """Up to `size` workers, each serving one request at a time, reused between requests."""

    def __init__(self, size):
        self.size, self.idle, self.started = size, [], 0
        self.lock = threading.Condition()

    def run(self, request, wait_s, max_bytes):
        worker = self._take()
        try:
            return worker.run(request, wait_s, max_bytes)
        finally:  # a worker that did not give a whole answer is replaced
            self._give_back(worker, worker.answered)

    def stream(self, request, wait_s, max_bytes):
        """Yields `(header, frames)` messages until one without frames; each within `wait_s`.

        A consumer that stops early leaves the answer unread: the worker is then replaced.
        """
        worker = self._take()
        try:
            worker.send(request)
            while True:
                header, frames = worker.receive(request["path"], wait_s, max_bytes, last=False)
                if frames is None:
                    worker.answered = not worker.buffer
                    yield header, None
                    return
                yield header, frames
        finally:
            self._give_back(worker, worker.answered)

    def _take(self):
        with self.lock:
            while True:
                while not self.idle and self.started >= self.size:
                    self.lock.wait()
                if not self.idle:
                    self.started += 1
                    break
                worker = self.idle.pop()
                if worker.process.poll() is None:
                    return worker
                worker.kill()  # died while idle (killed from outside, out of memory): replace it
                self.started -= 1
        try:
            return _Worker()
        except BaseException:
            self._give_back(None, healthy=False)
            raise

    def _give_back(self, worker, healthy):
        if not healthy and worker is not None:
            worker.kill()
        with self.lock:
            if healthy:
                self.idle.append(worker)
            else:
                self.started -= 1
            self.lock.notify()

    def close(self):
        with self.lock:
            for worker in self.idle:
                worker.kill()
            self.started -= len(self.idle)
            self.idle = []


_POOLS = {}


def _pool():
    """This process's pool (a forked child makes its own)."""
    pid = os.getpid()
    if pid not in _POOLS:
        _POOLS[pid] = _Pool(max(2, os.cpu_count() or 2))
        atexit.register(_POOLS[pid].close)
    return _POOLS[pid]


def _serve(memory_bytes):
    """The worker: one JSON request a line on stdin; a JSON header line, then the frames' bytes."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    except (ImportError, ValueError, OSError):  # not Linux, or a lower hard limit already
        pass
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        request = json.loads(line)
        try:
            if request["op"] == "probe":
                info = dataclasses.asdict(video_io.probe(request["path"]))
                out.write(json.dumps({"info": info}).encode() + b"\n")
            elif request["op"] == "windows":
                _windows(request, out)
            else:
                frames = _read(request)
                out.write(json.dumps({"shape": list(frames.shape)}).encode() + b"\n")
                out.write(frames.tobytes())
        except VideoDecodeError as e:
            out.write(json.dumps({"error": e.detail, "reason": e.reason}).encode() + b"\n")
        except MemoryError:
            out.write(
                json.dumps({"error": f"over the decoder's {memory_bytes} bytes", "reason": "too_large"}).encode()
                + b"\n"
            )
        except Exception as e:  # noqa: BLE001 - any other failure is this file's, not the job's
            out.write(json.dumps({"error": f"{type(e).__name__}: {e}", "reason": "corrupt"}).encode() + b"\n")
        out.flush()


def _windows(request, out):
    from kmm.data.segments import SegmentConfig
    from kmm.data.shot_stream import decode_windows

    stats = {}
    config = SegmentConfig(**request["config"])
    info = video_io.VideoInfo.from_dict(request["info"])
    for window in decode_windows(request["path"], config, info=info, stats=stats):
        frames = np.ascontiguousarray(window.frames, np.uint8)
        out.write(json.dumps({"window": window.describe(), "shape": list(frames.shape)}).encode() + b"\n")
        out.write(frames.tobytes())
        out.flush()
    out.write(json.dumps({"done": stats}).encode() + b"\n")


def _read(request):
    info = video_io.VideoInfo.from_dict(request["info"])
    frames = video_io.read_frames(request["path"], request["indices"], request["size"], request["mode"], info=info,
                                  deadline_s=request["deadline_s"])  # fmt: skip
    return np.ascontiguousarray(frames, np.uint8)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))


def probe_rows(rows, report, strict=False, workers=4):
    """Probes every row's video; returns `[(row, VideoInfo)]` for the usable ones."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(_safe_probe, [r.video for r in rows]))
    usable = []
    for row, (info, error) in zip(rows, results, strict=True):
        if error is not None:
            if strict:
                raise error
            report.skip(row.index, row.video, error.reason, error.detail)
        else:
            usable.append((row, info))
    return usable


def _safe_probe(path):
    try:
        return probe(path), None
    except VideoDecodeError as e:
        return None, e
