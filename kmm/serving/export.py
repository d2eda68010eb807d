"""`kmm export`: a SavedModel that stock TF Serving runs, in TF Serving's directory layout.

`saved_models/<name>/<version>/` (integer versions, the next free one, never overwritten),
written elsewhere and renamed into place, so a server watching `saved_models/<name>` never
sees a half-written version. Signatures (named inputs and outputs):

| signature | inputs | outputs |
|---|---|---|
| `serving_default` | `frames` uint8 `[b, T, H, W, 3]`, `text` string `[b]` | `probabilities`, `labels`, `scores`, `frame_attention` |
| `classify_jpeg` | `jpeg_frames` string `[b, T]`, `text` string `[b]` | as `serving_default` |
| `embed_video` | `frames` | `embedding` float32 `[b, D]`, unit norm |
| `embed_text` | `text` | `embedding` float32 `[b, D]`, unit norm, same space |
| `search` (with a gallery) | `text` | `ids` string `[b, k]`, `scores` float32 `[b, k]` |

Only core TensorFlow and TF Text ops are used (tokenization, decoding, resizing and frame
resampling all happen in the graph). `assets/kmm.json` describes the model.
"""

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

import kmm
from kmm import specs
from kmm.serving import preprocess as P
from kmm.serving.warmup import list_versions, write_serving_configs, write_warmup_requests  # noqa: F401  (list_versions: public here too)

SIGNATURES = ("serving_default", "classify_jpeg", "embed_video", "embed_text", "search")
METADATA = "kmm.json"
GALLERY = "gallery.json"
EVAL_DIR = "assets.extra/eval"
TOP_K = 5
TMP_PREFIX = ".export-"  # + pid: an export in progress; TF Serving ignores non-numeric folders


@dataclasses.dataclass
class Gallery:
    """Items the `search` signature ranks: ids, unit-norm embeddings and optional details.

    `videos` and `captions` are not needed to serve; they go to `assets/gallery.json` so
    apps can show what an id is.
    """

    ids: list
    embeddings: np.ndarray  # (n, D) float32, unit norm
    videos: list | None = None
    captions: list | None = None
    starts: list | None = None  # a segment gallery: each item is [start, end) seconds of its video
    ends: list | None = None

    def __post_init__(self):
        self.embeddings = np.asarray(self.embeddings, np.float32)
        if self.embeddings.ndim != 2 or len(self.ids) != len(self.embeddings) or not len(self.ids):
            raise ValueError(
                f"Gallery: expected n >= 1 ids and embeddings (n, D); got {len(self.ids)} ids and "
                f"embeddings of shape {self.embeddings.shape}."
            )
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("Gallery: ids must be unique.")


def next_version(model_dir):
    """The next free integer version under `model_dir` (1 when empty)."""
    model_dir = Path(model_dir)
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def _signatures(models, config, gallery_embeddings, gallery_ids, k, limits):
    """The serving functions, keyed by signature name, with their input signatures."""
    n, size = config.num_frames, config.frame_size
    labels = tf.constant(list(config.labels)) if config.labels else None
    top = min(TOP_K, len(config.labels or ()))
    frames_spec = tf.TensorSpec(None, tf.uint8, name=specs.FRAMES)
    text_spec = tf.TensorSpec(None, tf.string, name=specs.TEXT)

    def same_batch(a, b):
        message = "`frames` (or `jpeg_frames`) and `text` must have the same batch size."
        with tf.control_dependencies([P.fail_unless(tf.equal(tf.shape(a)[0], tf.shape(b)[0]), message)]):
            return tf.identity(b)

    def classify_clips(clips, text):
        out = models.classifier({specs.FRAMES: clips, specs.TEXT: text}, training=False)
        probabilities = out[specs.PROBABILITIES]
        scores, index = tf.math.top_k(probabilities, top)
        return {
            specs.PROBABILITIES: probabilities,
            "labels": tf.gather(labels, index),
            "scores": scores,
            specs.FRAME_ATTENTION: out[specs.FRAME_ATTENTION],
        }

    def classify(frames, text):
        frames, text = check_frames(frames), P.check_text(text, limits=limits)
        return classify_clips(P.fit_clips(frames, n, size), same_batch(frames, text))

    def classify_jpeg(jpeg_frames, text):
        text = P.check_text(text, limits=limits)
        clips = P.decode_clips(jpeg_frames, n, size, limits=limits)
        return classify_clips(clips, same_batch(clips, text))

    def check_frames(frames):
        return P.check_frames(frames, limits=limits, num_frames=n)

    def embed_video(frames):
        clips = P.fit_clips(check_frames(frames), n, size)
        return {specs.EMBEDDING: models.video_embedder(clips, training=False)}

    def embed_text(text):
        return {specs.EMBEDDING: models.text_embedder(P.check_text(text, limits=limits), training=False)}

    def search(text):
        query = models.text_embedder(P.check_text(text, limits=limits), training=False)
        similarity = tf.matmul(query, gallery_embeddings, transpose_b=True)  # (b, n)
        scores, index = tf.math.top_k(similarity, k)
        return {"ids": tf.gather(gallery_ids, index), "scores": scores}

    fns = {}
    if models.classifier is not None:
        fns["serving_default"] = (classify, [frames_spec, text_spec])
        fns["classify_jpeg"] = (classify_jpeg, [tf.TensorSpec(None, tf.string, name="jpeg_frames"), text_spec])
    fns["embed_video"] = (embed_video, [frames_spec])
    if models.text_embedder is not None:
        fns["embed_text"] = (embed_text, [text_spec])
        if gallery_embeddings is not None:
            fns["search"] = (search, [text_spec])
    if "serving_default" not in fns:  # retrieval-only models: TF Serving needs a default
        fns["serving_default"] = fns["embed_video"]
    return fns


