"""The Tansu broker fixture of the Kafka tests, for the audit's kafka:// input; and the
browser for this directory's own module only: Playwright's sync API keeps an event loop
running in the main thread while it is open, which `asyncio.run` in later tests (the Kafka
helpers, the exporters) cannot share, so it is closed when the module that used it ends
rather than at the end of the session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import CHROMIUM_ARGS, chromium_path
from tests.kafka.conftest import kafka_broker

__all__ = ["chromium", "kafka_broker"]


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
