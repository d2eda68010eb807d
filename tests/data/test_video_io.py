import numpy as np
import pytest
from PIL import Image

from kmm.data.video_io import VideoDecodeError, fit_frame, plan_reads, probe, read_frames
from tests.data.clips import ffmpeg, frame_index, index_clip, index_frames, write_cv2


def test_keyframes_and_seek_plan(tmp_path):
    info = probe(index_clip(tmp_path / "k.mp4", num_frames=60, keyint=20))
    assert info.keyframes == (0, 20, 40)
    # Near indices are decoded forward; a far one after a keyframe is sought.
    plan = plan_reads([1, 3, 45], info.keyframes)
    assert plan == [(1, "grab"), (3, "grab"), (45, "seek")]
    # One keyframe only (short clips): never seek.
    assert {a for _, a in plan_reads([5, 30, 59], (0,))} == {"grab"}


def test_any_order_and_repeats(tmp_path):
    path = index_clip(tmp_path / "k.mp4", num_frames=30, keyint=5)
    idx = [29, 0, 0, 17, 3, 29]
    assert frame_index(read_frames(path, idx)).tolist() == idx


def test_fit_frame_modes():
    frame = np.zeros((30, 60, 3), np.uint8)
    frame[:, 15:45] = 255  # the centre square
    assert fit_frame(frame, 16, "crop").shape == (16, 16, 3)
    assert fit_frame(frame, 16, "crop").min() == 255  # centre crop keeps only the white middle
    assert fit_frame(frame, 16, "resize").min() == 0
    with pytest.raises(ValueError, match="Unknown resize mode"):
        fit_frame(frame, 16, "pad")


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p, "missing"),
        (lambda p: p.write_bytes(b"") and p, "empty"),
        (lambda p: p.write_bytes(b"this is not a video, just text " * 50) and p, "not_a_video"),
    ],
    ids=["missing", "zero-byte", "non-video-bytes"],
)
def test_unusable_files_name_the_reason(tmp_path, make, reason):
    path = tmp_path / "clip.mp4"
    make(path)
    with pytest.raises(VideoDecodeError) as e:
        read_frames(path, [0])
    assert e.value.reason == reason and str(path) in str(e.value)


def test_truncated_stream_is_corrupt(tmp_path):
    full = tmp_path / "full.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", 4, "-c:v", "libx264", "-g", 10,
           "-movflags", "+faststart", full)  # fmt: skip
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    info = probe(cut)
    with pytest.raises(VideoDecodeError) as e:
        read_frames(cut, range(info.num_frames), info=info)
    assert e.value.reason == "corrupt"


def test_huge_resolution_is_downscaled_per_frame(tmp_path):
    path = tmp_path / "4k.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=5", "-frames:v", 3, "-c:v", "libx264", path)
    frames = read_frames(path, [0, 2, 2], size=64)
    assert frames.shape == (3, 64, 64, 3)


def test_odd_sizes_grayscale_and_alpha(tmp_path):
    odd = write_cv2(tmp_path / "odd.avi", index_frames(5, h=17, w=33), fourcc="MJPG")
    assert read_frames(odd, [0, 4], size=8).shape == (2, 8, 8, 3)
    gray = tmp_path / "gray.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5", "-frames:v", 4, "-pix_fmt", "gray", "-c:v", "ffv1", gray)
    out = read_frames(gray, [0, 3])
    assert out.shape == (2, 48, 64, 3) and (out[..., 0] == out[..., 1]).all()
    alpha = tmp_path / "alpha.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5", "-frames:v", 3, "-pix_fmt", "rgba", "-c:v", "png", alpha)
    assert read_frames(alpha, [0, 2]).shape == (2, 48, 64, 3)


def test_gif_and_single_frame(tmp_path):
    frames = index_frames(6, h=32, w=32)
    gif = tmp_path / "a.gif"
    Image.fromarray(frames[0]).save(
        gif, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]], duration=100
    )
    info = probe(gif)
    assert info.num_frames == 6
    assert frame_index(read_frames(gif, [0, 5, 2])).tolist() == [0, 5, 2]
    one = write_cv2(tmp_path / "one.avi", index_frames(1), fourcc="MJPG")
    assert probe(one).num_frames == 1
    assert read_frames(one, [0, 0, 0]).shape[0] == 3


def test_seek_cost_accounts_for_opencv_backing_off_16_frames():
    # Target 205: OpenCV seeks to the keyframe <= 189, i.e. 100, so a seek decodes 105
    # frames; decoding forward from 151 decodes 54: grab. Target 230 seeks from 200.
    keys = (0, 100, 200, 400)
    assert plan_reads([150, 205], keys) == [(150, "seek"), (205, "grab")]
    assert plan_reads([150, 230], keys) == [(150, "seek"), (230, "seek")]
    # A seek just past a keyframe still backs off to the previous one: grab instead.
    # (105 - 16 = 89 lands on keyframe 0, so seeking costs more than reading from the start.)
    assert plan_reads([105], keys) == [(105, "grab")]


HOSTILE_DECODE = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
from kmm.data.video_io import VideoDecodeError, read_frames
out = {}
for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        read_frames(path, [0], size=32)
        out[path] = ["decoded", time.perf_counter() - start]
    except VideoDecodeError as e:
        out[path] = [e.reason, time.perf_counter() - start]
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"results": out, "peak_rss_mb": int(peak) // 1024}))
"""


def _gif_claiming(path, width, height):
    """A valid 16 x 16 GIF whose logical screen claims `width` x `height` (a few hundred bytes)."""
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path, format="GIF")
    data = bytearray(path.read_bytes())
    data[6:10] = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def test_huge_canvases_and_elongated_frames_are_refused_before_decoding(tmp_path):
    """In a subprocess under a 2 GiB address-space limit: each file is refused, quickly."""
    import json
    import subprocess
    import sys

    bomb = _gif_claiming(tmp_path / "bomb.gif", 16000, 16000)  # would decode to 768 MB a frame
    strip = tmp_path / "strip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=16x1024:rate=5", "-frames:v", 2, "-c:v", "libx264", strip)
    run = subprocess.run([sys.executable, "-c", HOSTILE_DECODE, str(bomb), str(strip)], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["results"][str(bomb)][0] == "too_large" and out["results"][str(strip)][0] == "aspect"
    assert all(seconds < 2 for _, seconds in out["results"].values()), out
    print("hostile videos:", json.dumps(out))


def test_decoding_past_its_deadline_is_a_timeout(tmp_path):
    clip = write_cv2(tmp_path / "clip.avi", index_frames(20), fourcc="MJPG")
    with pytest.raises(VideoDecodeError) as e:
        read_frames(clip, [0, 19], deadline_s=0.0)
    assert e.value.reason == "timeout" and "over 0 s" in str(e.value)
    assert read_frames(clip, [0, 19]).shape[0] == 2  # the default deadline is ample
