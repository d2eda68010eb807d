"""Where kmm keeps what it builds (`$KMM_HOME`, default `~/.cache/kmm`); file checksums and
crash-safe file replacement."""

import contextlib
import hashlib
import os
import threading
from pathlib import Path


def kmm_home():
    """The root of kmm's local files (built encoders, generated data)."""
    return Path(os.environ.get("KMM_HOME", Path.home() / ".cache" / "kmm")).expanduser()


def encoders_dir():
    """Directory holding the built offline encoders, one SavedModel per folder."""
    return kmm_home() / "encoders"


@contextlib.contextmanager
def replacing(path):
    """Yields a temporary path next to `path`, renamed onto `path` when the block succeeds
    and removed when it fails: readers see the old file or the new one, never part of one.

    Example:

        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "items.json"
        >>> with replacing(target) as tmp:
        ...     _ = tmp.write_text("{}")
        >>> target.read_text()
        '{}'
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # one per writer
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path, chunk=1 << 20):
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
