"""Sharded TFRecord data: round trip, in-graph sampling, per-worker sharding, bad shards, CLI."""

import json

import numpy as np
import pytest
import tensorflow as tf

from kmm import specs
from kmm.cli import main
from kmm.data import sampling
from kmm.data import shards as S
from kmm.data.manifest import Row, write_manifest
from kmm.data.pipeline import DataConfig, build_dataset, dataset_from_manifest
from tests.data.clips import frame_index, index_clip

LENGTHS = [12, 20, 31, 9, 15, 24, 18, 27]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """8 train clips (frame i has grey level STEP * i), 2 val clips, 1 broken file."""
    root = tmp_path_factory.mktemp("shard_src")
    rows = []
    for i, n in enumerate(LENGTHS + [10, 14]):
        index_clip(root / f"c{i}.mp4", num_frames=n, keyint=5)
        split = "train" if i < len(LENGTHS) else "val"
        rows.append(Row(i, str(root / f"c{i}.mp4"), f"caption {i}" if i != 3 else "", "ab"[i % 2], f"t{i}", split))
    (root / "broken.mp4").write_bytes(b"not a video")
    rows.append(Row(len(rows), str(root / "broken.mp4"), "x", "a", "", "train"))
    return write_manifest(rows, root / "manifest.csv")


@pytest.fixture(scope="module")
def folder(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    report = S.write_shards(manifest, out, num_shards=4, frames=6, size=16, progress=False)
    assert report.reconciles() and report.rows_used == 10 and [s.reason for s in report.skipped] == ["not_a_video"]
    return out


def _all(ds):
    out = {}
    for batch in ds:
        for i, row in enumerate(batch[specs.ROW].numpy()):
            out[int(row)] = {k: batch[k][i].numpy() for k in (specs.FRAMES, specs.TEXT, specs.CAPTION, specs.LABEL_ID)}
    return out


def test_round_trip_equals_the_file_pipeline(manifest, folder):
    config = DataConfig(num_frames=6, frame_size=16, batch_size=3)
    from_files, _ = dataset_from_manifest(manifest, ["a", "b"], config, split="train")
    from_shards, report = S.shard_dataset(folder, ["a", "b"], config, split="train")
    files, shards = _all(from_files), _all(from_shards)
    assert sorted(shards) == sorted(files) == list(range(8)) and report.reconciles()
    for row, expected in files.items():
        got = shards[row]
        for key in (specs.TEXT, specs.CAPTION, specs.LABEL_ID):
            assert got[key] == expected[key], (row, key)
        # JPEG (quality 95) of flat grey frames: the same frames, within a grey level or two.
        assert np.abs(got[specs.FRAMES].astype(int) - expected[specs.FRAMES]).max() <= 2
        assert frame_index(got[specs.FRAMES]).tolist() == sampling.uniform(LENGTHS[row], 6).tolist()


def test_a_folder_is_read_like_a_manifest_and_resizes_to_the_model(folder):
    config = DataConfig(num_frames=3, frame_size=24, batch_size=4)
    ds, report = dataset_from_manifest(folder, ["a", "b"], config, split="train", require=("caption",))
    rows = _all(ds)
    assert 3 not in rows and len(rows) == 7  # row 3 has no caption: skipped and listed
    assert [(s.row, s.reason) for s in report.skipped] == [(3, "empty_caption")] and report.reconciles()
    assert next(iter(rows.values()))[specs.FRAMES].shape == (3, 24, 24, 3)


def test_a_stream_of_epochs_from_shards_resumes_where_it_was(folder):
    config = DataConfig(num_frames=3, frame_size=16, batch_size=4, sampling="random_segment", seed=5)
    tf.random.set_seed(0)  # as the trainer does; the stream must not depend on it

    def epochs(first_epoch, n):
        """n epochs of the stream: 8 train clips in batches of 4 are 2 batches an epoch."""
        ds, _ = S.shard_dataset(folder, ["a", "b"], config, training=True, split="train", first_epoch=first_epoch)
        batches, out = iter(ds), []
        for _ in range(n):
            clips = []
            for batch in (next(batches), next(batches)):
                rows, frames = batch[specs.ROW].numpy(), batch[specs.FRAMES].numpy()
                clips += [(int(r), frame_index(f).tolist()) for r, f in zip(rows, frames, strict=True)]
            out.append(clips)
        return out

    uninterrupted = epochs(0, 3)
    assert all(sorted(row for row, _ in epoch) == list(range(8)) for epoch in uninterrupted), "each clip once an epoch"
    assert uninterrupted[0] != uninterrupted[1] != uninterrupted[2], "each epoch its own order and frames"
    assert [r for r, _ in uninterrupted[0]] != [r for r, _ in uninterrupted[1]], "reshuffled, not only resampled"
    assert epochs(2, 1)[0] == uninterrupted[2], "a fit resumed at epoch 2 reads epoch 2"


@pytest.mark.parametrize(("length", "k"), [(1, 4), (5, 5), (6, 3), (31, 8), (100, 16), (7, 12)])
def test_graph_sampling_matches_numpy(length, k):
    uniform = S._graph_indices(tf.constant(length, tf.int64), k, "uniform", None, 2).numpy()
    assert uniform.tolist() == sampling.uniform(length, k).tolist()
    dense = S._graph_indices(tf.constant(length, tf.int64), k, "dense", None, 2).numpy()
    assert dense.tolist() == sampling.dense(length, k, 2).tolist()
    edges = np.linspace(0, length, k + 1)
    for seed in range(5):
        drawn = S._graph_indices(tf.constant(length, tf.int64), k, "random_segment", [seed, 1], 2).numpy()
        low, high = np.floor(edges[:-1]), np.maximum(np.ceil(edges[1:]), np.floor(edges[:-1]) + 1)
        assert ((drawn >= np.minimum(low, length - 1)) & (drawn < high)).all()


def test_training_draws_new_frames_each_epoch_with_a_seed(folder):
    config = DataConfig(num_frames=3, frame_size=16, batch_size=4, sampling="random_segment", seed=5)

    def two_epochs():
        ds, _ = S.shard_dataset(folder, None, config, training=True, split="train")
        return [{r: frame_index(v[specs.FRAMES]).tolist() for r, v in _all(ds).items()} for _ in range(2)]

    first = two_epochs()
    assert first == two_epochs(), "same seed, same samples"
    assert first[0] != first[1], "a new epoch draws new frames"


def test_workers_read_disjoint_files_that_cover_every_clip(folder):
    config = DataConfig(num_frames=2, frame_size=16, batch_size=2)
    seen = [set(_all(S.shard_dataset(folder, None, config, split="train", num_workers=2, worker_index=w)[0]))
            for w in range(2)]  # fmt: skip
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(8))
    meta = S.read_marker(folder)
    per_file = {e["file"]: set(e["rows"]) for e in meta["splits"]["train"]}
    assert (
        len(per_file) == 4
        and seen[0] == per_file["train-00000-of-00004.tfrecord"] | per_file["train-00002-of-00004.tfrecord"]
    )


