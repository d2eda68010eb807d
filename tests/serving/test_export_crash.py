"""Exports survive a kill: no partial version is ever visible, leftovers are cleaned, files are readable."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from kmm.serving.export import export_model, list_versions, remove_stale_exports
from tests.serving.conftest import tiny_parts

EXPORT = """
import sys
from tests.serving.conftest import tiny_parts
from kmm.serving.export import export_model
export_model(tiny_parts(), sys.argv[1], "tiny", warmup=False)
"""


def test_a_version_is_readable_by_other_users(exported):
    _, path, _, _ = exported
    for folder, _, files in os.walk(path):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755, folder
        for f in files:
            assert stat.S_IMODE(os.stat(os.path.join(folder, f)).st_mode) == 0o644, f


@pytest.mark.slow  # a fresh process
def test_sigkill_during_export_leaves_the_old_versions_and_the_next_export_cleans_up(exported, tmp_path):
    base = tmp_path / "saved_models"
    first = base / "tiny" / "1"
    shutil.copytree(exported[1], first)
    before = sorted(p.name for p in first.rglob("*"))
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-c", EXPORT, str(base)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    # Kill it once the SavedModel is being written into its temporary folder.
    while not list((base / "tiny").glob(".export-*/variables")):
        assert process.poll() is None and time.monotonic() < deadline, "the export never started writing"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert [p.name for p in list_versions(base / "tiny")] == ["1"]
    assert sorted(p.name for p in first.rglob("*")) == before
    assert not [p for p in (base / "tiny").iterdir() if p.name.isdigit() and p.name != "1"]  # nothing partial
    leftover = list((base / "tiny").glob(".export-*"))
    assert len(leftover) == 1
    # An export in progress (a live pid) is never touched; the killed one is.
    live = base / "tiny" / f".export-{os.getpid()}-busy"
    live.mkdir()
    second = export_model(tiny_parts(), base, "tiny", warmup=False)
    assert second.name == "2" and (second / "saved_model.pb").exists()
    assert sorted(p.name for p in (base / "tiny").glob(".export-*")) == [live.name]
    assert remove_stale_exports(base / "tiny") == []
