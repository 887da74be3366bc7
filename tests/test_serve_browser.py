"""`annorm serve` in a real headless Chromium (Debian's chromium + chromedriver, driven by
Selenium): load a photo, paint a stroke with mouse events, press Fill and check the returned
image; generate a grid and download a sample with its PNG text chunks.

Skipped where the browser is not installed (`.ci/run` installs it)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from annorm_cli.server import browser as browser_tools  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.skipif(browser_tools.browser_missing() is not None,
                                                   reason="Selenium and Debian's chromium + chromium-driver")]


@pytest.fixture(scope="module")
def server():
    from annorm_cli.server.app import create_app
    with browser_tools.running_server(create_app("cpu")) as address:
        yield address


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    with browser_tools.chromium(downloads) as driver:
        yield driver


def _screenshot(browser, name: str) -> None:
    """With ANNORM_SCREENSHOTS=folder, keep a picture of the page (the README's screenshots)."""
    folder = os.environ.get("ANNORM_SCREENSHOTS")
    if folder:
        browser.save_screenshot(str(Path(folder) / name))


def test_inpaint_page_fills_a_painted_stroke(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(120, 40, (240, 320, 3)), 0, 255).astype(np.uint8)
    photo[:, :, 2] = np.linspace(60, 220, 320).astype(np.uint8)[None]          # some structure to continue
    if os.environ.get("ANNORM_SCREENSHOT_PHOTO"):                              # a real photo for the README
        photo = np.asarray(Image.open(os.environ["ANNORM_SCREENSHOT_PHOTO"]).convert("RGB"))
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)

    browser_tools.open_page(browser, server)
    canvas = browser_tools.open_photo(browser, path)
    browser_tools.paint_stroke(browser, canvas)
    assert browser.execute_script("return annormPage.inpaint.ops.length") == 1
    mask = browser_tools.page_blob(browser, "annormPage.exportMask()")[..., 0] > 127    # [H, W]: what the page sends
    assert mask.shape == photo.shape[:2] and 0.02 < mask.mean() < 0.5
    _screenshot(browser, "serve-inpaint-painted.png")

    assert browser_tools.fill(browser) > 0
    filled = browser_tools.page_blob(browser, "annormPage.inpaint.photo")[..., :3]
    assert filled.shape == photo.shape
    assert np.array_equal(filled[~mask], photo[~mask])                         # outside the stroke: the same bits
    assert np.abs(filled[mask].astype(int) - photo[mask]).mean() > 5           # under it: filled anew
    assert browser.find_element(By.ID, "download").is_displayed()
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
    _screenshot(browser, "serve-inpaint-filled.png")


def test_inpaint_page_shows_a_bad_file_in_one_sentence(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    browser_tools.open_page(browser, server)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(photo)
    browser_tools.open_photo(browser, photo)
    wrong = tmp_path / "square-mask.png"
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(wrong)
    browser.find_element(By.ID, "mask-file").send_keys(str(wrong))
    error = browser_tools.wait_for(lambda: browser.find_element(By.ID, "error").text)
    assert "another aspect ratio" in error and error.endswith(".") and "\n" not in error


def test_generate_page_grid_and_download(server, browser, downloads):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    browser.get(server)
    browser_tools.wait_for(lambda: len(Select(browser.find_element(By.ID, "generate-class")).options) > 1)
    browser.find_element(By.CSS_SELECTOR, ".tab[data-view=generate]").click()
    Select(browser.find_element(By.ID, "generate-class")).select_by_value("cat")
    seed = browser.find_element(By.ID, "generate-seed")
    seed.clear()
    seed.send_keys("5")
    browser.find_element(By.ID, "generate").click()
    figures = browser_tools.wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#grid figure"))
    assert len(figures) == 8
    _screenshot(browser, "serve-generate.png")
    figures[2].click()
    target = downloads / "cat-seed0007.png"
    browser_tools.wait_for(lambda: target.exists() and target.stat().st_size > 0)
    with Image.open(target) as image:
        assert image.size == (32, 32)
        assert image.text["annorm:class"] == "cat" and image.text["annorm:seed"] == "7"
        assert image.text["annorm:truncation"] == "none" and len(image.text["annorm:sha256"]) == 64


def test_layout_page_shows_entities(server, browser):
    from selenium.webdriver.common.by import By
    browser.get(server)
    browser_tools.wait_for(lambda: browser.execute_script("return document.getElementById('layout-class').options.length"))
    browser.find_element(By.CSS_SELECTOR, ".tab[data-view=layout]").click()
    browser.find_element(By.ID, "layout").click()
    rows = browser_tools.wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".layer .entity"))
    assert len(rows) >= 3
    rows[1].click()
    assert "on" in rows[1].get_attribute("class")
    _screenshot(browser, "serve-layout.png")
