import numpy as np
import pytest
import tensorflow as tf

from kmm import specs
from kmm.data import sampling
from kmm.data.manifest import Row, write_manifest
from kmm.data.pipeline import DataConfig, build_dataset, dataset_from_manifest
from kmm.data.video_io import read_frames
from tests.data.clips import ffmpeg, frame_index, index_clip


@pytest.fixture
def clip_dir(tmp_path):
    for i, n in enumerate([12, 20, 31]):
        index_clip(tmp_path / f"c{i}.mp4", num_frames=n, keyint=5)
    return tmp_path


def _rows(clip_dir, extra=()):
    rows = [Row(i, str(clip_dir / f"c{i}.mp4"), f"caption {i}", ["a", "b"][i % 2], "", "train") for i in range(3)]
    return rows + [Row(3 + j, str(p), "bad", "a") for j, p in enumerate(extra)]


def test_tf_data_equals_eager_decoding(clip_dir):
    config = DataConfig(num_frames=5, frame_size=16, batch_size=3)
    ds = build_dataset(_rows(clip_dir), ["a", "b"], config)
    batch = next(iter(ds))
    assert batch[specs.FRAMES].shape == (3, 5, 16, 16, 3) and batch[specs.FRAMES].dtype == np.uint8
    for b, n in enumerate([12, 20, 31]):
        eager = read_frames(clip_dir / f"c{b}.mp4", sampling.uniform(n, 5), 16)
        np.testing.assert_array_equal(batch[specs.FRAMES][b].numpy(), eager)
    assert batch[specs.LABEL_ID].numpy().tolist() == [0, 1, 0]
    assert batch[specs.CAPTION].numpy().tolist() == [b"caption 0", b"caption 1", b"caption 2"]


def test_training_sampling_is_seeded_and_varies_by_epoch(clip_dir):
    config = DataConfig(num_frames=4, frame_size=8, batch_size=3, sampling="random_segment", seed=3)

    def epochs(n):
        ds = build_dataset(_rows(clip_dir), config=config, training=True)
        out = []
        for _ in range(n):
            out.append(
                {
                    int(r): frame_index(f.numpy()).tolist()
                    for b in ds
                    for r, f in zip(b[specs.ROW], b[specs.FRAMES], strict=True)
                }
            )
        return out

    first, second = epochs(2), epochs(2)
    assert first == second, "same seed, same samples"
    assert first[0] != first[1], "a new epoch draws new frames"


def test_a_stream_of_epochs_resumed_at_epoch_k_reads_what_an_uninterrupted_one_read_there(clip_dir):
    config = DataConfig(num_frames=4, frame_size=8, batch_size=2, sampling="random_segment", seed=3)
    tf.random.set_seed(0)  # as the trainer does; the stream must not depend on it

    def epochs(first_epoch, n):
        """n epochs of the stream: 3 clips in batches of 2 are 2 batches an epoch."""
        batches = iter(build_dataset(_rows(clip_dir), config=config, training=True, first_epoch=first_epoch))
        out = []
        for _ in range(n):
            clips = []
            for batch in (next(batches), next(batches)):
                clips += [
                    (int(r), frame_index(f.numpy()).tolist())
                    for r, f in zip(batch[specs.ROW], batch[specs.FRAMES], strict=True)
                ]
            out.append(clips)
        return out

    uninterrupted = epochs(0, 3)
    assert all(sorted(row for row, _ in epoch) == [0, 1, 2] for epoch in uninterrupted), "each clip once an epoch"
    assert uninterrupted[0] != uninterrupted[1] != uninterrupted[2], "each epoch its own order and frames"
    assert epochs(2, 1)[0] == uninterrupted[2], "a fit resumed at epoch 2 reads epoch 2"


def test_bad_files_are_skipped_and_reconciled(clip_dir):
    (clip_dir / "empty.mp4").write_bytes(b"")
    (clip_dir / "text.mp4").write_text("hello " * 100)
    full = clip_dir / "full.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-t", 4, "-c:v", "libx264", "-g", 10,
           "-movflags", "+faststart", full)  # fmt: skip
    (clip_dir / "cut.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    extra = [clip_dir / "missing.mp4", clip_dir / "empty.mp4", clip_dir / "text.mp4", clip_dir / "cut.mp4"]
    manifest = write_manifest(_rows(clip_dir, extra), clip_dir / "m.csv")
    config = DataConfig(num_frames=40, frame_size=8, batch_size=2)
    ds, report = dataset_from_manifest(manifest, config=config)
    rows_seen = sorted(int(r) for b in ds for r in b[specs.ROW])
    assert rows_seen == [0, 1, 2]
    assert report.reconciles() and report.rows_used == 3
    assert {s.reason for s in report.skipped} == {"missing", "empty", "not_a_video", "corrupt"}
    list(ds)  # a second epoch does not double-count the corrupt file
    assert report.reconciles() and len(report.skipped) == 4


def test_strict_raises(clip_dir):
    with pytest.raises(Exception, match="missing"):
        build_dataset(_rows(clip_dir, [clip_dir / "nope.mp4"]), strict=True)


def test_nothing_usable_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="No usable videos among 1 rows"):
        build_dataset([Row(0, str(tmp_path / "nope.mp4"))])


def test_manifest_to_dataset_over_real_sample_videos(tmp_path):
    from kmm.data.samples import fetch_samples

    ds, report = dataset_from_manifest(fetch_samples(tmp_path / "samples"), config=DataConfig(4, 64, batch_size=4))
    batch = next(iter(ds))
    assert batch[specs.FRAMES].shape == (4, 4, 64, 64, 3)
    assert batch[specs.FRAMES].numpy().std() > 10, "real frames have content"
    assert report.rows_read == report.rows_used == 4
    assert "CC-BY 3.0" in (tmp_path / "samples" / "LICENSES.md").read_text()
