"""Chromium at 1280x720 with the page's class-scale parts: the latent view drawing a path per sample, the energy
check's histogram with the run's energies marked and its sentence, and the 50-sample statistics with n and 95 %
intervals."""
import base64
import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import test_browser
from demo.energy import ENERGY_FILE
from demo.latent import SAMPLE_COLORS
from helpers_app import ROOT, TINY, save_tiny_model, start_app, stop_app
from model.prior import PRIOR_FILE, GaussianMixture
from test_browser import DIGITS, draw, open_page
from playwright.sync_api import expect

pytestmark = pytest.mark.slow
browser = test_browser.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny model with an ex-post prior and the shipped energy check beside it."""
    tmp = tmp_path_factory.mktemp("figures")
    folder = save_tiny_model(tmp / "mebm")
    d = TINY["latent_dim"]
    torch.manual_seed(0)
    GaussianMixture(torch.ones(3) / 3, 2 * torch.randn(3, d), torch.eye(d).expand(3, d, d).clone()).save(
        folder / PRIOR_FILE)
    shutil.copy(ROOT / "checkpoints/mebm" / ENERGY_FILE, folder / ENERGY_FILE)
    proc, url = start_app(folder, tmp, {"MEBM_FPS": "60"})
    try:
        yield url
    finally:
        stop_app(proc)


def image_of(page, selector) -> np.ndarray:
    src = page.locator(f"{selector} img").first.get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


def test_latent_view_energy_check_and_fifty_samples(served, browser):
    page = open_page(browser, served)
    draw(page, DIGITS["7"])
    page.get_by_text("Does a lower energy mean data-like?").click()   # below the fold: drawn first
    expect(page.locator("#energy_words")).to_contain_text("Holds:")
    expect(page.locator("#energy_words")).to_contain_text("not for 300:")   # the shipped check's chains from noise
    expect(page.locator("#energy_words")).to_contain_text("100 test tuples")
    before = image_of(page, "#energy_hist")
    page.locator("#run").click()
    expect(page.locator("#status")).to_contain_text("Done", timeout=60000)
    view = page.locator("#latent_view img").first
    expect(view).to_be_visible()
    latent = image_of(page, "#latent_view")
    for b in range(3):   # the default run's three samples: a path each, in its colour
        rgb = np.array([int(SAMPLE_COLORS[b][i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(latent.astype(int) - rgb).sum(-1) < 10).sum() > 20, b
    box = view.bounding_box()   # its 18-20 px text at 14 px or more
    assert box["width"] >= 300 and box["height"] >= 250 and box["width"] / latent.shape[1] >= 14 / 18, box
    expect(page.locator("#energy_hist img").first).to_be_visible()
    after = image_of(page, "#energy_hist")
    assert after.shape == before.shape and not np.array_equal(after, before)    # the run's energies marked
    page.locator("#stats").click()
    expect(page.locator("#stats_words")).to_contain_text("50 samples, seed 0", timeout=120000)
    expect(page.locator("#stats_words")).to_contain_text("50 samples × 4 generated modalities = 200 images")
    table = page.locator("#stats_table")
    expect(table).to_contain_text("95 % interval")
    for stage in ("proposal", "latent revision", "EBM data revision"):
        expect(table).to_contain_text(stage)
    expect(table).to_contain_text("/200")
    page.close()
