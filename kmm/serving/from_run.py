"""Export a trained run folder (`kmm train` / `kmm quickstart`): model, gallery, metrics, towers."""

import json
from pathlib import Path

import numpy as np

from kmm import run_folder, specs
from kmm.serving.export import EVAL_DIR, Gallery, export_model
from kmm.serving.preprocess import DEFAULT_LIMITS


def run_encoders(run_dir):
    """The fine-tuned `(video_encoder, text_encoder)` of a stage-2 / joint run, else None."""
    path = Path(run_dir) / run_folder.END_TO_END
    if not path.exists():
        return None
    import keras

    import kmm.hub.encoders  # noqa: F401  (registers the layers for deserialization)
    import kmm.layers  # noqa: F401

    model = keras.saving.load_model(path, compile=False)
    return model.get_layer("video_encoder"), model.get_layer("text_encoder")


def gallery_from_features(parts, feature_dir, split="test"):
    """The `split` clips of a run's feature cache as a `Gallery` (one item per video file)."""
    from kmm.data.manifest import read_manifest
    from kmm.features.cache import cached_manifest, load_features

    feature_dir = Path(feature_dir)
    path = feature_dir / f"{split}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{feature_dir}: no cached features for split {split!r} ({path.name}).")
    arrays = load_features(path)
    manifest = cached_manifest(feature_dir)
    rows = {r.index: r for r in read_manifest(manifest, video_root="/")}  # the rows the features hold
    embeddings = parts.video_tower.predict(arrays[specs.VIDEO_FEATURES], batch_size=256, verbose=0)[
        specs.VIDEO_EMBEDDING
    ]
    ids, videos, captions, keep, seen = [], [], [], [], set()
    for i, row_index in enumerate(arrays[specs.ROW].tolist()):
        row = rows[row_index]
        video = Path(row.video)
        item = str(video.relative_to(manifest.parent)) if video.is_relative_to(manifest.parent) else str(video)
        if item in seen:
            continue  # one gallery item per file, whatever the number of captions
        seen.add(item)
        ids.append(item)
        videos.append(str(video))
        captions.append(row.caption)
        keep.append(i)
    return Gallery(ids=ids, embeddings=np.asarray(embeddings)[keep], videos=videos, captions=captions)


def export_run(run_dir, base_dir=specs.EXPORT_BASE, name=specs.MODEL_NAME, gallery_split="test", k=10, towers_dir=None,
               log=None, limits=DEFAULT_LIMITS):  # fmt: skip
    """Exports a run folder; returns the version path. `gallery_split=None`: no `search` signature.

    `limits`: `kmm.serving.preprocess.Limits`, caps on one request.
    """
    from kmm.models.builder import make_encoders
    from kmm.serving.hub_towers import export_towers
    from kmm.train.trainer import load_run

    run_dir = Path(run_dir)
    parts = load_run(run_dir)
    # One pair of encoders (TF-Hub modules loaded once) for the export and the towers.
    encoders = run_encoders(run_dir) or make_encoders(parts.config)
    gallery = None
    if gallery_split and parts.text_tower is not None:
        gallery = gallery_from_features(parts, run_folder.feature_dir(run_dir), gallery_split)  # or gallery_split=None
    evaluation = run_dir / run_folder.EVAL
    metrics_path = evaluation / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else None
    extra = {f"{EVAL_DIR}/{p.name}": p for p in sorted(evaluation.glob("*")) if p.suffix in (".png", ".md", ".json")}
    path = export_model(parts, base_dir, name, gallery=gallery, k=k, metrics=metrics, encoders=encoders,
                        extra_files=extra, log=log, limits=limits)  # fmt: skip
    if towers_dir is not None and parts.text_tower is not None:
        towers = export_towers(parts, towers_dir, encoders=encoders)
        if log:
            log("TF-Hub towers: " + ", ".join(str(p) for p in towers.values()))
    return path
