"""The layout of a run folder (`kmm train`, `kmm quickstart`), spelled here once.

config.json          the ModelConfig          run.json           widths, train settings
model.weights.h5     towers and heads         history_<stage>.csv one row an epoch
eval/                metrics, plots           features.txt       where the features are cached
tensorboard/<stage>/ TensorBoard logs         backup/<stage>-<key>/ BackupAndRestore state
end_to_end.keras     fine-tuned encoders      towers/            TF-Hub text and video towers
"""

from pathlib import Path

CONFIG = "config.json"
META = "run.json"
WEIGHTS = "model.weights.h5"
EVAL = "eval"
FEATURES_POINTER = "features.txt"
TENSORBOARD = "tensorboard"
BACKUP = "backup"
END_TO_END = "end_to_end.keras"
TOWERS = "towers"
STAGES = ("stage1", "stage2")


def history(run_dir, stage):
    """The `CSVLogger` file of one training stage."""
    return Path(run_dir) / f"history_{stage}.csv"


def histories(run_dir):
    return [history(run_dir, stage) for stage in STAGES]


def feature_dir(run_dir):
    """The feature cache a run was trained and evaluated on (`features.txt`)."""
    pointer = Path(run_dir) / FEATURES_POINTER
    if not pointer.exists():
        raise FileNotFoundError(
            f"{run_dir}: no {FEATURES_POINTER}, so which cached features the run used is unknown; name the feature folder."
        )
    return Path(pointer.read_text().strip())
