"""A real browser for the report's tests, load-time benchmark and screenshot: Debian's Chromium
driven by Selenium through Debian's chromedriver (never a browser Selenium would download).

``apt-get install -y chromium chromium-driver`` and the ``browser`` extra (selenium) provide it;
``missing()`` says in one line what is absent, so tests can skip with that reason.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = os.environ.get("SCREEN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SCREEN_CHROMEDRIVER", "/usr/bin/chromedriver")
STARTS = 2  # attempts to start Chromium


class BrowserDidNotStart(RuntimeError):
    """Chromium is installed but did not come up in time."""


def missing() -> str | None:
    """Why no browser can be driven here, or None when one can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[browser]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} not found (apt-get install -y {package})"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator["object"]:
    """A headless Chromium WebDriver with the browser console captured; quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.common.exceptions import SessionNotCreatedException
    from urllib3.exceptions import ReadTimeoutError
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-extensions", "--no-first-run", "--hide-scrollbars",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = None
    for attempt in range(STARTS):
        try:
            driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
            break
        except (SessionNotCreatedException, ReadTimeoutError) as exc:
            # chromedriver gives Chromium 60 s to come up (and Selenium gives chromedriver 120 s);
            # on a machine loaded far beyond its cores that is sometimes not enough.
            if attempt == STARTS - 1:
                raise BrowserDidNotStart(f"Chromium did not start after {STARTS} attempts "
                                         f"({exc.__class__.__name__}): is the machine overloaded?") from exc
    try:
        yield driver
    finally:
        driver.quit()


def console_problems(driver) -> list[str]:
    """Console messages at warning level or worse since the last call (errors, CSP refusals)."""
    return [f"{entry['level']}: {entry['message']}" for entry in driver.get_log("browser")
            if entry["level"] in ("SEVERE", "WARNING")]


def wait_ready(driver, timeout: float = 30.0) -> None:
    """Until the report's script has drawn the first page (it sets data-ready on <html>)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.documentElement.dataset.ready === 'true'"))