def test_fewer_files_than_workers_shards_by_record_with_a_warning(folder):
    config = DataConfig(num_frames=2, frame_size=16, batch_size=2)
    seen = []
    for w in range(3):  # val has 2 files
        with pytest.warns(UserWarning, match="2 shard file.* for 3 workers: sharding by record"):
            ds, _ = S.shard_dataset(folder, None, config, split="val", num_workers=3, worker_index=w)
        seen.append(set(_all(ds)))
    assert sum(len(s) for s in seen) == 2 and set().union(*seen) == {8, 9}


def test_a_truncated_shard_is_reported_not_fatal(manifest, tmp_path):
    out = tmp_path / "shards"
    S.write_shards(manifest, out, num_shards=4, frames=4, size=16, progress=False)
    victim = out / "train-00001-of-00004.tfrecord"
    victim.write_bytes(victim.read_bytes()[:-100])
    lost = set(next(e["rows"] for e in S.read_marker(out)["splits"]["train"] if e["file"] == victim.name))
    ds, report = S.shard_dataset(out, None, DataConfig(num_frames=2, frame_size=16), split="train")
    assert set(_all(ds)) == set(range(8)) - lost
    assert {s.row for s in report.skipped} == lost and {s.reason for s in report.skipped} == {"bad_shard"}
    assert report.reconciles() and report.rows_used == 8 - len(lost)


def test_data_check_finds_a_corrupt_record_of_the_right_size(manifest, tmp_path, capsys):
    out = tmp_path / "shards"
    assert main(["data", "shard", str(manifest), "--out", str(out), "--shards", "2", "--frames", "4",
                 "--size", "16"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "rows read 11 = used 10 + skipped 1" in printed and "broken.mp4" in printed
    assert main(["data", "check", str(out)]) == 0
    assert "rows read 10 = used 10 + skipped 0" in capsys.readouterr().out
    victim = out / "train-00000-of-00002.tfrecord"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, a flipped byte: only the CRC can tell
    victim.write_bytes(bytes(data))
    assert main(["data", "check", str(out), "--report", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "bad_shard" in printed and "rows read 10 = used " in printed
    assert json.loads((tmp_path / "r.json").read_text())["skipped"]


def test_an_incomplete_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shards.json, so not a complete shard folder"):
        S.shard_dataset(tmp_path, None)
    assert not S.is_shard_folder(tmp_path)


def test_the_element_spec_equals_build_dataset(manifest, folder):
    from kmm.data.manifest import read_manifest

    config = DataConfig(num_frames=2, frame_size=16, batch_size=2)
    rows = [r for r in read_manifest(manifest) if r.split == "val"]
    assert (
        S.shard_dataset(folder, ["a"], config, split="val")[0].element_spec
        == build_dataset(rows, ["a"], config).element_spec
    )