def serving_root(models, config, keras_model, gallery=None, k=10, limits=P.DEFAULT_LIMITS, extra=None):
    """A trackable root with `keras_model`'s variables and the signatures of `_signatures`.

    `limits` (`kmm.serving.preprocess.Limits`) caps what one request may ask for; `extra`
    (a function of `limits`) returns more `{signature: (function, input specs)}`.

    Returns `(root, fns, signatures, k)`: `fns` maps each signature name to its Python
    function and input specs, `signatures` to its concrete function; `k` is capped at the
    gallery size.
    """
    root = tf.train.Checkpoint()
    root.variables = [w.value for w in keras_model.weights]
    weight_ids = {id(v) for v in root.variables}
    root.rng_state = [v.value for v in keras_model.variables if id(v.value) not in weight_ids]
    gallery_embeddings, ids, k = None, None, int(k)
    if gallery is not None:
        root.gallery_embeddings = gallery_embeddings = tf.Variable(gallery.embeddings, trainable=False, name="gallery")
        ids = tf.constant([str(i) for i in gallery.ids])
        k = min(k, len(gallery.ids))
    fns = _signatures(models, config, gallery_embeddings, ids, k, limits)
    fns.update(extra(limits) if extra else {})
    signatures = {}
    for signature, (fn, spec) in fns.items():
        function = tf.function(fn, input_signature=spec, autograph=False)
        setattr(root, signature, function)
        signatures[signature] = function.get_concrete_function()
    return root, fns, signatures, k


def _metadata(config, signatures, gallery, k, metrics, name, version, limits):
    return {
        "kmm_version": kmm.__version__,
        "name": name,
        "version": version,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "labels": list(config.labels),
        "num_frames": config.num_frames,
        "frame_size": config.frame_size,
        "max_text_tokens": config.max_text_tokens,
        "frame_encoder": config.frame_encoder,
        "frame_convention": config.frame_convention,
        "text_encoder": config.text_encoder,
        "text_convention": config.text_convention,
        "tasks": list(config.tasks),
        "signatures": sorted(signatures),
        "top_k": min(TOP_K, len(config.labels or ())),
        "gallery": {"size": len(gallery.ids), "k": k} if gallery is not None else None,
        "limits": limits.to_json(),
        "model_config": json.loads(config.to_json()),
        "metrics": metrics or {},
    }


def export_model(parts, base_dir=specs.EXPORT_BASE, name=specs.MODEL_NAME, gallery=None, k=10, metrics=None, encoders=None,
                 warmup=True, extra_files=None, limits=P.DEFAULT_LIMITS, log=None):  # fmt: skip
    """Exports a trained model as `base_dir/name/<next version>/`; returns that path.

    Args:
        parts: `kmm.models.builder.Parts`, trained.
        base_dir: str or Path. TF Serving's model base directory. Defaults to `"saved_models"`.
        name: str. Model name (the directory under `base_dir`). Defaults to `"kmm"`.
        gallery: `Gallery` or None. Adds the `search` signature over these items.
        k: int. Results per `search` query (capped at the gallery size). Defaults to `10`.
        metrics: dict or None. Evaluation results to record in `assets/kmm.json`.
        encoders: optional `(video_encoder, text_encoder)` layers (fine-tuned ones);
            fresh ones from the config's handles otherwise.
        warmup: bool. Write `assets.extra/tf_serving_warmup_requests`. Defaults to `True`.
        extra_files: dict or None. `{path inside the export: source file}`, copied before the
            version appears (e.g. evaluation plots into `assets.extra/eval/`).
        limits: `kmm.serving.preprocess.Limits`. Caps on one request (batch, frames, pixels,
            aspect, text bytes), checked in the graph and recorded in `assets/kmm.json`.

    Example:

        >>> path = export_model(load_run("runs/quickstart"), "saved_models", "kmm")  # doctest: +SKIP
        >>> path.name  # doctest: +SKIP
        '1'
    """
    from kmm.models.builder import build_end_to_end

    config = parts.config
    if gallery is not None and parts.text_tower is None:
        raise ValueError("A `search` gallery needs a model trained with the 'retrieval' task.")
    models = build_end_to_end(parts, encoders=encoders)
    # A plain trackable root holding the tf.Variables themselves. (keras.export.ExportArchive
    # tracks the keras.Variable wrappers, and the TF-Hub modules' variables were saved twice:
    # 225 MB instead of 115 MB.)
    root, fns, signatures, k = serving_root(models, config, models.trainer, gallery, k, limits)
    meta = _metadata(config, fns, gallery, k, metrics, name, None, limits)
    return write_export(root, signatures, meta, base_dir, name, gallery=gallery, extra_files=extra_files,
                        warmup_inputs=({s: [x.name for x in spec] for s, (_, spec) in fns.items()} if warmup else None),
                        warmup_config=config, log=log)  # fmt: skip


