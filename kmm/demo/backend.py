"""Which model the demo talks to, and the gallery it searches."""

import filecmp
import hashlib
import os
from pathlib import Path

from kmm import paths, specs
from kmm.serving.client import ServingUnavailable, connect

DEFAULT_BASE = specs.EXPORT_BASE
DEFAULT_EXPORT = f"{specs.EXPORT_BASE}/{specs.MODEL_NAME}"
# Real videos first: the pretrained Kinetics model, then the kmm-shapes model of the quickstart.
PREFERRED_MODELS = ("kinetics", specs.MODEL_NAME)
QUICKSTART_HINT = "./setup.sh && .venv/bin/kmm quickstart"
VIDEOS_ENV = "KMM_DEMO_VIDEOS"  # a folder of the user's own videos, added to the search gallery


class NoExport(ServingUnavailable):
    """No kmm export where the demo looked."""


def default_target():
    """`$KMM_DEMO_MODEL` (a local export folder or a TF Serving URL), else the first of
    `saved_models/kinetics` and `saved_models/kmm` that holds an export."""
    if os.environ.get("KMM_DEMO_MODEL"):
        return os.environ["KMM_DEMO_MODEL"]
    for name in PREFERRED_MODELS:
        if local_versions(Path(DEFAULT_BASE) / name):
            return str(Path(DEFAULT_BASE) / name)
    return DEFAULT_EXPORT


def model_choices(target):
    """Local model folders the sidebar offers: `target` and the exported models next to it
    (Kinetics, then the kmm-shapes model, then the rest by name)."""
    target = Path(str(target)).expanduser()
    if (target / "saved_model.pb").exists():  # a version folder: its model folder's siblings
        target = target.parent
    base = target.parent
    siblings = (
        sorted((p for p in base.iterdir() if p.is_dir() and local_versions(p)), key=_model_order)
        if base.is_dir()
        else []
    )
    return [str(target)] + [str(p) for p in siblings if p != target]


def _model_order(path):
    name = path.name
    return (PREFERRED_MODELS.index(name) if name in PREFERRED_MODELS else len(PREFERRED_MODELS), name)


def user_videos_folder():
    """`$KMM_DEMO_VIDEOS` (set by `kmm demo --videos DIR`), or None."""
    return os.environ.get(VIDEOS_ENV) or None


def local_versions(model_dir):
    """Version numbers (str) of a local model folder, newest first; [] if none."""
    from kmm.serving.export import list_versions

    path = Path(model_dir).expanduser()
    if (path / "saved_model.pb").exists():
        return [path.name]
    return [p.name for p in reversed(list_versions(path))] if path.is_dir() else []


def open_client(target, model_name=specs.MODEL_NAME, version=None):
    """A client, or `NoExport` / `ServingUnavailable` with a message a person can act on."""
    target = str(target).strip()
    remote = target.startswith(("http://", "https://", "grpc://"))
    if not remote and not local_versions(target):
        raise NoExport(
            f"No kmm export found at {Path(target).expanduser()}. Create one with the quickstart: {QUICKSTART_HINT}"
        )
    client = connect(target, model_name, version)
    if remote:
        client.signatures()  # fail now, with the server's address in the message, if it is unreachable
    return client


def gallery_sources(export_dir=None, user_folder=None):
    """`(videos, ids, captions)` to index: the export's gallery clips, the real sample videos
    and the videos under `user_folder` (ids `videos/<relative path>`), each video once: a file
    reached by two paths, or the same bytes in two places (the export's gallery and the sample
    videos are often the same clips), keeps its first id."""
    from kmm.data.manifest import read_manifest
    from kmm.data.samples import default_dir, fetch_samples
    from kmm.serving.export import read_gallery
    from kmm.serving.index import find_videos

    videos, ids, captions = [], [], []
    seen, by_size = set(), {}

    def add(video, item, caption):
        path = Path(video)
        try:
            key, size = path.resolve(), path.stat().st_size
        except OSError:  # gone since the export was made: nothing to show
            return
        if key in seen or any(filecmp.cmp(path, other, shallow=False) for other in by_size.get(size, ())):
            return
        seen.add(key)
        by_size.setdefault(size, []).append(path)
        videos.append(str(video))
        ids.append(item)
        captions.append(caption or "")

    gallery = read_gallery(export_dir) if export_dir else None
    if gallery and gallery.get("videos"):
        for item, video, caption in zip(gallery["ids"], gallery["videos"], gallery["captions"], strict=True):
            add(video, item, caption)
    manifest = default_dir() / "manifest.csv"
    if not manifest.exists():
        try:
            manifest = fetch_samples()
        except (OSError, ValueError):
            manifest = None
    for row in read_manifest(manifest) if manifest else []:
        add(row.video, "samples/" + Path(row.video).name, row.caption)
    for video in find_videos(user_folder) if user_folder else []:
        add(video, "videos/" + str(video.relative_to(user_folder)), "")
    return videos, ids, captions


def index_dir(client, sources):
    """Where the index for this model + collection is cached."""
    where = str(getattr(client, "path", "")) or f"{getattr(client, 'url', '')}{getattr(client, 'target', '')}"
    key = hashlib.sha1(("\n".join([where] + sources[0])).encode()).hexdigest()[:16]
    return paths.kmm_home() / "demo" / "index" / key


def ensure_index(client, sources, on_progress=None):
    """The folder of the gallery index for `client` + `sources` (`gallery_sources`), built and saved
    first if it is not cached yet; `on_progress(done, total)` follows the build (in videos).

    A model that labels segments (the Kinetics export) gets a moment index: every window of
    every video, so search answers where."""
    from kmm.serving.index import VideoIndex, is_complete

    folder = index_dir(client, sources)
    if not is_complete(folder):
        videos, ids, captions = sources
        if not videos:
            raise NoExport("Nothing to search: the export has no gallery and no sample videos were found.")
        if "label_segments" in client.signatures():
            from kmm.moments.index import build_moment_index

            step = (lambda i, done, total: on_progress(i + min(done / max(total, 1e-9), 1.0), len(videos))) \
                if on_progress else None  # fmt: skip
            index = build_moment_index(client, videos, ids, progress=False, on_progress=step)
        else:
            index = VideoIndex.build(
                client, videos, ids=ids, captions=captions, progress=False, on_progress=on_progress
            )
        index.save(folder)
    return folder
