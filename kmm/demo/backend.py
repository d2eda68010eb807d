"""Which model the demo talks to, and the gallery it searches."""

import hashlib
import os
from pathlib import Path

from kmm import paths
from kmm.serving.client import ServingUnavailable, connect

DEFAULT_EXPORT = "saved_models/kmm"
QUICKSTART_HINT = "./setup.sh && .venv/bin/kmm quickstart"


class NoExport(ServingUnavailable):
    """No kmm export where the demo looked."""


def default_target():
    """`$KMM_DEMO_MODEL` (a local export folder or a TF Serving URL), else `saved_models/kmm`."""
    return os.environ.get("KMM_DEMO_MODEL", DEFAULT_EXPORT)


def local_versions(model_dir):
    """Version numbers (str) of a local model folder, newest first; [] if none."""
    from kmm.serving.export import list_versions

    path = Path(model_dir).expanduser()
    if (path / "saved_model.pb").exists():
        return [path.name]
    return [p.name for p in reversed(list_versions(path))] if path.is_dir() else []


def open_client(target, model_name="kmm", version=None):
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


def gallery_sources(export_dir=None):
    """`(videos, ids, captions)` to index: the export's gallery clips plus the real sample videos."""
    from kmm.data.manifest import read_manifest
    from kmm.data.samples import default_dir, fetch_samples
    from kmm.serving.export import read_gallery

    videos, ids, captions = [], [], []
    gallery = read_gallery(export_dir) if export_dir else None
    if gallery and gallery.get("videos"):
        for item, video, caption in zip(gallery["ids"], gallery["videos"], gallery["captions"], strict=True):
            if Path(video).exists():
                videos.append(video)
                ids.append(item)
                captions.append(caption or "")
    manifest = default_dir() / "manifest.csv"
    if not manifest.exists():
        try:
            manifest = fetch_samples()
        except (OSError, ValueError):
            manifest = None
    for row in read_manifest(manifest) if manifest else []:
        videos.append(row.video)
        ids.append("samples/" + Path(row.video).name)
        captions.append(row.caption)
    return videos, ids, captions


def index_dir(client, sources):
    """Where the index for this model + collection is cached."""
    where = str(getattr(client, "path", "")) or f"{getattr(client, 'url', '')}{getattr(client, 'target', '')}"
    key = hashlib.sha1(("\n".join([where] + sources[0])).encode()).hexdigest()[:16]
    return paths.kmm_home() / "demo" / "index" / key


def ensure_index(client, sources, on_progress=None):
    """The folder of the gallery index for `client` + `sources` (`gallery_sources`), built and saved
    first if it is not cached yet; `on_progress(done, total)` follows the build."""
    from kmm.serving.index import INDEX_FILE, VideoIndex

    folder = index_dir(client, sources)
    if not (folder / INDEX_FILE).exists():
        videos, ids, captions = sources
        if not videos:
            raise NoExport("Nothing to search: the export has no gallery and no sample videos were found.")
        index = VideoIndex.build(client, videos, ids=ids, captions=captions, progress=False, on_progress=on_progress)
        index.save(folder)
    return folder
