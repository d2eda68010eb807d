"""How the input pipelines read clips: `DataConfig`, and the epoch-keyed stream that makes a
resumed fit read what an uninterrupted one read. Used by both readers, `kmm.data.pipeline`
(manifests) and `kmm.data.shards` (TFRecord shards)."""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How clips are sampled and batched."""

    num_frames: int = 8
    frame_size: int = 112
    sampling: str = "uniform"  # Choose from ['uniform', 'random_segment', 'dense']
    dense_stride: int = 2
    resize: str = "crop"  # Choose from ['crop', 'resize']
    batch_size: int = 16
    seed: int = 0
    cache: bool = False  # keep decoded clips in memory after the first epoch (evaluation sampling only)
    drop_remainder: bool = False  # full batches only (each epoch's last partial batch dropped)
    video_root: str | None = None  # videos must be inside it (default: the manifest's folder); see read_manifest


def stream_of_epochs(seed, first_epoch, one_epoch):
    """`one_epoch(key)` for epochs `first_epoch`, `first_epoch + 1`, ... one after another;
    `key = [seed, epoch]` (int64), for stateless random ops: an epoch's draws are the same
    whenever it is read, so a fit resumed at epoch k reads what an uninterrupted one did.
    (Stateless ops, not `Dataset.shuffle(seed=<tensor>)`, which fails in graph mode when the
    global seed is 0.)"""
    return tf.data.Dataset.range(first_epoch, 2**62).flat_map(
        lambda epoch: one_epoch(tf.stack([tf.constant(seed, tf.int64), epoch]))
    )
