"""Demo latency in a real browser: cold start to first result, and per query.

Starts `kmm demo` on a free port, drives it with headless Debian Chromium (Playwright),
and times: server up (`/_stcore/health`), first classification on screen (cold: TensorFlow
import + model load), the Search page (gallery index: built on first use, then cached),
and then several text queries and several classifications. Baseline in the same run: the
same classification through `kmm.serving.client` in this process (no UI), to show what the UI adds.

Run: .venv/bin/python benchmarks/demo_latency.py [--model saved_models/kmm] [--fresh-index]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

QUERIES = ["a red circle moving to the left", "a blue square grows", "a green triangle rotates",
           "a yellow star moves up", "a white circle shrinks"]  # fmt: skip


def settled(page, label):
    """Waits until a rerun has finished replacing the page (one input with this label left)."""
    page.wait_for_function(f"document.querySelectorAll('input[aria-label=\"{label}\"]').length === 1")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="saved_models/kmm")
    parser.add_argument("--fresh-index", action="store_true", help="Delete the cached demo indexes first.")
    parser.add_argument("--out", default="benchmarks/results/demo_latency.json")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from kmm.paths import kmm_home

    if args.fresh_index:
        shutil.rmtree(kmm_home() / "demo" / "index", ignore_errors=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = {"model": args.model}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "kmm.cli", "demo", "--model", args.model, "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.1)
        result["server_up_s"] = round(time.perf_counter() - start, 2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(600_000)
            page.goto(f"http://127.0.0.1:{port}")
            page.get_by_text(re.compile(r"for test_")).wait_for()
            result["cold_start_to_first_classification_s"] = round(time.perf_counter() - start, 2)

            times = []
            for text in ["the red circle", "the blue square", "the green star", ""]:
                settled(page, "Optional text")
                t0 = time.perf_counter()
                box = page.get_by_label("Optional text")
                box.fill(text or " ")
                box.press("Enter")
                page.get_by_text(f"text: {text}" if text else re.compile(r"for test_")).first.wait_for()
                page.wait_for_load_state("networkidle")
                times.append(time.perf_counter() - t0)
            result["classify_per_query_s"] = round(statistics.median(times), 2)

            t0 = time.perf_counter()
            page.get_by_test_id("stSidebar").get_by_text("Search", exact=True).click()
            page.get_by_text("Gallery:").wait_for()
            result["search_page_ready_s (index built or loaded)"] = round(time.perf_counter() - t0, 2)
            times = []
            for query in QUERIES:
                settled(page, "Describe a video")
                t0 = time.perf_counter()
                box = page.get_by_label("Describe a video")
                box.fill(query)
                box.press("Enter")
                page.get_by_text(re.compile(rf"videos for {re.escape(query)}")).wait_for()
                page.locator("[data-testid='stImage'] img").nth(7).wait_for()
                times.append(time.perf_counter() - t0)
            result["search_per_query_s (first, median)"] = [round(times[0], 2), round(statistics.median(times[1:]), 2)]
            browser.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

    # Baseline, same run: the request alone through the client, in process.
    from kmm.serving.client import connect
    from kmm.serving.export import read_gallery
    from kmm.serving.index import clip_frames

    client = connect(args.model)
    video = read_gallery(client.path)["videos"][0]
    client.classify(clip_frames(video, 8, 128)[None], ["x"])
    t0 = time.perf_counter()
    for _ in range(5):
        client.classify(clip_frames(video, 8, 128)[None], ["the red circle"])
    result["baseline_client_classify_incl_decode_s"] = round((time.perf_counter() - t0) / 5, 3)
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
