"""`analyze_video` with a stand-in client: windows in order, labels weighted by time, errors raised."""

import numpy as np
import pytest

from kmm.data.segments import SegmentConfig
from kmm.moments.analyze import analyze_video
from tests.moments.test_segments import _cuts_clip


class FakeClient:
    """`label_segments` that calls a bright window "light" and a dark one "dark"."""

    name = "fake"

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def signatures(self):
        return {"label_segments": {}}

    def metadata(self):
        return {"labels": ["light", "dark"], "object_labels": ["lamp", "night"]}

    def predict(self, signature, inputs):
        assert signature == "label_segments"
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("the model server went away")
        bright = inputs["frames"].reshape(len(inputs["frames"]), -1).mean(axis=1) > 128  # (b,)
        p = np.stack([bright, ~bright], axis=1).astype("float32") * 0.9 + 0.05
        names = np.where(bright[:, None], [[b"light", b"dark"]], [[b"dark", b"light"]])
        objects = np.where(bright[:, None], [[b"lamp", b"night"]], [[b"night", b"lamp"]])
        return {"action_probabilities": p, "object_probabilities": p, "embedding": p / np.linalg.norm(p, axis=1)[:, None],
                "action_labels": names, "action_scores": np.sort(p)[:, ::-1], "object_labels": objects,
                "object_scores": np.sort(p)[:, ::-1]}  # fmt: skip


def test_windows_labels_and_time_weighted_video_labels(tmp_path):
    path = _cuts_clip(tmp_path / "clip.mp4", [(230, 230, 230), (20, 20, 20)], seconds=6.0)  # 6 s light, 6 s dark
    seen = []
    analysis = analyze_video(FakeClient(), path, SegmentConfig(size=32), batch_size=3, progress=False,
                             on_progress=lambda done, total: seen.append((done, total)), thumbnails=16)  # fmt: skip
    assert [s for s, _ in analysis.shots] == [0.0, 6.0] and analysis.duration == pytest.approx(12.0)
    # 6 s shots: 2.56 s, then 3.44 s (a 0.88 s tail joins the window before it).
    assert [(w.start, round(w.end, 2)) for w in analysis.windows] == [(0, 2.56), (2.56, 6.0), (6.0, 8.56), (8.56, 12.0)]
    assert [w.actions[0][0] for w in analysis.windows] == ["light", "light", "dark", "dark"]
    assert all(w.thumbnail.shape == (16, 16, 3) for w in analysis.windows)
    assert analysis.embeddings().shape == (4, 2)
    (top, score), _ = analysis.video_labels["action"]
    assert top in ("light", "dark") and score == pytest.approx(0.5, abs=0.01)  # half the time each
    assert seen[-1] == (pytest.approx(12.0), pytest.approx(12.0)) and len(seen) == 2  # per batch of 3


def test_a_failing_model_stops_the_job_with_its_error(tmp_path):
    from kmm.data import decoder

    path = _cuts_clip(tmp_path / "clip.mp4", [(230, 230, 230), (20, 20, 20)] * 4, seconds=3.0)
    with pytest.raises(RuntimeError, match="went away"):
        analyze_video(FakeClient(fail_after=1), path, SegmentConfig(size=32), batch_size=1, progress=False)
    # The stream's worker is replaced, not left answering a stream nobody reads.
    assert np.asarray(decoder.read_frames(path, [0], 32)).shape == (1, 32, 32, 3)


def test_a_model_without_label_segments_is_refused(tmp_path):
    class Trained(FakeClient):
        def signatures(self):
            return {"serving_default": {}}

    with pytest.raises(ValueError, match="no `label_segments` signature"):
        analyze_video(Trained(), tmp_path / "any.mp4")
