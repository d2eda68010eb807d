"""The tasks a kmm model trains, each declared once.

A task names the model output it trains, its loss, the `ModelConfig` field that weights
that loss, its metrics and its targets. The trainer compiles from this table and the batch
builders take their targets from it, so adding a task is one entry here plus its head in
`kmm.models.builder`.

Example:

    >>> from kmm.models.config import PRESETS
    >>> [task.output for task in selected(PRESETS["tiny"].replace(labels=("a", "b")))]
    ['logits', 'similarity']
"""

import dataclasses
from collections.abc import Callable

import keras

from kmm import specs
from kmm.layers.retrieval import infonce_loss
from kmm.models.config import TASKS

ACCURACY = "acc"  # the classification metric's name in Keras logs (`val_acc`, or `val_logits_acc`)


@dataclasses.dataclass(frozen=True)
class Task:
    """One training task. `contrastive`: its loss pairs the batch's clips with their
    captions, so its targets are caption-group ids (equal captions are one group: no
    negatives of each other), its batches need captions, and a clip whose caption no longer
    describes it (a time-reversed clip without a reversed caption) is weighted out."""

    name: str
    output: str
    loss: Callable
    weight: str
    contrastive: bool
    metrics: Callable = tuple  # -> fresh metric objects for one `compile`


REGISTRY = {
    task.name: task
    for task in (
        Task(
            "classification",
            specs.LOGITS,
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "classification_weight",
            contrastive=False,
            metrics=lambda: [keras.metrics.SparseCategoricalAccuracy(name=ACCURACY)],
        ),
        Task("retrieval", specs.SIMILARITY, infonce_loss, "retrieval_weight", contrastive=True),
    )
}
assert tuple(REGISTRY) == TASKS, "every task of ModelConfig.TASKS is declared once here"


def selected(config_or_tasks):
    """The `Task`s of a `ModelConfig` (or of a tuple of task names), in `TASKS` order."""
    names = getattr(config_or_tasks, "tasks", config_or_tasks)
    return [task for name, task in REGISTRY.items() if name in names]


def needs_captions(config):
    """Whether `config`'s training batches need a caption for every clip."""
    return any(task.contrastive for task in selected(config))


def compile_arguments(config):
    """`(losses, loss_weights, metrics)` for `Model.compile`, keyed by output."""
    tasks = selected(config)
    losses = {task.output: task.loss for task in tasks}
    weights = {task.output: getattr(config, task.weight) for task in tasks}
    metrics = {task.output: list(task.metrics()) for task in tasks}
    return losses, weights, {output: fresh for output, fresh in metrics.items() if fresh}


def targets(tasks, label_ids, caption_groups):
    """Targets for the outputs `tasks` train: label ids, or caption-group ids for a
    contrastive task (InfoNCE's positives are the diagonal, see `infonce_loss`)."""
    return {task.output: caption_groups if task.contrastive else label_ids for task in selected(tasks)}


def caption_weights(tasks, keep, ones):
    """Per-output sample weights: `keep` for contrastive outputs, `ones` for the others."""
    return {task.output: keep if task.contrastive else ones for task in selected(tasks)}
