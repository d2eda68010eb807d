import numpy as np
import pytest

from kmm.data import sampling
from kmm.data.video_io import probe, read_frames
from tests.data.clips import frame_index, index_clip


def test_uniform_is_segment_centres():
    assert sampling.uniform(100, 4).tolist() == [12, 37, 62, 87]
    assert sampling.uniform(8, 8).tolist() == list(range(8))


def test_random_segment_stays_in_its_segment():
    rng = np.random.default_rng(0)
    for _ in range(200):
        idx = sampling.random_segment(50, 5, rng)
        assert all(10 * k <= i < 10 * (k + 1) for k, i in enumerate(idx))
    draws = {tuple(sampling.random_segment(50, 5, rng)) for _ in range(20)}
    assert len(draws) > 1, "random_segment must vary between draws"


def test_dense_stride_and_random_start():
    assert sampling.dense(100, 4, stride=3).tolist() == [45, 48, 51, 54]
    starts = {sampling.dense(100, 4, stride=3, rng=np.random.default_rng(s))[0] for s in range(30)}
    assert len(starts) > 5 and max(starts) <= 100 - 10


@pytest.mark.parametrize("strategy", sampling.STRATEGIES)
def test_short_clips_repeat_frames(strategy):
    idx = sampling.sample_indices(3, 8, strategy, rng=np.random.default_rng(0))
    assert len(idx) == 8 and idx.min() >= 0 and idx.max() <= 2 and (np.diff(idx) >= 0).all()
    assert sampling.sample_indices(1, 4, strategy, rng=np.random.default_rng(0)).tolist() == [0, 0, 0, 0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown sampling strategy"):
        sampling.sample_indices(10, 2, "every_other")
    with pytest.raises(ValueError, match="at least 1 frame"):
        sampling.uniform(0, 4)


@pytest.mark.parametrize("strategy", sampling.STRATEGIES)
def test_decoded_content_matches_the_sampled_indices(tmp_path, strategy):
    path = index_clip(tmp_path / "idx.mp4", num_frames=40)
    info = probe(path)
    assert info.num_frames == 40
    idx = sampling.sample_indices(40, 6, strategy, rng=np.random.default_rng(1))
    frames = read_frames(path, idx, info=info)
    assert frame_index(frames).tolist() == idx.tolist()
