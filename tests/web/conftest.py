"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("ERRANDS_SCREENSHOTS", Path(__file__).parent / "screenshots"))


# Module scope, not session: while Playwright's sync API is open the main thread has a
# running asyncio loop, and every later test calling asyncio.run() there would fail.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        message = "Chromium is not installed (apt-get install chromium; .ci/run does)"
        if os.environ.get("ERRANDS_TEST_SERVICES") == "require":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium's own sandbox refuses to start as root (CI containers).
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
            args=["--no-sandbox"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def screenshots() -> Path:
    """Where the tests leave their screenshots (``$ERRANDS_SCREENSHOTS``)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
