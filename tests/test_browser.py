"""Chromium (Debian's, driven by Playwright) uses the page as a class would: draws digits and presses Run at
once (also while other chains run), checks the layout at 1280x720, steps through a chain by hand and
opens a share link in a fresh page. MEBM_SCREENSHOT=path also saves a screenshot (the README's)."""
import io
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers_app import ROOT, save_tiny_model, start_app, stop_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium): browser test skipped",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# multi-stroke digits, strokes as polylines in units of the drawing area (-1..1)
DIGITS = {
    "7": [[(-0.5, -0.6), (0.5, -0.6)], [(0.5, -0.6), (-0.1, 0.7)]],
    "4": [[(-0.3, -0.7), (-0.5, 0.1), (0.4, 0.1)], [(0.2, -0.5), (0.2, 0.7)]],
    "1": [[(0.0, -0.7), (0.0, 0.7)], [(-0.25, 0.7), (0.25, 0.7)]],
    "5": [[(0.4, -0.6), (-0.3, -0.6), (-0.35, 0.0)], [(-0.35, 0.0), (0.35, 0.1), (0.3, 0.6), (-0.4, 0.6)]],
}


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


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, url, width=1600, height=1100):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    expect(page.locator("#sketch canvas").first).to_be_visible(timeout=30000)
    brush = page.locator("#sketch button[aria-label=Brush]").first
    expect(brush).to_have_class(re.compile("highlight"), timeout=10000)  # the page selects the brush itself
    return page


def draw(page, strokes):
    box = page.locator("#sketch canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    r = min(box["width"], box["height"]) / 5
    for stroke in strokes:
        (x0, y0), rest = stroke[0], stroke[1:]
        page.mouse.move(cx + x0 * r, cy + y0 * r)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(cx + x * r, cy + y * r, steps=8)
        page.mouse.up()


STAMPS = """() => { window._stamps = {};
  document.addEventListener('pointerup', () => { window._stamps.up = performance.now(); }, true);
  document.querySelector('#run').addEventListener('click', () => { window._stamps.run = performance.now(); }, true); }"""


def draw_and_run(page, strokes):
    """Draw, then press Run at once: the page's own clock says how long after the last stroke."""
    run = page.locator("#run")
    run.scroll_into_view_if_needed()
    page.evaluate(STAMPS)
    box = run.bounding_box()
    draw(page, strokes)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    gap = page.evaluate("window._stamps.run - window._stamps.up")
    assert 0 < gap < 200, f"Run pressed {gap:.0f} ms after the last stroke"


def clear(page):
    page.locator("#sketch button[aria-label='Clear canvas']").first.click()
    brush = page.locator("#sketch button[aria-label=Brush]").first
    if "highlight" not in (brush.get_attribute("class") or ""):
        brush.click()


def picture(page, elem):
    src = page.locator(f"#{elem} img").first.get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def run_and_wait(page, timeout=30000):
    page.locator("#run").click()
    expect(page.locator("#status")).to_contain_text("Done", timeout=timeout)


def test_run_right_after_drawing(served, browser):
    """Run pressed within 200 ms of the last stroke uses what the canvas shows, for several digits; the
    same canvas run again later gives the same input picture (nothing of the drawing was lost)."""
    page = open_page(browser, served)
    for name, strokes in DIGITS.items():
        clear(page)
        draw_and_run(page, strokes)
        expect(page.locator("#status")).to_contain_text("Done", timeout=30000)
        assert "empty" not in page.locator("#status").inner_text()
        quick = picture(page, "input_preview")
        run_and_wait(page)
        assert (picture(page, "input_preview") == quick).all(), f"digit {name}: the quick Run missed part of it"
    clear(page)  # the message about an empty canvas appears when, and only when, it is empty
    page.locator("#run").click()
    expect(page.get_by_text(re.compile("canvas is (empty|blank)")).first).to_be_visible(timeout=20000)
    page.close()


def test_run_right_after_drawing_while_chains_run(served, browser):
    """Other visitors' chains running (over the API) and this page's own chain still streaming: a digit
    drawn and run at once is still the one the model is given."""
    from gradio_client import Client, handle_file

    c = Client(served, verbose=False)
    long = ("upload", None, handle_file(str(ROOT / "assets/example_7.png")), 0, 8, 0, 0.03, 40, 1.0, True, 0, False)
    jobs = [c.submit(*long, api_name="/run") for _ in range(2)]
    page = open_page(browser, served)
    draw_and_run(page, DIGITS["4"])  # while the two API chains hold the queue's two slots
    expect(page.locator("#status")).to_contain_text(re.compile("step|Done"), timeout=90000)
    first = picture(page, "input_preview")
    clear(page)
    draw_and_run(page, DIGITS["1"])  # and again while this page's own chain may still be running
    for _ in range(120):  # the second press runs once the first run ends (the page's latest press wins)
        page.wait_for_timeout(500)
        if "Done" in page.locator("#status").inner_text() and not (picture(page, "input_preview") == first).all():
            break
    expect(page.locator("#status")).to_contain_text("Done", timeout=1000)
    one = picture(page, "input_preview")
    run_and_wait(page)
    assert (picture(page, "input_preview") == one).all() and not (one == first).all()
    for j in jobs:
        j.result()
    page.close()
