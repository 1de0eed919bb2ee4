"""Chromium (Debian's, driven by Playwright) uses the model with captions as a visitor would: chooses it, types a
caption and presses Run at once, sees the frames arrive and the captions of every stage, and gets the one line
that names an unknown word (the typed text staying in the box)."""
import re

import pytest

from helpers_app import save_tiny_caption_model, save_tiny_model, start_app, stop_app
from test_browser import ARGS, CHROMIUM, open_page

pytestmark = pytest.mark.slow
from playwright.sync_api import expect, sync_playwright  # noqa: E402

# counts the grid's pictures as they arrive (each streamed frame is a new PNG data URL)
COUNT_FRAMES = """() => { window._frames = new Set();
  new MutationObserver(() => { const i = document.querySelector('#grid img'); if (i) window._frames.add(i.src); })
    .observe(document.querySelector('#grid'), {subtree: true, childList: true, attributes: true}); }"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser_caption")
    save_tiny_caption_model(tmp / "mebm_captions")   # found beside the five-image checkpoint
    proc, url = start_app(save_tiny_model(tmp / "mebm"), tmp, {"MEBM_FPS": "20"})
    try:
        yield url
    finally:
        stop_app(proc)


def test_a_typed_caption_runs_and_every_stage_shows_captions(served):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = open_page(browser, served)
        assert not page.locator("#caption_box").is_visible() and not page.locator("#stage_captions").is_visible()
        page.locator("#model label", has_text="+ caption").click()
        expect(page.locator("#caption_box")).to_be_visible(timeout=10000)
        page.locator("#source label", has_text="Caption").click()
        box = page.locator("#caption input, #caption textarea").first
        box.fill("a thin seven leaning right")
        page.evaluate(COUNT_FRAMES)
        page.locator("#run").click()                  # at once
        expect(page.locator("#status")).to_contain_text("Done", timeout=60000)
        assert page.evaluate("window._frames.size") >= 3, "the frames did not stream"
        expect(page.locator("#stage_captions textarea")).to_have_value(
            re.compile("Given caption: a thin seven leaning right"), timeout=10000)
        # images -> captions: the unconditional run's samples get a caption after every stage
        page.locator("#source label", has_text="Unconditional").click()
        page.locator("#run").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=60000)
        text = page.locator("#stage_captions textarea").input_value()
        assert text.startswith("proposal\n  1: ") and re.search(r"EBM data revision · step \d+/\d+\n  1: ", text), text
        assert "<" not in text
        # an unknown word: named in one line, the typed text kept
        page.locator("#source label", has_text="Caption").click()
        box.fill("a purple seven")
        page.locator("#run").click()
        expect(page.get_by_text(re.compile("Unknown word in the caption: 'purple'")).first).to_be_visible(
            timeout=20000)
        expect(page.locator("#status")).to_contain_text("Not run", timeout=10000)
        assert box.input_value() == "a purple seven"
        # a shared link of a caption run opens with the model, the input and the caption set, and runs
        link = page.locator("#share_link").get_attribute("href")
        page.close()
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(served.rstrip("/") + "/" + link.replace("src=unconditional", "src=caption&cap=the+digit+3%2C+bold"))
        expect(page.locator("#status")).to_contain_text("restored", timeout=30000)
        expect(page.locator("#caption input, #caption textarea").first).to_have_value("the digit 3, bold")
        expect(page.locator("#model input[value=captions]")).to_be_checked()
        expect(page.locator("#source input[value=caption]")).to_be_checked()
        page.locator("#run").click()
        expect(page.locator("#stage_captions textarea")).to_have_value(re.compile("Given caption: the digit 3, bold"),
                                                                       timeout=60000)
        browser.close()
