"""How many examples each fuzz test runs: a short repeatable run in `make test`,
FUZZ_EXAMPLES each in `make fuzz`."""

from __future__ import annotations

import os

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))


def examples(short: int) -> int:
    return EXAMPLES or short
