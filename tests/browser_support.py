"""Playwright with the distribution's Chromium (never `playwright install`); skips without it."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS_ENV = "HEALTHGATE_SCREENSHOTS"  # "1": tests write docs/img/*.png (off in CI: clean tree)
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
BROWSER_WAIT_MS = 20_000  # hang guard for anything the page must show (shared, slow machines)


def chromium_path() -> str | None:
    override = os.environ.get("HEALTHGATE_CHROMIUM")
    for candidate in ((override,) if override else ()) + CHROMIUM_CANDIDATES:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A fresh page in headless Debian Chromium; skips with the reason where there is none."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install '.[dev]')")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium (apt-get install -y chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            page = context.new_page()
            page.set_default_timeout(BROWSER_WAIT_MS)
            yield page
            context.close()
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> None:
    """Write docs/img/<name> for the documentation, only when asked (HEALTHGATE_SCREENSHOTS=1)."""
    if os.environ.get(SCREENSHOTS_ENV) != "1":
        return
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMG / name), full_page=True)
