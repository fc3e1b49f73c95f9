"""Pages as people see them: Debian's `chromium`, headless, driven by Playwright.

`make test` installs the browser (`make chromium`: `apt-get install chromium`); Playwright's
own browser download is never used (it needs the internet), only `executable_path`.

A test takes the `browser_page` fixture, opens a page, asserts what is drawn, and calls
`page_screenshot(page, name)` to keep a picture under `test-artifacts/`. The fixture fails
the test if the page logged a console error or threw an uncaught exception.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("TRACESIEVE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# as the machine's own probe starts it: no sandbox as root, and none of the background
# connections a closed network refuses
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not path:
        pytest.fail(
            "Debian's chromium is not installed: `make test` installs it (make chromium); "
            "by hand: apt-get install -y chromium"
        )
    return path


class ConsoleLog:
    """Console errors and uncaught exceptions of the pages it watches."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Any) -> None:
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))


# per module, not per session: while Playwright's sync API runs, its event loop counts as
# running in the main thread, and the async tests of any later module could not start
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """A fresh page (own context) whose console errors fail the test."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    log = ConsoleLog()
    log.watch(page)
    page.console_log = log
    try:
        yield page
    finally:
        context.close()
    assert not log.errors, "the page reported errors:\n" + "\n".join(log.errors)


def page_screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Keep a screenshot of `page` as a test artifact; returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 0
    return path