def write_export(root, signatures, meta, base_dir, name, gallery=None, extra_files=None, warmup_inputs=None,
                 warmup_config=None, log=None):  # fmt: skip
    """Saves `root` with `signatures` as `base_dir/name/<next version>/`; returns that path.

    The SavedModel, `assets/kmm.json` (`meta`, with its `version` filled in),
    `assets/gallery.json`, `extra_files` and the warmup requests are all written into a
    temporary folder that is renamed into place, so a TF Serving watching
    `base_dir/name` never sees a half-written version.

    Args:
        root: trackable object holding the variables the signatures use.
        signatures: dict of name -> concrete function.
        meta: dict. Written to `assets/kmm.json`.
        gallery: `Gallery` or None. Its details go to `assets/gallery.json`.
        extra_files: dict or None. `{path inside the export: source file}`.
        warmup_inputs: dict or None. `{signature: input names}` for
            `assets.extra/tf_serving_warmup_requests` (needs `warmup_config`'s `num_frames`
            and `frame_size`); None writes none.
    """
    model_dir = Path(base_dir) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_exports(model_dir, log)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=model_dir))
    try:
        tf.saved_model.save(root, str(tmp), signatures=signatures)
        version = next_version(model_dir)
        meta = {**meta, "version": version}
        (tmp / "assets").mkdir(exist_ok=True)
        (tmp / "assets" / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
        if gallery is not None:
            details = {"ids": [str(i) for i in gallery.ids], "videos": gallery.videos, "captions": gallery.captions}
            if gallery.starts is not None:
                details.update(starts=gallery.starts, ends=gallery.ends)
            (tmp / "assets" / GALLERY).write_text(json.dumps(details) + "\n")
        for relative, source in (extra_files or {}).items():
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp / relative)
        if warmup_inputs:
            write_warmup_requests(tmp, name, warmup_inputs, warmup_config)
        make_readable(tmp)  # mkdtemp made it 0700: a server running as another user could not load it
        # Another export may have claimed the number meanwhile: take the next free one.
        while True:
            target = model_dir / str(version)
            try:
                os.rename(tmp, target)
                break
            except OSError:
                if not target.exists():
                    raise
                version += 1
                meta["version"] = version
                (tmp / "assets" / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_serving_configs(base_dir)
    if log:
        log(f"exported {target} (signatures: {', '.join(sorted(signatures))})")
    return target


def make_readable(root):
    """Folders 0755, files 0644 under `root` (and `root` itself)."""
    root = Path(root)
    root.chmod(0o755)
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o755)
        for f in files:
            os.chmod(os.path.join(folder, f), 0o644)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_exports(model_dir, log=None):
    """Deletes `.export-<pid>-*` folders left by exports that were killed (their process is gone).

    Returns the paths removed. A folder whose process still runs is another export in progress
    and is left alone.
    """
    removed = []
    for tmp in Path(model_dir).glob(f"{TMP_PREFIX}*"):
        pid = tmp.name[len(TMP_PREFIX) :].split("-")[0]
        if tmp.is_dir() and not (pid.isdigit() and _pid_alive(int(pid))):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    if removed and log:
        log(
            f"removed {len(removed)} unfinished export(s) left by killed processes: {', '.join(p.name for p in removed)}"
        )
    return removed


def read_metadata(export_dir):
    """`assets/kmm.json` of an export."""
    path = Path(export_dir) / "assets" / METADATA
    if not path.exists():
        raise FileNotFoundError(f"{export_dir}: not a kmm export (no assets/{METADATA}).")
    return json.loads(path.read_text())


def eval_files(export_dir):
    """Evaluation plots and tables shipped in `assets.extra/eval/` (sorted paths)."""
    return sorted((Path(export_dir) / EVAL_DIR).glob("*"))


def read_gallery(export_dir):
    """`assets/gallery.json` of an export (`{ids, videos, captions}`), or None."""
    path = Path(export_dir) / "assets" / GALLERY
    return json.loads(path.read_text()) if path.exists() else None
