"""Caps on one serving request (`kmm.serving.preprocess.Limits`): hostile requests are refused
before they allocate, with a message naming the cap."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from kmm.serving import preprocess as P
from kmm.serving.client import LocalClient, ServingError
from kmm.serving.export import read_metadata

SMALL = P.Limits(max_batch=2, max_frames=6, max_frame_pixels=64 * 64, max_aspect=2, max_pixels=2 * 8 * 32 * 32,
                 max_text_bytes=10)  # fmt: skip


def _encode_jpeg(h=16, w=16):
    return tf.io.encode_jpeg(tf.zeros((h, w, 3), tf.uint8)).numpy()


def jpeg_claiming(height, width):
    """A valid 16 x 16 JPEG whose SOF0 header claims `height` x `width` (a decompression bomb's header)."""
    data = bytearray(_encode_jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def png_claiming(height, width):
    data = bytearray(tf.io.encode_png(tf.zeros((16, 16, 3), tf.uint8)).numpy())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


def _frames_error(shape, limits=SMALL, num_frames=8):
    fn = tf.function(lambda x: P.fit_clips(P.check_frames(x, limits=limits, num_frames=num_frames), num_frames, 32))
    try:
        fn(tf.zeros(shape, tf.uint8))
    except tf.errors.InvalidArgumentError as error:
        return error.message
    return None


@pytest.mark.parametrize(
    "shape, cap",
    [
        ((3, 1, 16, 16, 3), "max_batch=2"),
        ((1, 7, 16, 16, 3), "max_frames=6"),
        ((1, 1, 65, 64, 3), "max_frame_pixels=4096"),
        ((1, 1, 16, 33, 3), "max_aspect=2"),
        ((1, 1, 33, 16, 3), "max_aspect=2"),
        ((2, 1, 32, 33, 3), "max_pixels=16384"),  # 2 x 8 (the model's frames) x 32 x 33
    ],
)
def test_each_frames_cap_is_an_invalid_argument_naming_it(shape, cap):
    message = _frames_error(shape)
    assert message is not None and cap in message, message


def test_requests_at_the_caps_pass():
    assert _frames_error((2, 6, 32, 32, 3)) is None
    assert _frames_error((1, 1, 16, 32, 3)) is None  # aspect exactly 2
    assert _frames_error((5, 2000, 16, 16, 3), limits=None) is None  # library use: no caps


def test_text_caps():
    fn = tf.function(lambda t: P.check_text(t, limits=SMALL))
    assert fn(tf.constant(["0123456789", "é"])).shape == (2,)
    for text, cap in [(["a", "b", "c"], "max_batch=2"), (["01234567890"], "max_text_bytes=10")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=cap):
            fn(tf.constant(text))


def test_encoded_frames_are_checked_from_their_headers_before_decoding():
    decode = tf.function(lambda x: P.decode_clips(x, 2, 16, limits=SMALL))
    ok = decode(tf.constant([[_encode_jpeg(), tf.io.encode_png(tf.zeros((20, 30, 3), tf.uint8)).numpy()]]))
    assert ok.shape == (1, 2, 16, 16, 3)
    for data, problem in [
        (jpeg_claiming(65500, 65500), "max_frame_pixels=4096"),
        (png_claiming(20000, 20000), "max_frame_pixels=4096"),
        (_encode_jpeg(16, 40), "max_aspect=2"),
        (b"GIF89a" + b"\0" * 40, "must be a JPEG or PNG"),
    ]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=problem):
            decode(tf.constant([[data]]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_batch=2"):
        decode(tf.constant([[_encode_jpeg()]] * 3))


def test_limits_are_validated_and_parsed():
    assert P.Limits.parse(["max_batch=8", "max_aspect=2.5"]) == P.Limits(max_batch=8, max_aspect=2.5)
    for bad, message in [(["max_batch"], "NAME=NUMBER"), (["max_bach=3"], "Unknown limit"),
                         (["max_batch=0"], "positive"), (["max_batch=2.5"], "integer"), (["max_aspect=0.5"], ">= 1")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            P.Limits.parse(bad)


def test_export_records_its_limits_and_the_default_caps_hold(exported):
    _, path, _, _ = exported
    assert read_metadata(path)["limits"] == P.DEFAULT_LIMITS.to_json()
    client = LocalClient(path)
    with pytest.raises(ServingError, match="max_batch=64"):
        client.embed_text(["x"] * 65)


HOSTILE = """
import json, resource, sys, time
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import numpy as np, tensorflow as tf, tensorflow_text  # noqa: F401
loaded = tf.saved_model.load(sys.argv[1])
jpeg = bytes.fromhex(sys.argv[3])
requests = {
    "aspect_25MB": ("embed_video", {"frames": tf.zeros((1, 8, 16, 65536, 3), tf.uint8)}),
    "frames_77MB": ("embed_video", {"frames": tf.zeros((1, 100000, 16, 16, 3), tf.uint8)}),
    "batch": ("embed_video", {"frames": tf.zeros((1000, 1, 16, 16, 3), tf.uint8)}),
    "jpeg_65500x65500": ("classify_jpeg", {"jpeg_frames": tf.constant([[jpeg]]), "text": tf.constant([""])}),
    "text_10MB": ("embed_text", {"text": tf.constant(["a" * 10_000_000])}),
}
results = {}
for name, (signature, inputs) in requests.items():
    start = time.perf_counter()
    try:
        loaded.signatures[signature](**inputs)
        results[name] = ["accepted", time.perf_counter() - start]
    except tf.errors.InvalidArgumentError as error:
        found = [l for l in error.message.splitlines() if "assertion failed" in l]
        results[name] = [(found or [error.message])[0][:300], time.perf_counter() - start]
ok = loaded.signatures["embed_video"](frames=tf.zeros((1, 4, 64, 96, 3), tf.uint8))["embedding"]
results["then_a_normal_request"] = [str(ok.shape), 0]
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"results": results, "peak_rss_mb": int(peak) // 1024}))
"""


@pytest.mark.slow  # a fresh process
def test_hostile_requests_are_refused_quickly_under_a_memory_limit(exported):
    """Without the caps, the first request alone resizes to ~6.5 GB of float32."""
    _, path, _, _ = exported
    limit = 4 * 2**30  # address space; importing TensorFlow and loading the export take ~3 GB of it
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", HOSTILE, str(path), str(limit), jpeg_claiming(65500, 65500).hex()],
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    results = out["results"]
    expected = {"aspect_25MB": "max_aspect=4", "frames_77MB": "max_frames=1024", "batch": "max_batch=64",
                "jpeg_65500x65500": "max_frame_pixels", "text_10MB": "max_text_bytes=4096"}  # fmt: skip
    for name, cap in expected.items():
        message, seconds = results[name]
        assert cap in message, (name, message)
        assert seconds < 5, (name, seconds)
    assert results["then_a_normal_request"][0].startswith("(1, ")
    print("hostile requests:", json.dumps(out))
