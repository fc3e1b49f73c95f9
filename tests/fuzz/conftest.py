"""Hypothesis profiles for the fuzz tests: `make test` runs a short, repeatable run;
`make fuzz` (FUZZ_EXAMPLES=N, default 20000) a long random one."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.budget import EXAMPLES

_checks = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "short", deadline=None, derandomize=True, suppress_health_check=_checks, print_blob=True
)
settings.register_profile(
    "long",
    deadline=None,
    max_examples=EXAMPLES or 20000,
    suppress_health_check=_checks,
    print_blob=True,
)
settings.load_profile("long" if EXAMPLES else "short")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A long run (`make fuzz`) is not bound by the suite's per-test timeout."""
    if EXAMPLES:
        for item in items:
            if "tests/fuzz/" in str(item.path).replace("\\", "/"):
                item.add_marker(pytest.mark.timeout(0))
