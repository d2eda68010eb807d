"""Keras callbacks specific to kmm."""

import os
from pathlib import Path

import keras
import numpy as np

from kmm.eval.metrics import bidirectional_retrieval
from kmm.features.arrays import embed_arrays
from kmm.paths import replacing


class ResumableCSVLogger(keras.callbacks.CSVLogger):
    """`CSVLogger` that survives `BackupAndRestore`: when `fit` starts at epoch k (0 for a
    fresh run, k after a resume), the rows of epochs >= k are dropped and new rows appended,
    so the file holds every epoch once. (Plain `CSVLogger` either wipes the history on resume,
    `append=False`, or repeats the epochs redone after a kill, `append=True`.)"""

    def __init__(self, filename, separator=","):
        super().__init__(filename, separator=separator, append=True)
        self._opened = False

    def on_train_begin(self, logs=None):
        self._opened = False  # opened at the first epoch, once the start epoch is known

    def on_epoch_begin(self, epoch, logs=None):
        if not self._opened:
            _keep_rows_before(self.filename, epoch, self.sep)
            super().on_train_begin(logs)
            self._opened = True

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.csv_file.flush()
        os.fsync(self.csv_file.fileno())


def _keep_rows_before(path, epoch, separator=","):
    """Rewrites the CSV at `path` with only its header and the rows of epochs < `epoch`."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    if epoch == 0 or not lines:
        path.unlink()
        return
    epochs = [line.split(separator, 1)[0] for line in lines[1:]]
    keep = [lines[0]] + [line for line, e in zip(lines[1:], epochs, strict=True) if e.isdigit() and int(e) < epoch]
    with replacing(path) as tmp:
        tmp.write_text("".join(keep))


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore`, plus the state of the model's random generators (dropout
    masks), which `save_weights` leaves out: the epoch redone after a kill draws the same
    masks as the uninterrupted run did.

    `restore_dir` (default: `backup_dir`): where to resume from. Workers other than the chief
    back up into their own folder but resume from the chief's, so all restart together.
    """

    def __init__(self, backup_dir, restore_dir=None):
        super().__init__(backup_dir)
        self.restore_dir = restore_dir or backup_dir

    def on_train_begin(self, logs=None):
        own = self.backup_dir
        self.backup_dir = self.restore_dir
        self._set_paths()
        try:
            super().on_train_begin(logs)
        finally:
            self.backup_dir = own
            self._set_paths()

    def _set_paths(self):
        self._weights_path = str(Path(self.backup_dir) / "latest.weights.h5")
        self._training_metadata_path = str(Path(self.backup_dir) / "training_metadata.json")
        self._prev_weights_path = f"{self._weights_path}.bkp"
        self._prev_training_metadata_path = f"{self._training_metadata_path}.bkp"

    def _rng_variables(self):
        weights = {id(w) for w in self.model.weights}
        return [v for v in self.model.variables if id(v) not in weights]

    def _rng_path(self):
        return Path(self.backup_dir) / "rng_state.npz"

    def _save_model(self):
        Path(self.backup_dir).mkdir(parents=True, exist_ok=True)
        with replacing(self._rng_path()) as tmp, open(tmp, "wb") as f:
            np.savez(f, *[keras.ops.convert_to_numpy(v) for v in self._rng_variables()])
        super()._save_model()  # weights, then the epoch: the epoch file is the commit point

    def _load_model(self):
        super()._load_model()
        if self._rng_path().exists():
            with np.load(self._rng_path()) as saved:
                values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
            variables = self._rng_variables()
            if len(values) == len(variables):
                for variable, value in zip(variables, values, strict=True):
                    variable.assign(value)


class RetrievalEvaluation(keras.callbacks.Callback):
    """Adds `val_t2v_r1`, `val_t2v_r5`, `val_t2v_r10`, `val_v2t_r1` to the epoch logs.

    Place it before `CSVLogger`/`TensorBoard` so they record the numbers.

    Args:
        parts: `kmm.models.builder.Parts` being trained.
        arrays: the validation split's features (`kmm.features.cache.load_features`).
    """

    def __init__(self, parts, arrays):
        super().__init__()
        self.parts, self.arrays = parts, arrays

    def on_epoch_end(self, epoch, logs=None):
        video, text = embed_arrays(self.parts, self.arrays)
        metrics = bidirectional_retrieval(video, text)
        if logs is not None:
            for k in (1, 5, 10):
                logs[f"val_t2v_r{k}"] = metrics["text_to_video"][f"R@{k}"]
            logs["val_v2t_r1"] = metrics["video_to_text"]["R@1"]
