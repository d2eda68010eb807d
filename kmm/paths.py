"""Where kmm keeps what it builds: `$KMM_HOME`, default `~/.cache/kmm`."""

import os
from pathlib import Path


def kmm_home():
    """The root of kmm's local files (built encoders, generated data)."""
    return Path(os.environ.get("KMM_HOME", Path.home() / ".cache" / "kmm")).expanduser()


def encoders_dir():
    """Directory holding the built offline encoders, one SavedModel per folder."""
    return kmm_home() / "encoders"
