"""The collector's cyclic-GC policy once it has started (see docs/internals/gc.md).

1. What is alive then (modules, config, components) is frozen: later passes skip it.
2. The young generation's automatic threshold is raised (`GC_THRESHOLD`): a batch in
   flight holds tens of thousands of containers (the GenAI index), freed by reference
   counting, which passes every 700 allocations would walk again and again.
3. `YoungCollector` collects the young generation from a timer on the event loop, so
   between callbacks, when no batch is half-way through a handler. grpc's aio server
   leaves one reference cycle of five objects behind each request it serves
   (`_find_method_handler`'s closure); left to the raised threshold, they piled up to one
   pass every ~10,000 requests that took 45-90 ms inside some request's handler.
"""

from __future__ import annotations

import asyncio
import gc

from pipeline.errors import ConfigError

GC_THRESHOLD = (50_000, 10, 10)
"""The cyclic GC's automatic thresholds once started (CPython's default: 700, 10, 10).
With `YoungCollector` running, the first is a backstop for a burst within one callback."""

YOUNG_AT = 1_000
"""`YoungCollector` collects once the young generation has this many more containers
allocated than freed (a pass over ~1,000 objects: ~0.2 ms)."""

YOUNG_EVERY = 0.1
"""Seconds between `YoungCollector`'s looks at the young generation's count."""


def gc_threshold(value: str | None) -> tuple[int, ...]:
    """`TRACESIEVE_GC_THRESHOLD` (1 to 3 comma-separated integers for
    `gc.set_threshold`), or `GC_THRESHOLD` when unset or empty."""
    if not value:
        return GC_THRESHOLD
    try:
        parts = tuple(int(x) for x in value.split(","))
    except ValueError:
        parts = ()
    if not 1 <= len(parts) <= 3 or min(parts) < 0:
        raise ConfigError(
            [
                f"TRACESIEVE_GC_THRESHOLD: {value!r}: want 1 to 3 comma-separated integers "
                "≥ 0, as for gc.set_threshold (e.g. 700,10,10)"
            ]
        )
    return parts


def generation(
    counts: tuple[int, int, int], thresholds: tuple[int, ...], at: int = YOUNG_AT
) -> int | None:
    """The generation to collect now (None: not yet): once the young one holds `at`
    objects, the oldest whose count exceeds its threshold, as CPython chooses (CPython
    also puts a full pass off until a quarter of the old objects are new; that count is
    not visible from Python, so a full pass here follows the count alone)."""
    c0, c1, c2 = counts
    if c0 < at:
        return None
    t1 = thresholds[1] if len(thresholds) > 1 else 10
    t2 = thresholds[2] if len(thresholds) > 2 else 10
    return 2 if c2 > t2 else 1 if c1 > t1 else 0


class YoungCollector:
    """Every `every` seconds, a callback of its own on the event loop collects the
    generation that `generation` picks."""

    def __init__(self, at: int = YOUNG_AT, every: float = YOUNG_EVERY) -> None:
        self.at = at
        self.every = every
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.every, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        gen = generation(gc.get_count(), gc.get_threshold(), self.at)
        if gen is not None and gc.isenabled():
            gc.collect(gen)
        self._handle = asyncio.get_running_loop().call_later(self.every, self._tick)
