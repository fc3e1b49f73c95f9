"""The browser harness itself: Debian's chromium opens a page, and console errors are seen."""

from __future__ import annotations

from typing import Any

from tests.browser import ConsoleLog, page_screenshot


def test_a_page_renders_and_a_screenshot_is_kept(browser_page: Any) -> None:
    browser_page.set_content("<h1 id=t>tracesieve</h1><script>document.title='ok'</script>")
    assert browser_page.inner_text("#t") == "tracesieve"
    assert browser_page.title() == "ok"
    path = page_screenshot(browser_page, "harness")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_errors_and_uncaught_exceptions_are_caught(chromium: Any) -> None:
    context = chromium.new_context()
    page = context.new_page()
    log = ConsoleLog()
    log.watch(page)
    with page.expect_event("pageerror"):
        page.set_content(
            "<script>console.error('bad'); setTimeout(() => { throw new Error('boom') })</script>"
        )
    context.close()
    assert any("bad" in e for e in log.errors)
    assert any("boom" in e for e in log.errors)
