"""A headless Chromium driving the page of ``python -m nfinpaint.serve``: finding the browser, a
server on a free loopback port in a thread, a WebDriver that downloads into a folder.

Used by ``tests/test_serve_browser.py`` and ``scripts/serve_screenshot.py``.
"""
import contextlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_NAMES = ("chromedriver",)
# Debian's chromium-driver; elsewhere a chromedriver on PATH (it must match the browser's version)
DRIVER_PLACES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def find_chromium() -> tuple[str | None, str | None, str]:
    """(browser, driver, why not): the Chromium binary and its chromedriver, or None and the reason."""
    browser = os.environ.get("NFINPAINT_CHROMIUM") or next(
        (found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)
    driver = os.environ.get("NFINPAINT_CHROMEDRIVER") or next(
        (found for name in DRIVER_NAMES if (found := shutil.which(name))), None) or next(
        (place for place in DRIVER_PLACES if os.access(place, os.X_OK)), None)
    if browser is None:
        return None, driver, "no Chromium found (apt-get install chromium chromium-driver, or set NFINPAINT_CHROMIUM)"
    if driver is None:
        return browser, None, "no chromedriver found (apt-get install chromium-driver, or set NFINPAINT_CHROMEDRIVER)"
    return browser, driver, ""


@contextlib.contextmanager
def running_server(app):
    """``app`` served by uvicorn on 127.0.0.1 at a free port, in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def chromium(browser: str, driver: str, downloads: Path, size: tuple[int, int] = (1400, 1000)):
    """A headless Chromium WebDriver whose downloads land in ``downloads``."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={size[0]},{size[1]}", "--force-device-scale-factor=1",
                "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False,
                                              # a second download from the page is not "automatic" spam
                                              "profile.default_content_setting_values.automatic_downloads": 1})
    web = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    try:
        web.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        yield web
    finally:
        web.quit()


def wait_for_download(folder: Path, seen: set[str] = frozenset(), timeout: float = 30.0) -> Path:
    """The finished file in ``folder`` not named in ``seen`` (Chromium writes ``*.crdownload``
    until a download is done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = {p.name for p in folder.iterdir()} - set(seen)
        if names and not any(name.endswith(".crdownload") for name in names):
            return folder / sorted(names)[0]
        time.sleep(0.05)
    raise TimeoutError(f"no download finished in {folder} within {timeout:.0f} s")
