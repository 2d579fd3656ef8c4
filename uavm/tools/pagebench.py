"""What a user waits for in the browser: a fresh app on loopback driven by Chromium
(Playwright), timing from the click to the updated labels and heatmaps (figures, not tests).

Needs the test extras (playwright) and Debian's chromium (/usr/bin/chromium); never
downloads a browser."""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time

from .localapp import LocalApp

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]


def _stats(xs) -> dict:
    xs = sorted(xs)
    return {"median_ms": round(1000 * statistics.median(xs), 1), "max_ms": round(1000 * xs[-1], 1), "n": len(xs)}


def run(toggles: int = 20, chromium: str = "", device: str = "cpu", log=print) -> dict:
    from playwright.sync_api import sync_playwright

    chromium = chromium or shutil.which("chromium") or "/usr/bin/chromium"
    work = tempfile.mkdtemp(prefix="uavm-pagebench-")
    app = LocalApp(work, device=device, timeout=300)
    url = app.url
    try:
        r = {"launch_to_page_s": round(app.started_s, 2)}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#examples", timeout=120_000)

            def wait(js):
                page.wait_for_function(js, timeout=60_000)

            labels = "() => (document.querySelector('#label-audio')?.innerText || '').includes('%')"
            audio_rows = "() => (document.querySelector('#plot-temporal')?.innerText || '').includes('audio pass')"
            t = time.time()
            page.locator("#examples button").first.click()
            wait(labels)
            r["first_example_labels_ms"] = round(1000 * (time.time() - t), 1)
            wait(audio_rows)
            r["first_example_heatmaps_ms"] = round(1000 * (time.time() - t), 1)
            page.wait_for_timeout(1000)
            box = page.locator("#audio-on input[type=checkbox]")
            to_labels, to_plots, server = [], [], []
            for i in range(toggles):
                off = i % 2 == 0
                t = time.time()
                box.click()
                wait("() => (document.querySelector('#label-audio')?.innerText || '').includes('turned off')" if off
                     else labels)
                to_labels.append(time.time() - t)
                wait(f"() => {'!' if off else ''}(document.querySelector('#plot-temporal')?.innerText || '')"
                     ".includes('audio pass')")
                to_plots.append(time.time() - t)
                status = page.locator("#status").inner_text()
                if "server time " in status:
                    server.append(float(status.split("server time ")[1].split(" ms")[0]) / 1000)
                page.wait_for_timeout(300)
            r["toggle_to_labels"] = _stats(to_labels)
            r["toggle_to_heatmaps"] = _stats(to_plots)
            r["toggle_server"] = _stats(server) if server else None
            browser.close()
        return r
    finally:
        app.stop()
        shutil.rmtree(work, ignore_errors=True)
