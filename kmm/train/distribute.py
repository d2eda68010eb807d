"""`tf.distribute` for `model.fit`: one device, `MirroredStrategy` (the devices of one machine)
or `MultiWorkerMirroredStrategy` (one process per machine, the cluster in `TF_CONFIG`).

Synchronous data parallelism: every replica holds the same weights; a global batch of
`batch_size` is split evenly over the replicas and their gradients are summed, so a step
equals the single-device step on the same global batch (`batch_size` is global: scale the
learning rate with it if you raise it for more replicas). The retrieval loss gathers the
embeddings of every replica (`kmm.layers.retrieval`), so negatives span the global batch.

Multi-worker: create the strategy before anything else touches TensorFlow (`make_strategy`
first); every worker runs the same program; the chief (`task` `chief`, else worker 0)
writes the run folder, the others write their logs and backups next to it
(`worker_dir`) and resume from the chief's backup. Keras 3 (3.15.1 at least, keras-team/keras#20585)
fails in `fit` with 2+ workers ("Invalid reduction dimension 0 for input with 0
dimensions"): `make_strategy` patches `reduce_per_replica` for scalar logs, and
`_maybe_symbolic_build` for bool inputs (`patch_keras_symbolic_build`).
"""

import json
import os
from pathlib import Path

import tensorflow as tf

STRATEGIES = ("one", "mirrored", "multi_worker")
# A worker that stops answering fails the others after this many seconds (KMM_COLLECTIVE_TIMEOUT_S).
COLLECTIVE_TIMEOUT_S = 300


class WorkerLostError(RuntimeError):
    """Another worker of a multi-worker run stopped answering."""


def fit(model, strategy, **kwargs):
    """`model.fit(**kwargs)`; under a multi-worker strategy, a lost peer becomes a
    `WorkerLostError` that says how to resume."""
    errors = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
              tf.errors.AbortedError, tf.errors.InternalError)  # fmt: skip
    try:
        return model.fit(**kwargs)
    except errors as error:
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise
        first = str(error).strip().splitlines()[0][:300]
        raise WorkerLostError(
            f"a worker of this multi-worker run stopped answering ({type(error).__name__}: {first}). Start every "
            "worker again with the same command: they resume from the chief's last backup."
        ) from error


def use_logical_cpus(n):
    """Splits the CPU into `n` logical devices, so `MirroredStrategy` has `n` replicas on a
    machine without GPUs (tests, benchmarks). Must run before TensorFlow initializes."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


_made = {}


def make_strategy(name="one", timeout_s=None):
    """The `tf.distribute.Strategy` called `name` (one of `STRATEGIES`), made once per process.

    `mirrored` uses every GPU, else every logical CPU (`use_logical_cpus`); `multi_worker`
    needs `TF_CONFIG` and uses CPU ring collectives, each failing after `timeout_s`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "one":
        return tf.distribute.get_strategy()
    if name not in _made:
        _made[name] = _make(name, timeout_s or float(os.environ.get("KMM_COLLECTIVE_TIMEOUT_S", COLLECTIVE_TIMEOUT_S)))
    return _made[name]


def _make(name, timeout_s):
    patch_keras_symbolic_build()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy([d.name for d in gpus or tf.config.list_logical_devices("CPU")])
    if "TF_CONFIG" not in os.environ:
        raise ValueError(
            'strategy "multi_worker" needs TF_CONFIG, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}} (README: Scaling out).'
        )
    patch_keras_multi_worker_logs()
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING, timeout_seconds=timeout_s
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def task():
    """`(type, index)` of this process in `TF_CONFIG`; `("chief", 0)` without one."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    kind = config.get("task", {}).get("type", "chief")
    if kind == "worker" and "chief" not in config.get("cluster", {}):
        kind = "chief" if config["task"].get("index", 0) == 0 else kind
    return kind, int(config.get("task", {}).get("index", 0))


def local_tf_configs(n):
    """`TF_CONFIG` values (JSON) for `n` workers on free ports of 127.0.0.1: a multi-worker
    cluster on one machine, for trying a set-up before it goes to N machines."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(n)]


def is_chief():
    return task()[0] == "chief"


def worker_dir(run_dir):
    """Where this process writes: the run folder for the chief, a sibling
    `.<name>.worker<i>` folder for another worker (its backups, logs, features)."""
    run_dir = Path(run_dir)
    if is_chief():
        return run_dir
    return run_dir.parent / f".{run_dir.name}.worker{task()[1]}"


def patch_keras_multi_worker_logs():
    """Keras' TF trainer reduces each log with `strategy.reduce("MEAN", v, axis=0)` under
    multi-worker strategies, which fails for the scalar logs `fit` produces. This reduces
    scalars across replicas only (`axis=None`), as Keras does on one worker."""
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "kmm_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not trainer._collective_all_reduce_multi_worker(strategy):
            return original(values, strategy, reduction)

        def mean(v):
            rank = (v.values[0] if trainer._is_per_replica_instance(v) else v).shape.rank
            return strategy.reduce("MEAN", v, axis=0 if rank else None)

        return tree.map_structure(mean, values)

    reduce_per_replica.kmm_patched = True
    trainer.reduce_per_replica = reduce_per_replica


def patch_keras_symbolic_build():
    """Under a strategy, Keras' TF trainer builds the model before `fit` from the first batch
    of a fresh iterator, reduced with `strategy.reduce("MEAN", ...)`: that fails for bool
    inputs (padding masks: AddN has no bool kernel), and it draws one extra pass of the input
    pipeline (so a seeded generator's epochs shift by one). Only the batch's shapes and
    dtypes are used: this builds from the dataset's `element_spec` instead."""
    from keras.src.backend.tensorflow import trainer
    from tensorflow.python.distribute.values import PerReplicaSpec

    original = trainer.TensorFlowTrainer._maybe_symbolic_build
    if getattr(original, "kmm_patched", False):
        return

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None or iterator is None:
            return original(self, iterator=iterator, data_batch=data_batch)
        spec = tf.nest.map_structure(
            lambda s: s._component_specs[0] if isinstance(s, PerReplicaSpec) else s,
            iterator._distributed_dataset.element_spec,
        )
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=spec)

    _maybe_symbolic_build.kmm_patched = True
    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build


def distribute(strategy, make_batches, global_batch):
    """Feeds `fit` under `strategy`: `make_batches()` builds a `tf.data.Dataset` of global
    batches that every input pipeline builds identically (same seed); each pipeline keeps
    its slice of every batch, split into per-replica batches. Returns the dataset unchanged
    under the default strategy.
    """
    if not isinstance(strategy, tf.distribute.MirroredStrategy | tf.distribute.MultiWorkerMirroredStrategy):
        return make_batches()
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(f"batch_size {global_batch} must be a multiple of the {replicas} replicas.")

    def dataset_fn(context):
        share = global_batch // context.num_input_pipelines
        start = context.input_pipeline_id * share

        def mine(*batch):
            return tf.nest.map_structure(lambda t: t[start : start + share], batch)

        ds = make_batches().map(mine).unbatch()
        return ds.batch(context.get_per_replica_batch_size(global_batch), drop_remainder=True)

    return strategy.distribute_datasets_from_function(dataset_fn)
