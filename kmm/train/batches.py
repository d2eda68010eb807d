"""Stage-1 training batches from cached features: reshuffled each epoch, with optional
time-reversal augmentation and hard negatives (see `features_dataset`)."""

import numpy as np
import tensorflow as tf

from kmm import specs, tasks
from kmm.features.arrays import caption_group_ids, model_inputs, reversed_caption_inputs
from kmm.specs import VIDEO_FEATURES


def reversed_label_ids(labels, time_reversal):
    """Label id -> the id of the label a time-reversed clip has (-1: not reversible).

    `time_reversal`: `(label, reversed_label)` pairs, e.g. `("move_left", "move_right")`,
    `("rotate", "rotate")`; a pair holds both ways.
    """
    index = {label: i for i, label in enumerate(labels)}
    ids = np.full(len(labels), -1, np.int32)
    for a, b in time_reversal:
        for name in (a, b):
            if name not in index:
                raise ValueError(f"time_reversal names {name!r}, which is not one of the labels {list(labels)}")
        ids[index[a]], ids[index[b]] = index[b], index[a]
    return ids


def features_dataset(arrays, config, batch_size=64, training=False, seed=0, time_reversal=(), reversal_pairs=0,
                     first_epoch=0):  # fmt: skip
    """`(inputs, targets)` batches for `build_feature_model` (see `training_targets`).

    Retrieval's target is each clip's caption group (`caption_group_ids`): clips of one
    group are not each other's negatives. In training, batches are reshuffled each epoch,
    with `len // batch_size` full batches an epoch (each repetition of the dataset is the
    next epoch, drawn from `(seed, epoch)`, starting at `first_epoch`: a resumed fit sees
    the batches an uninterrupted one would), and:

    `time_reversal`: `(label, reversed_label)` pairs. Half of the clips whose label has a
    pair play backwards (their frame features reversed) with the paired label. If the
    arrays hold the reversed clips' captions (`extract_features(..., reverse_caption=...)`),
    those replace the captions; otherwise the caption no longer describes the clip, so such
    clips get weight 0 in the retrieval loss (they still serve as negatives). Batches are
    then `(inputs, targets, sample_weights)`.

    `reversal_pairs` (p > 0, with `time_reversal`): `p` clips of each batch play both ways,
    each with its own caption, so "moves left" and "moves right" of the very same objects
    are each other's negatives. The twins are taken from the batch's clips whose reversed
    caption says something else (`rotate` played backwards still rotates); a batch is
    `batch_size - p` random clips plus the `p` twins.
    """
    inputs = model_inputs(arrays, config)
    labels = np.asarray(arrays[specs.LABEL_ID])
    groups, reversed_groups = caption_group_ids(arrays)
    if not training:
        targets = tasks.targets(config, labels, groups)
        return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    n = len(labels)
    if n < batch_size:
        raise ValueError(f"Training needs at least one full batch: {n} clips < batch_size {batch_size}.")
    if reversal_pairs and (not time_reversal or not 0 < reversal_pairs <= batch_size // 2):
        raise ValueError(
            f"reversal_pairs={reversal_pairs} needs time_reversal and at most batch_size / 2 ({batch_size // 2})"
        )
    reversed_ids = reversed_label_ids(config.labels, time_reversal) if time_reversal else None
    reversible = reversed_ids[labels] >= 0 if time_reversal else np.zeros(n, bool)
    reversed_captions = reversed_caption_inputs(arrays, config) if time_reversal else {}
    if reversed_captions and reversed_groups is None:  # captions cached, their groups not: one each
        reversed_groups = n + np.arange(n, dtype=np.float32)
    twin_worthy = None
    if reversal_pairs:  # clips whose reversal says something else: another caption group, else another label
        changes = reversed_groups != groups if reversed_captions else reversed_ids[labels] != labels
        twin_worthy = reversible & changes
    batches = _IndexBatches(n, batch_size, seed, reversible, reversal_pairs, twin_worthy,
                            first_epoch)  # fmt: skip
    data = {
        "inputs": inputs, "reversed": reversed_captions, "labels": labels, "groups": groups,
        "reversed_labels": reversed_ids[labels].astype(labels.dtype) if time_reversal else labels,
        "reversed_groups": reversed_groups if reversed_captions else groups,
    }  # fmt: skip
    data = tf.nest.map_structure(tf.constant, data)
    weighted = bool(time_reversal)
    signature = (tf.TensorSpec((batch_size,), tf.int64), tf.TensorSpec((batch_size,), tf.bool))
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n // batch_size))
    ds = ds.map(lambda index, flip: _gather_batch(data, index, flip, config.tasks, weighted))
    return ds.prefetch(tf.data.AUTOTUNE)


class _IndexBatches:
    """Callable for `Dataset.from_generator`: one epoch of `(indices, flip)` batches per call,
    a new shuffle each epoch, drawn from `(seed, epoch)`."""

    def __init__(self, n, batch_size, seed, reversible, pairs=0, changes=None, first_epoch=0):
        self.n, self.batch_size = n, batch_size
        self.reversible, self.seed, self.epoch = reversible, seed, first_epoch
        self.pairs, self.changes = pairs, changes

    def __call__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.n)
        anchors = self.batch_size - self.pairs
        for step in range(self.n // self.batch_size):
            index = order[step * anchors : (step + 1) * anchors]
            flip = (rng.random(len(index)) < 0.5) & self.reversible[index]
            if self.pairs:  # the first `pairs` clips whose reversal says something else, both ways
                twins = np.argsort(~self.changes[index], kind="stable")[: self.pairs]
                index = np.concatenate([index, index[twins]])
                flip = np.concatenate([flip, ~flip[twins] & self.reversible[index[twins]]])
            yield index, flip


def _gather_batch(data, index, flip, task_names, weighted):
    """A training batch: rows `index`, the `flip`ped ones played backwards (frames,
    label, caption and caption group)."""
    x = {k: tf.gather(v, index) for k, v in data["inputs"].items()}
    x[VIDEO_FEATURES] = tf.where(flip[:, None, None], tf.reverse(x[VIDEO_FEATURES], [1]), x[VIDEO_FEATURES])
    for key, value in data["reversed"].items():
        backwards = tf.gather(value, index)
        x[key] = tf.where(tf.reshape(flip, [-1] + [1] * (backwards.shape.rank - 1)), backwards, x[key])
    labels = tf.where(flip, tf.gather(data["reversed_labels"], index), tf.gather(data["labels"], index))
    groups = tf.where(flip, tf.gather(data["reversed_groups"], index), tf.gather(data["groups"], index))
    y = tasks.targets(task_names, labels, groups)
    if not weighted:
        return x, y
    # A reversed clip whose reversed caption is not cached has no caption that describes it.
    keep = tf.ones_like(groups) if data["reversed"] else tf.where(flip, 0.0, 1.0)
    weights = tasks.caption_weights(task_names, keep, tf.ones_like(groups))
    return x, y, weights
