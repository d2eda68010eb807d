"""Where kmm keeps what it builds (`$KMM_HOME`, default `~/.cache/kmm`), and file checksums."""

import hashlib
import os
from pathlib import Path


def kmm_home():
    """The root of kmm's local files (built encoders, generated data)."""
    return Path(os.environ.get("KMM_HOME", Path.home() / ".cache" / "kmm")).expanduser()


def encoders_dir():
    """Directory holding the built offline encoders, one SavedModel per folder."""
    return kmm_home() / "encoders"


def file_sha256(path, chunk=1 << 20):
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
