"""Consumer plumbing: fan-out, and the helper that turns a `process(batch)` function into a
processor with metrics, lifecycle and forwarding (the OTel Collector's processorhelper)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from pipeline.component import Host, Settings, TracesConsumer
from pipeline.errors import RefusedError
from pipeline.pdata import Traces


class FanOut:
    """Sends each batch to several consumers. Consumers that mutate data get a copy,
    except that the last of them gets the original when no read-only consumer shares it.
    Every consumer is tried; the first error (a retryable one if any) is raised after."""

    def __init__(self, consumers: Sequence[TracesConsumer]) -> None:
        self._readonly = [c for c in consumers if not c.mutates_data]
        self._mutating = [c for c in consumers if c.mutates_data]
        self.mutates_data = False  # it copies for those that mutate

    async def consume_traces(self, traces: Traces) -> None:
        errors: list[BaseException] = []
        last = len(self._mutating) - 1
        for i, c in enumerate(self._mutating):
            batch = traces if (i == last and not self._readonly) else traces.copy()
            try:
                await c.consume_traces(batch)
            except Exception as exc:
                errors.append(exc)
        for c in self._readonly:
            try:
                await c.consume_traces(traces)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise next((e for e in errors if isinstance(e, RefusedError)), errors[0])


def fanout(consumers: Sequence[TracesConsumer]) -> TracesConsumer:
    return consumers[0] if len(consumers) == 1 else FanOut(consumers)


ProcessFn = Callable[[Traces], Traces | None]


class ProcessorHelper:
    """A stateless processor from a `process(traces) -> traces | None` function.

    `None`, or a batch with fewer spans, means spans were dropped by design (counted).
    The returned batch is passed to the next consumer in the same call."""

    def __init__(
        self,
        settings: Settings,
        next_consumer: TracesConsumer,
        process: ProcessFn,
        *,
        mutates_data: bool,
        start: Callable[[Host], Awaitable[None]] | None = None,
        shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._process = process
        self._next = next_consumer
        self._start = start
        self._shutdown = shutdown
        self.mutates_data = mutates_data
        self.metrics = settings.telemetry.processor(str(settings.id), settings.pipeline or "")

    async def start(self, host: Host) -> None:
        if self._start is not None:
            await self._start(host)

    async def shutdown(self) -> None:
        if self._shutdown is not None:
            await self._shutdown()

    async def consume_traces(self, traces: Traces) -> None:
        n = traces.span_count
        self.metrics.incoming.inc(n)
        out = self._process(traces)
        kept = 0 if out is None else out.span_count
        if kept < n:
            self.metrics.dropped.inc(n - kept)
        if out is None or kept == 0:
            # nothing goes on; the caller still owns (and releases) its deliveries
            return
        self.metrics.outgoing.inc(kept)
        await self._next.consume_traces(out)
