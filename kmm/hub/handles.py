"""Resolves encoder handles: `kmm://<name>`, local folders, or TF-Hub / Kaggle URLs.

- `kmm://minilm-l6`, `kmm://efficientnet-lite0[@SIZE]`, `kmm://tiny-text`, `kmm://tiny-frames[@SIZE]`:
  kmm's offline encoders in `$KMM_HOME/encoders/<name>/`, built on first use when their
  weight package is installed (`kmm encoders build` does it ahead of time).
- A local folder holding a SavedModel: used as is.
- Anything else (e.g. `https://tfhub.dev/...`, `https://www.kaggle.com/models/...`) is
  handed to `tensorflow_hub`, which downloads and caches it (needs network).
"""

import logging
import os
from pathlib import Path

import tensorflow_hub as hub
import tensorflow_text  # noqa: F401  (registers the text ops that text encoders' graphs use)

from kmm import specs

log = logging.getLogger(__name__)
TRUST_ENV = "KMM_TRUST_REMOTE_HANDLES"


def is_remote(handle):
    """True for a handle `hub.load` would fetch from the network (not `kmm://`, not a path)."""
    handle = os.fspath(handle)
    return "://" in handle and not handle.startswith(specs.HANDLE_SCHEME)


def check_stored_handle(handle, source):
    """Refuses a network handle that came from a file (`source`: a `.keras` model, a run folder).

    `hub.load` downloads a SavedModel and runs its graph, so a file should not be able to
    make kmm do that on its own. `$KMM_TRUST_REMOTE_HANDLES=1` allows it (as
    `keras.models.load_model(..., safe_mode=False)` does for a `.keras` file).
    """
    if is_remote(handle) and os.environ.get(TRUST_ENV) != "1":
        raise ValueError(
            f"{source} asks to load the encoder {handle!r} from the network, which downloads and runs its graph. "
            f"If you trust {source}, set {TRUST_ENV}=1 (for a .keras file, or load it with safe_mode=False)."
        )


def check_keras_config(config, source="a saved Keras model"):
    """`check_stored_handle` on a layer config's handles while Keras deserializes in safe mode."""
    try:
        from keras.src.saving.serialization_lib import in_safe_mode
    except ImportError:  # pragma: no cover  (a Keras without it: treat every load as safe mode)
        in_safe_mode = lambda: True  # noqa: E731
    if in_safe_mode():
        for key in ("handle", "preprocessor"):
            if config.get(key):
                check_stored_handle(config[key], source)


def resolve_handle(handle, build=True):
    """Returns what `hub.load` should receive for `handle` (a local path or a URL).

    Args:
        handle: str. `kmm://<name>`, a local SavedModel folder, or a hub URL.
        build: bool. Build a missing built-in encoder instead of failing. Defaults to `True`.

    Raises:
        ValueError: an unknown `kmm://` name.
        FileNotFoundError: a local path that holds no SavedModel, or an unbuilt built-in
            encoder with `build=False`.
    """
    handle = os.fspath(handle)
    if handle.startswith(specs.HANDLE_SCHEME):
        from kmm.encoders import builtin

        name = handle[len(specs.HANDLE_SCHEME) :]
        try:
            builtin.parse_name(name)
        except ValueError as e:
            raise ValueError(f"Unknown built-in encoder {handle!r}: {e}") from None
        if not builtin.is_built(name):
            if not build:
                raise FileNotFoundError(f"{handle} is not built yet; run: kmm encoders build {name}")
            log.warning("Building %s into %s (one time).", handle, builtin.encoder_dir(name))
            builtin.build_encoders([name], progress=False)
        return str(builtin.encoder_dir(name))
    if "://" in handle:
        return handle
    path = Path(handle).expanduser()
    if not (path / "saved_model.pb").exists():
        raise FileNotFoundError(f"Encoder handle {handle!r}: no SavedModel (saved_model.pb) in {path.resolve()}.")
    return str(path)


def load_module(handle, build=True):
    """`hub.load` of a resolved handle."""
    return hub.load(resolve_handle(handle, build=build))
