"""Shared fixtures: kmm's built-in encoders built once per session into a temp KMM_HOME, and
the expensive results (the tiny quickstart, exports) made once per test run, also when
pytest-xdist spreads the tests over several processes (`shared_once`)."""

import json
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# Tests that use these are in the slow tier (`-m slow`); `pytest -m "not slow"` is the fast tier.
EXPENSIVE_FIXTURES = {"real_encoders", "tiny_quickstart", "reel", "reel_export"}


# The modules that use the tiny quickstart: pytest-xdist runs them in one process (which makes
# it, so no other process waits for it); every other module is a unit of its own, so its
# module-scoped fixtures are made once.
QUICKSTART_MODULES = {"tests/apps/test_app.py", "tests/apps/test_browser.py", "tests/test_cli.py",
                      "tests/pretrained/test_kinetics.py"}  # fmt: skip


def pytest_collection_modifyitems(items):
    """Marks the slow tier; checks that QUICKSTART_MODULES names every user of the quickstart."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if EXPENSIVE_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
        module = item.nodeid.split("::", 1)[0]
        if "tiny_quickstart" in fixtures and module not in QUICKSTART_MODULES:
            raise pytest.UsageError(f"{module} uses tiny_quickstart: add it to QUICKSTART_MODULES in tests/conftest.py")


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's `loadscope` (a module per unit), with the quickstart's users as one unit.
    (Its `loadgroup` cannot do this under pytest 9: it renames `item._nodeid`, which pytest 9
    no longer reads, so the groups are silently ignored.)"""
    from xdist.scheduler import LoadScopeScheduling

    class QuickstartTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            return "tiny_quickstart" if module in QUICKSTART_MODULES else module

    return QuickstartTogether(config, log)


@pytest.fixture(scope="session", autouse=True)
def kmm_home(tmp_path_factory):
    """A private `$KMM_HOME` for the whole session, so tests never touch the user's cache."""
    home = tmp_path_factory.mktemp("kmm_home")
    old = os.environ.get("KMM_HOME")
    os.environ["KMM_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("KMM_HOME", None)
    else:
        os.environ["KMM_HOME"] = old


@pytest.fixture(scope="session")
def tiny_encoders(kmm_home):
    """`kmm://tiny-text` and `kmm://tiny-frames`, built once (about 4 s)."""
    from kmm.encoders.builtin import build_encoders

    return build_encoders(["tiny-text", "tiny-frames"], progress=False)


@pytest.fixture(scope="session")
def real_encoders(kmm_home):
    """The pretrained `kmm://minilm-l6`, `kmm://efficientnet-lite0` and `kmm://i3d-kinetics-400` (about 15 s, 160 MB)."""
    from kmm.encoders.builtin import PRETRAINED, build_encoders

    return build_encoders(PRETRAINED, progress=False)


def shared_once(tmp_path_factory, name, make):
    """`make(folder)` once per test run: the first pytest-xdist worker to ask makes it in a
    folder all workers share, under a file lock; the others wait, then read its result (JSON).
    Without xdist, the session's own temporary folder. Returns `(folder, result)`."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    with FileLock(f"{root}.lock"):
        done = root / ".result.json"
        if not done.exists():
            root.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(make(root)))
        return root, json.loads(done.read_text())


@pytest.fixture(scope="session")
def tiny_quickstart(tiny_encoders, real_encoders, tmp_path_factory):
    """`kmm quickstart --size tiny --model tiny --epochs 1 --batch-size 8`
    through `kmm.cli.main`, once: `(run_dir, export model dir, what it printed)`.

    Like the real quickstart, it also exports the pretrained Kinetics model next to it
    (`saved_models/kinetics`).
    """
    import contextlib
    import io

    from kmm.cli import main

    def make(root):
        argv = ["quickstart", "--size", "tiny", "--model", "tiny", "--epochs", "1", "--batch-size", "8",
                "--run-dir", str(root / "run"), "--export-dir", str(root / "saved_models")]  # fmt: skip
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(argv) == 0
        return printed.getvalue()

    root, printed = shared_once(tmp_path_factory, "tiny_quickstart", make)
    return root / "run", root / "saved_models" / "kmm", printed
