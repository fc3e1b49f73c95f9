"""`debug` exporter: what goes through, on stderr.

`verbosity: basic` logs one line per batch (counts only), or, with `summary_interval`
set, one summary line per interval; `normal` one line per span; `detailed` every span
with its attributes. Per-span output is for debugging, not for production load."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import msgspec

from pipeline.component import ExporterFactory, Host, Settings
from pipeline.configtypes import Config, Duration
from pipeline.pdata import Traces

_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


class DebugExporterConfig(Config):
    verbosity: Literal["basic", "normal", "detailed"] = "basic"
    # ours: with basic verbosity, print a summary every interval instead of every batch
    summary_interval: Duration = msgspec.field(default_factory=lambda: Duration(0.0))


class DebugExporter:
    mutates_data = False

    def __init__(self, settings: Settings, cfg: DebugExporterConfig) -> None:
        self.cfg = cfg
        self._log = settings.logger
        self.metrics = settings.telemetry.exporter(str(settings.id))
        self._total = 0
        self._window = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: Host) -> None:
        if self.cfg.verbosity == "basic" and self.cfg.summary_interval.seconds > 0:
            self._task = asyncio.get_running_loop().create_task(self._summaries())

    async def _summaries(self) -> None:
        interval = self.cfg.summary_interval.seconds
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if self._window:
                self._log.info(
                    "%d spans in the last %.0fs (%.0f/s); %d in all",
                    self._window,
                    now - last,
                    self._window / (now - last),
                    self._total,
                )
            self._window = 0
            last = now

    async def consume_traces(self, traces: Traces) -> None:
        n = traces.span_count
        self._total += n
        self._window += n
        self.metrics.sent.inc(n)
        v = self.cfg.verbosity
        if v == "basic":
            if self._task is None:
                self._log.info(
                    "traces: %d resource spans, %d spans", len(traces.request.resource_spans), n
                )
            return
        for _rs, _ss, span in traces.spans():
            line = (
                f"span {span.name!r} trace={span.trace_id.hex()} id={span.span_id.hex()} "
                f"parent={span.parent_span_id.hex() or '-'} "
                f"duration={(span.end_time_unix_nano - span.start_time_unix_nano) / 1e6:.3f}ms "
                f"status={_STATUS.get(span.status.code, span.status.code)}"
            )
            if v == "detailed":
                attrs = ", ".join(f"{kv.key}={_value(kv.value)}" for kv in span.attributes)
                line += f" attributes={{{attrs}}}"
            self._log.info("%s", line)

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            if self._window:
                self._log.info(
                    "%d spans since the last summary; %d in all", self._window, self._total
                )


def _value(v: object) -> str:
    which = v.WhichOneof("value")  # type: ignore[attr-defined]
    return repr(getattr(v, which)) if which else "<empty>"


factory = ExporterFactory(
    type="debug",
    config_type=DebugExporterConfig,
    create=DebugExporter,
    stability="beta",
    description="counts or spans on stderr",
)
