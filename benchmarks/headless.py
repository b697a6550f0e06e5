"""Headless Chromium for the explorer's page (selenium + Debian's chromium and chromium-driver):
shared by ``benchmarks/bench_explore.py`` and ``tests/test_explore.py``."""

from __future__ import annotations

import shutil
import time

# Every element matching a CSS selector, inside Bokeh's shadow roots too.
FIND_ALL = """
const selector = arguments[0], found = [];
(function walk(root) {
  root.querySelectorAll(selector).forEach((e) => found.push(e));
  root.querySelectorAll("*").forEach((e) => { if (e.shadowRoot) walk(e.shadowRoot); });
})(document);
return found;
"""


def missing() -> str | None:
    """Why no headless browser can be started here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")) or not shutil.which("chromedriver"):
        return "no headless Chromium: apt-get install chromium chromium-driver (.ci/run does)"
    return None


def start():
    """A headless Chromium with its console log kept (raises if :func:`missing` says why not)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    why = missing()
    if why:
        raise RuntimeError(why)
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def wait(browser, script: str, limit_s: float = 30.0):
    """The first truthy value of ``script`` within ``limit_s`` (TimeoutError otherwise)."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"the page did not get there in {limit_s} s: {script}")


def errors(browser) -> list:
    """The console's errors since the last call."""
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


READY = "return window.aggloExplore && window.aggloExplore.ready"
