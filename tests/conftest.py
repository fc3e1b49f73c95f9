"""Shared fixtures. Processes are started the way a user starts them (the CLI)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from pipeline.testing import Collector, InProcessCollector, free_port

pytest_plugins = ["tests.browser"]  # chromium, browser_page

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def collector_factory(tmp_path) -> Iterator:  # type: ignore[no-untyped-def]
    """Start collectors from config dicts; all are stopped at the end of the test."""
    started: list[Collector] = []

    def make(config, **kw):  # type: ignore[no-untyped-def]
        c = Collector(config, workdir=kw.pop("workdir", str(tmp_path)), **kw)
        started.append(c)
        return c.start()

    yield make
    for c in started:
        c.stop()


@pytest.fixture
async def service_factory(tmp_path) -> AsyncIterator:  # type: ignore[no-untyped-def]
    """Start collectors in the test's event loop (`InProcessCollector`: the service the
    CLI runs, without the process) from config dicts; all are stopped at the end. For
    tests where no process boundary is under test; signals, exit codes, kill -9 and
    chaining go through `collector_factory`."""
    started: list[InProcessCollector] = []

    async def make(config, **kw):  # type: ignore[no-untyped-def]
        c = InProcessCollector(config, workdir=kw.pop("workdir", str(tmp_path)), **kw)
        started.append(c)
        return await c.start()

    yield make
    for c in reversed(started):
        await c.stop()


@pytest.fixture
def ports() -> Iterator:  # type: ignore[no-untyped-def]
    yield lambda n=1: [free_port() for _ in range(n)]
