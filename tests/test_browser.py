"""Chromium (Debian's, driven by Playwright) draws a digit on the sketchpad, presses Run, and sees the
streamed grid and the classifier read-out. MEBM_SCREENSHOT=path also saves a screenshot (the README's)."""
import os
import re
import shutil
from pathlib import Path

import pytest

from helpers_app import save_tiny_model, start_app, stop_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium): browser test skipped",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    checkpoint = os.environ.get("MEBM_BROWSER_CHECKPOINT") or save_tiny_model(tmp / "mebm")
    fps = "40" if os.environ.get("MEBM_SCREENSHOT") else "60"
    proc, url = start_app(checkpoint, tmp, {"MEBM_FPS": fps})
    try:
        yield url
    finally:
        stop_app(proc)


def test_draw_run_stream_readout(served):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.goto(served)
        sketch = page.locator("#sketch")
        expect(sketch).to_be_visible(timeout=20000)
        sketch.scroll_into_view_if_needed()
        brush = page.locator("#sketch button[aria-label=Brush]").first
        expect(brush).to_be_visible()
        page.wait_for_timeout(800)  # the page selects the brush on load; select it here if that did not happen
        if "highlight" not in (brush.get_attribute("class") or ""):
            brush.click()
        expect(brush).to_have_class(re.compile("highlight"))
        canvas = sketch.locator("canvas").first
        expect(canvas).to_be_visible()
        box = canvas.bounding_box()
        cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) / 6
        page.mouse.move(cx - r, cy - r)            # a '7': top bar, then the diagonal
        page.mouse.down()
        page.mouse.move(cx + r, cy - r, steps=25)
        page.mouse.move(cx - r / 3, cy + 1.5 * r, steps=25)
        page.mouse.up()
        expect(page.locator("#source input[value=draw]")).to_be_checked()
        expect(page.locator("#input_preview img")).to_be_visible(timeout=20000)  # the drawing reached the server
        page.locator("#run").click()
        expect(page.locator("#grid img")).to_be_visible(timeout=20000)           # the streamed grid
        expect(page.locator("#status")).to_contain_text(re.compile("step|Done"), timeout=20000)
        expect(page.locator("#readout")).to_contain_text("%", timeout=20000)     # the classifier read-out
        expect(page.locator("#status")).to_contain_text("Done", timeout=30000)
        assert page.locator("#readout").inner_text().count("%") >= 5
        shot = os.environ.get("MEBM_SCREENSHOT")
        if shot:
            page.screenshot(path=shot, full_page=True)
        browser.close()
