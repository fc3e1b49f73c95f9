"""How a processor is written (the OTel Collector's `processorhelper`): one base class,
`ProcessorBase`, used in one of two ways.

- **A function** (stateless processors, and those whose state changes only within the
  call): `ProcessorHelper(settings, next_consumer, process, mutates_data=...)` turns
  `process(batch) -> batch | None` into a processor. It counts the spans in, out and
  dropped (None, or a batch with fewer spans: dropped by design) and hands the result on
  in the same call. A processor with configuration or state of its own subclasses it and
  passes its `process` method (`cleanliness`).
- **A stateful processor** (it holds batches beyond the call, or owns a background task:
  `groupbytrace`, `batch`, `memory_limiter`) subclasses `ProcessorBase` and writes
  `consume_traces` itself; one that holds spans until their trace is whole subclasses
  `processors.groupbytrace.TraceHolder` (`tail_sampling`).

What the base gives either way:

- lifecycle: `start(host)` keeps the host and calls `_start(host)`. `shutdown()` is
  idempotent and harmless without `start()`: it sets `closing` (refuse new data once it
  is set), calls `_shutdown()`, which finishes the work in hand by `shutdown_deadline()`,
  then cancels the background tasks still running.
- background tasks: `spawn(coroutine, name)`. A task that ends with an exception is a bug:
  a done-callback logs it and reports it to the host (`Host.report_fatal_error`), so the
  collector stops with an error instead of a stage silently holding data forever.
- metrics: `metrics`, the standard `otelcol_processor_{incoming,outgoing}_items` and
  `otelcol_processor_dropped_spans`; `counter`, `gauge`, `histogram` (and `counters`,
  `gauges`: one per value of an extra label, made up front; `counter_family` when the
  values are known only later) for the processor's own, labelled `processor` and
  `pipeline` like the standard ones.
- `warn`: a rate-limited warning (`pipeline.telemetry.RateLimitedLog`, one per
  `WARN_INTERVAL` seconds) for what can happen on every batch; `log` for the rest.

The steps to add a processor: docs/internals/architecture.md#adding-a-processor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from pipeline.component import Host, Settings, TracesConsumer
from pipeline.pdata import Traces
from pipeline.telemetry import RateLimitedLog

__all__ = ["ProcessFn", "ProcessorBase", "ProcessorHelper"]

ProcessFn = Callable[[Traces], Traces | None]
_NAMES = ("processor", "pipeline")


class ProcessorBase:
    """Lifecycle, background tasks, metrics and warnings of a processor; see the module
    docstring."""

    mutates_data: bool = False
    WARN_INTERVAL = 10.0  # seconds between two warnings of `warn`
    SHUTDOWN_LIMIT = 10.0  # seconds `shutdown_deadline` gives when the host sets none

    def __init__(
        self,
        settings: Settings,
        next_consumer: TracesConsumer,
        *,
        mutates_data: bool | None = None,
    ) -> None:
        if mutates_data is not None:
            self.mutates_data = mutates_data
        self.settings = settings
        self.log = settings.logger
        self.warn = RateLimitedLog(settings.logger, self.WARN_INTERVAL)
        self.labels = (str(settings.id), settings.pipeline or "")
        self.metrics = settings.telemetry.processor(*self.labels)
        self.host: Host | None = None
        self.closing = False
        self._next = next_consumer
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self, host: Host) -> None:
        self.host = host
        await self._start(host)

    async def shutdown(self) -> None:
        if self.closing:
            return
        self.closing = True
        try:
            await self._shutdown()
        finally:
            tasks = list(self._tasks)
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _start(self, host: Host) -> None:
        """What the processor does at start (e.g. `spawn` its background task)."""

    async def _shutdown(self) -> None:
        """What the processor does at shutdown, `closing` set: finish the work in hand by
        `shutdown_deadline()` (data still held then is counted and given up on)."""

    def shutdown_deadline(self) -> float:
        """The event loop time by which shutdown must be done: the host's deadline, else
        `SHUTDOWN_LIMIT` seconds from now."""
        deadline = self.host.deadline if self.host is not None else None
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self.SHUTDOWN_LIMIT
        return deadline

    # -- background tasks -------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run `coro` in a task of the processor's (cancelled at the end of shutdown if it
        is still running); an exception ending it is fatal (see the module docstring)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.settings.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self.log.error("%s failed: %s", task.get_name(), exc, exc_info=exc)
        if self.host is not None and not self.closing:
            self.host.report_fatal_error(exc)

    # -- metrics ------------------------------------------------------------------------------
    def counter(self, name: str, doc: str) -> Counter:
        return self.settings.telemetry.counter(name, doc, _NAMES).labels(*self.labels)

    def counters(
        self, name: str, doc: str, label: str, values: Iterable[str]
    ) -> dict[str, Counter]:
        family = self.counter_family(name, doc, label)
        return {v: family.labels(*self.labels, v) for v in values}

    def counter_family(self, name: str, doc: str, *extra: str) -> Counter:
        """The counter labelled `processor`, `pipeline` and `extra`: bind a child with
        `.labels(*self.labels, *values)`."""
        return self.settings.telemetry.counter(name, doc, (*_NAMES, *extra))

    def gauge(self, name: str, doc: str) -> Gauge:
        return self.settings.telemetry.gauge(name, doc, _NAMES).labels(*self.labels)

    def gauges(self, name: str, doc: str, label: str, values: Iterable[str]) -> dict[str, Gauge]:
        family = self.settings.telemetry.gauge(name, doc, (*_NAMES, label))
        return {v: family.labels(*self.labels, v) for v in values}

    def histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        return self.settings.telemetry.histogram(name, doc, _NAMES, buckets).labels(*self.labels)

    async def process_and_forward(self, traces: Traces, process: ProcessFn) -> None:
        """`process` the batch, count what came in, went on and was dropped by design
        (`None`, or fewer spans), and pass the result on in the same call."""
        n = traces.span_count
        self.metrics.incoming.inc(n)
        out = process(traces)
        kept = 0 if out is None else out.span_count
        if kept < n:
            self.metrics.dropped.inc(n - kept)
        if out is None or kept == 0:
            # nothing goes on; the caller still owns (and releases) its deliveries
            return
        self.metrics.outgoing.inc(kept)
        await self._next.consume_traces(out)


class ProcessorHelper(ProcessorBase):
    """A processor from a `process(traces) -> traces | None` function.

    `None`, or a batch with fewer spans, means spans were dropped by design (counted).
    The returned batch is passed to the next consumer in the same call."""

    def __init__(
        self,
        settings: Settings,
        next_consumer: TracesConsumer,
        process: ProcessFn,
        *,
        mutates_data: bool,
    ) -> None:
        super().__init__(settings, next_consumer, mutates_data=mutates_data)
        self._process = process

    async def consume_traces(self, traces: Traces) -> None:
        await self.process_and_forward(traces, self._process)
