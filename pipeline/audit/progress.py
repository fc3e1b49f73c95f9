"""The audit's progress bar (`rich`), on stderr, only when stderr is a terminal and not
`--quiet`: per phase (reading, auditing, timing) what is done of the total where it is
known (bytes read of the inputs' size; spans audited), spans per second and the time
left."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None
        self._spans = 0
        self._since = time.monotonic()
        self._unit = ""

    def phase(self, name: str, total: float | None, unit: str) -> None:
        """Start a phase: `unit` "bytes" (what the bar counts: bytes read) or "spans"."""
        if not self.enabled:
            return
        if self._bar is None:
            self._start()
        if self._task is not None:
            self._bar.update(self._task, visible=False)
        self._unit = unit
        self._spans = 0
        self._since = time.monotonic()
        self._task = self._bar.add_task(name, total=total, spans_per_s="", unit=unit)

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        class _Amount(DownloadColumn):
            """Bytes for the reading phase, a count of spans otherwise."""

            def render(self, task: Any) -> Any:
                if task.fields.get("unit") == "bytes":
                    return super().render(task)
                return MofNCompleteColumn().render(task)

        self._bar = Bar(
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(),
            TaskProgressColumn(),
            _Amount(),
            TextColumn("{task.fields[spans_per_s]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
            refresh_per_second=5,
        )
        self._bar.start()

    def advance(self, n: int) -> None:
        """`n` more of the phase's unit done (in the auditing phases, spans)."""
        if self._task is None:
            return
        if self._unit == "spans":
            self._spans += n
        self._bar.update(self._task, advance=n, spans_per_s=self._rate())

    def spans(self, n: int) -> None:
        """`n` more spans decoded (the reading phase counts bytes)."""
        if self._task is None:
            return
        self._spans += n
        self._bar.update(self._task, spans_per_s=self._rate())

    def _rate(self) -> str:
        dt = time.monotonic() - self._since
        return f"{self._spans / dt:,.0f} spans/s" if dt > 0.2 else ""

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._task = None
