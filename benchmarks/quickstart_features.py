"""Shared by the benchmarks that train on the quickstart's cached stage-1 features."""

from pathlib import Path

from kmm.features.cache import load_features
from kmm.models.config import PRESETS
from kmm.quickstart import SPLITS, features_dir


def add_features_argument(parser):
    default = features_dir(PRESETS["default"])
    parser.add_argument("--features", default=str(default), help=f"A quickstart feature folder (default: {default}).")


def load_quickstart_features(folder):
    """`{split: arrays}` for train / val / test / compositional; exits with a hint if missing."""
    folder = Path(folder)
    if not (folder / "train.npz").exists():
        raise SystemExit(f"{folder}: no cached features; run `kmm quickstart` first.")
    return {s: load_features(folder / f"{s}.npz") for s in SPLITS}
