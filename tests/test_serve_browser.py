"""`annorm serve` in a real headless Chromium (Debian's chromium + chromedriver, driven by
Selenium): load a photo, paint a stroke with mouse events, press Fill and check the returned
image; generate a grid and download a sample with its PNG text chunks.

Skipped where the browser is not installed (`.ci/run` installs it)."""
from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver")]


@pytest.fixture(scope="module")
def server():
    """The app on a free localhost port, in a thread, for the whole module."""
    import uvicorn

    from annorm_cli.server.app import create_app
    listener = socket.create_server(("127.0.0.1", 0))
    instance = uvicorn.Server(uvicorn.Config(create_app("cpu"), log_level="warning"))
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    instance.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the page")


def _blob(browser, expression: str) -> np.ndarray:
    """A Blob the page holds (a JS expression giving a Blob or a Promise of one) as an array."""
    data = browser.execute_async_script(
        f"const done = arguments[0]; Promise.resolve({expression}).then(b => annormPage.blobBase64(b)).then(done);")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def _screenshot(browser, name: str) -> None:
    """With ANNORM_SCREENSHOTS=folder, keep a picture of the page (the README's screenshots)."""
    folder = os.environ.get("ANNORM_SCREENSHOTS")
    if folder:
        browser.save_screenshot(str(Path(folder) / name))


def test_inpaint_page_fills_a_painted_stroke(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(120, 40, (240, 320, 3)), 0, 255).astype(np.uint8)
    photo[:, :, 2] = np.linspace(60, 220, 320).astype(np.uint8)[None]          # some structure to continue
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)

    browser.get(server)
    _wait(lambda: browser.execute_script("return document.getElementById('inpaint-model').options.length"))
    browser.find_element(By.ID, "photo-file").send_keys(str(path))
    canvas = _wait(lambda: browser.find_element(By.ID, "mask-canvas").is_displayed()
                   and browser.find_element(By.ID, "mask-canvas"))
    box = canvas.rect
    ActionChains(browser).move_to_element_with_offset(canvas, -box["width"] // 5, 0).click_and_hold() \
        .move_by_offset(box["width"] // 5, 10).move_by_offset(box["width"] // 5, -10).release().perform()
    assert browser.execute_script("return annormPage.inpaint.ops.length") == 1
    mask = _blob(browser, "annormPage.exportMask()")[..., 0] > 127                  # [240, 320]: what the page sends
    assert mask.shape == photo.shape[:2] and 0.02 < mask.mean() < 0.5
    _screenshot(browser, "serve-inpaint-painted.png")

    browser.find_element(By.ID, "fill").click()
    _wait(lambda: browser.execute_script("return annormPage.inpaint.fills") == 1)
    filled = _blob(browser, "annormPage.inpaint.photo")[..., :3]
    assert filled.shape == photo.shape
    assert np.array_equal(filled[~mask], photo[~mask])                         # outside the stroke: the same bits
    assert np.abs(filled[mask].astype(int) - photo[mask]).mean() > 5           # under it: filled anew
    assert browser.find_element(By.ID, "download").is_displayed()
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
    _screenshot(browser, "serve-inpaint-filled.png")


def test_inpaint_page_shows_a_bad_file_in_one_sentence(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    browser.get(server)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(photo)
    browser.find_element(By.ID, "photo-file").send_keys(str(photo))
    _wait(lambda: browser.find_element(By.ID, "mask-canvas").is_displayed())
    wrong = tmp_path / "square-mask.png"
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(wrong)
    browser.find_element(By.ID, "mask-file").send_keys(str(wrong))
    error = _wait(lambda: browser.find_element(By.ID, "error").text)
    assert "another aspect ratio" in error and error.endswith(".") and "\n" not in error


def test_generate_page_grid_and_download(server, browser, downloads):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    browser.get(server)
    _wait(lambda: len(Select(browser.find_element(By.ID, "generate-class")).options) > 1)
    browser.find_element(By.CSS_SELECTOR, ".tab[data-view=generate]").click()
    Select(browser.find_element(By.ID, "generate-class")).select_by_value("cat")
    seed = browser.find_element(By.ID, "generate-seed")
    seed.clear()
    seed.send_keys("5")
    browser.find_element(By.ID, "generate").click()
    figures = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#grid figure"))
    assert len(figures) == 8
    _screenshot(browser, "serve-generate.png")
    figures[2].click()
    target = downloads / "cat-seed0007.png"
    _wait(lambda: target.exists() and target.stat().st_size > 0)
    with Image.open(target) as image:
        assert image.size == (32, 32)
        assert image.text["annorm:class"] == "cat" and image.text["annorm:seed"] == "7"
        assert image.text["annorm:truncation"] == "none" and len(image.text["annorm:sha256"]) == 64


def test_layout_page_shows_entities(server, browser):
    from selenium.webdriver.common.by import By
    browser.get(server)
    _wait(lambda: browser.execute_script("return document.getElementById('layout-class').options.length"))
    browser.find_element(By.CSS_SELECTOR, ".tab[data-view=layout]").click()
    browser.find_element(By.ID, "layout").click()
    rows = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".layer .entity"))
    assert len(rows) >= 3
    rows[1].click()
    assert "on" in rows[1].get_attribute("class")
    _screenshot(browser, "serve-layout.png")
