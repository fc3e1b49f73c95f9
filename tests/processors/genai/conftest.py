"""Fixtures of the end-to-end GenAI tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processors.genai.e2e import Fakes


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    """The fake OpenAI and Anthropic APIs, one pair per test module."""
    f = Fakes()
    yield f
    f.close()
