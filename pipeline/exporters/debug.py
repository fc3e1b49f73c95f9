"""`debug` exporter: what goes through, on stderr.

`verbosity: basic` logs one line per batch (counts only), or, with `summary_interval`
set, one summary line per interval; `normal` one line per span; `detailed` every span
with its attributes. Per-span output is for debugging, not for production load.

As the OTel Collector's: each batch's output is one log entry, sampled per second (the
first `sampling_initial` entries of each second are written, then every
`sampling_thereafter`-th; defaults 2 and 1: all). With `use_internal_logger: false` the
entries go to `output_paths` instead of tracesieve's log: `stdout`, `stderr` or file
paths (appended to), one line each."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import IO, Literal

import msgspec

from pipeline.component import ExporterFactory, Host, Settings
from pipeline.configtypes import Config, Duration, PositiveInt
from pipeline.pdata import Traces

_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


class DebugExporterConfig(Config):
    verbosity: Literal["basic", "normal", "detailed"] = "basic"
    sampling_initial: PositiveInt = 2
    sampling_thereafter: PositiveInt = 1
    use_internal_logger: bool = True
    output_paths: list[str] = []
    # ours: with basic verbosity, print a summary every interval instead of every batch
    summary_interval: Duration = msgspec.field(default_factory=lambda: Duration(0.0))

    @classmethod
    def preprocess(cls, raw: object) -> object:
        """The verbosity is case-insensitive, as in the Collector."""
        if isinstance(raw, dict) and isinstance(raw.get("verbosity"), str):
            raw["verbosity"] = raw["verbosity"].lower()
        return raw

    def validate(self) -> list[str]:
        if not self.use_internal_logger and not self.output_paths:
            return [
                "output_paths: output_paths must not be empty when use_internal_logger is false"
            ]
        if self.use_internal_logger and self.output_paths:
            return ["output_paths: output_paths is not supported when use_internal_logger is true"]
        return []


class Sampler:
    """zap's sampler, as the Collector configures it for the debug exporter: per second,
    the first `initial` entries, then every `thereafter`-th."""

    def __init__(self, initial: int, thereafter: int) -> None:
        self.initial = initial
        self.thereafter = thereafter
        self._second = -1
        self._count = 0

    def allow(self, now: float | None = None) -> bool:
        second = int(time.monotonic() if now is None else now)
        if second != self._second:
            self._second, self._count = second, 0
        self._count += 1
        n = self._count
        return n <= self.initial or (n - self.initial) % self.thereafter == 0


class DebugExporter:
    mutates_data = False

    def __init__(self, settings: Settings, cfg: DebugExporterConfig) -> None:
        self.cfg = cfg
        self._log = settings.logger
        self.metrics = settings.telemetry.exporter(str(settings.id))
        self._total = 0
        self._window = 0
        self._task: asyncio.Task[None] | None = None
        self._sampler = Sampler(cfg.sampling_initial, cfg.sampling_thereafter)
        self._outputs: list[IO[str]] = []
        self._owned: list[IO[str]] = []

    async def start(self, host: Host) -> None:
        if not self.cfg.use_internal_logger:
            for path in self.cfg.output_paths:
                if path == "stdout":
                    self._outputs.append(sys.stdout)
                elif path == "stderr":
                    self._outputs.append(sys.stderr)
                else:
                    fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open
                    self._outputs.append(fh)
                    self._owned.append(fh)
        if self.cfg.verbosity == "basic" and self.cfg.summary_interval.seconds > 0:
            self._task = asyncio.get_running_loop().create_task(self._summaries())

    def _emit(self, lines: list[str]) -> None:
        """One entry (a batch's lines), through the sampler, to the log or the outputs."""
        if not self._sampler.allow():
            return
        if self.cfg.use_internal_logger:
            for line in lines:
                self._log.info("%s", line)
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        text = "".join(f"{stamp}\tinfo\t{line}\n" for line in lines)
        for out in self._outputs:
            out.write(text)
            out.flush()

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
                rs = len(traces.request.resource_spans)
                self._emit([f"traces: {rs} resource spans, {n} spans"])
            return
        lines: list[str] = []
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
            lines.append(line)
        self._emit(lines)

    async def shutdown(self) -> None:
        for fh in self._owned:
            fh.close()
        self._owned = []
        self._outputs = []
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
