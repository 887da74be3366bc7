"""Driving the page in a real headless Chromium (Debian's chromium + chromedriver, Selenium):
shared by the browser test and `annorm bench serve`."""
from __future__ import annotations

import base64
import contextlib
import io
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from annorm_cli.errors import AnnormError


def browser_missing() -> Optional[str]:
    """None when Selenium, chromium and chromedriver are all here, else what to install."""
    import importlib.util
    if importlib.util.find_spec("selenium") is None:
        return "Selenium is not installed: pip install 'annorm[test]'."
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "Chromium is not installed: apt-get install chromium chromium-driver."
    return None


@contextlib.contextmanager
def running_server(app) -> Iterator[str]:
    """The app on a free localhost port in a thread; yields its address."""
    import uvicorn
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


@contextlib.contextmanager
def chromium(download_dir: Optional[Path] = None, size: tuple[int, int] = (1400, 1000)):
    """A headless Chromium driven by Selenium."""
    missing = browser_missing()
    if missing:
        raise AnnormError(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    if download_dir is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                                  "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(predicate: Callable, timeout: float = 60.0):
    """The first truthy value of predicate(), polled every 50 ms."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the page")


def open_page(driver, address: str) -> float:
    """Load the page and wait for the model list; returns the page's load time in seconds
    (navigation start to the load event)."""
    driver.get(address)
    wait_for(lambda: driver.execute_script("return document.getElementById('inpaint-model').options.length"))
    return driver.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000


def open_photo(driver, path: Path):
    """Pick a photo with the file input; returns the mask canvas once it shows."""
    from selenium.webdriver.common.by import By
    driver.find_element(By.ID, "photo-file").send_keys(str(path))
    return wait_for(lambda: driver.find_element(By.ID, "mask-canvas").is_displayed()
                    and driver.find_element(By.ID, "mask-canvas"))


def paint_stroke(driver, canvas) -> None:
    """A zigzag stroke with the mouse across the middle of the canvas."""
    from selenium.webdriver.common.action_chains import ActionChains
    width = canvas.rect["width"]
    ActionChains(driver).move_to_element_with_offset(canvas, -width // 5, 0).click_and_hold() \
        .move_by_offset(width // 5, 10).move_by_offset(width // 5, -10).release().perform()


def fill(driver) -> float:
    """Press Fill and wait for the result; returns the page's click-to-result time in seconds."""
    from selenium.webdriver.common.by import By
    before = driver.execute_script("return annormPage.inpaint.fills")
    driver.find_element(By.ID, "fill").click()
    wait_for(lambda: driver.execute_script("return annormPage.inpaint.fills") == before + 1
             or driver.find_element(By.ID, "error").text)
    error = driver.find_element(By.ID, "error").text
    if error:
        raise AssertionError(f"the page showed an error: {error}")
    return driver.execute_script("return annormPage.inpaint.lastFillSeconds")


def page_blob(driver, expression: str) -> np.ndarray:
    """A Blob the page holds (a JS expression giving a Blob or a Promise of one) as an image array."""
    from PIL import Image
    data = driver.execute_async_script(
        f"const done = arguments[0]; Promise.resolve({expression}).then(b => annormPage.blobBase64(b)).then(done);")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
