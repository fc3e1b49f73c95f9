"""`batch` processor: groups batches into larger ones, as the OTel Collector's does.

`send_batch_size` (default 8192 spans) is the trigger, `timeout` (200ms) the longest a
span waits, `send_batch_max_size` (0 = no limit) the cap at which batches are split.
Batches merge without decoding (their encodings are concatenated).

Unlike the OTel Collector's batch processor, a refusal from downstream is not lost: the
batch is kept and retried, and while more than `send_batch_max_size` (or 4 x
`send_batch_size`) spans wait here, new data is refused with a retryable error so the
back-pressure reaches the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec

from pipeline.component import Host, ProcessorFactory, Settings, TracesConsumer
from pipeline.configtypes import Config, Duration, NonNegInt, PositiveInt
from pipeline.errors import RefusedError
from pipeline.pdata import Traces


class BatchConfig(Config):
    send_batch_size: PositiveInt = 8192
    send_batch_max_size: NonNegInt = 0
    timeout: Duration = msgspec.field(default_factory=lambda: Duration(0.2))

    def validate(self) -> list[str]:
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            return ["send_batch_max_size: must be greater or equal to send_batch_size"]
        return []


class BatchProcessor:
    mutates_data = False

    def __init__(self, settings: Settings, cfg: BatchConfig, next_consumer: TracesConsumer) -> None:
        self.cfg = cfg
        self._next = next_consumer
        self._log = settings.logger
        self.metrics = settings.telemetry.processor(str(settings.id), settings.pipeline or "")
        tel = settings.telemetry
        labels = (str(settings.id), settings.pipeline or "")
        names = ("processor", "pipeline")
        self._size_trigger = tel.counter(
            "otelcol_processor_batch_batch_size_trigger_send", "Batches sent because of size", names
        ).labels(*labels)
        self._timeout_trigger = tel.counter(
            "otelcol_processor_batch_timeout_trigger_send", "Batches sent because of timeout", names
        ).labels(*labels)
        self._send_size = tel.histogram(
            "otelcol_processor_batch_batch_send_size",
            "Spans per sent batch",
            names,
            buckets=(
                10,
                25,
                50,
                75,
                100,
                250,
                500,
                750,
                1000,
                2000,
                3000,
                4000,
                5000,
                6000,
                7000,
                8000,
                9000,
                10000,
                20000,
                30000,
                50000,
                100000,
            ),
        ).labels(*labels)
        self._pending: list[Traces] = []
        self._pending_spans = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._oldest = 0.0
        self._blocked_until = 0.0  # after a refusal downstream
        self._limit = cfg.send_batch_max_size or 4 * cfg.send_batch_size
        self._closed = False

    async def start(self, host: Host) -> None:
        self._task = asyncio.get_running_loop().create_task(self._timer(), name="batch-timer")

    async def consume_traces(self, traces: Traces) -> None:
        if self._closed:
            raise RefusedError("batch processor is shutting down")
        if self._pending_spans >= self._limit:
            raise RefusedError(
                "downstream is not taking data; batch buffer is full", retry_after=1.0
            )
        n = traces.span_count
        self.metrics.incoming.inc(n)
        traces.retain()
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(traces)
        self._pending_spans += n
        if self.cfg.timeout.seconds == 0 or self._pending_spans >= self.cfg.send_batch_size:
            if time.monotonic() >= self._blocked_until:
                await self._flush(size_trigger=True)
        else:
            self._wake.set()

    async def _flush(self, size_trigger: bool) -> None:
        async with self._lock:
            while self._pending and (
                not size_trigger
                or self._pending_spans >= self.cfg.send_batch_size
                or self.cfg.timeout.seconds == 0
            ):
                batch, self._pending = self._pending, []
                self._pending_spans = 0
                merged = Traces.merge(batch)
                parts = (
                    merged.split(self.cfg.send_batch_max_size)
                    if self.cfg.send_batch_max_size
                    else [merged]
                )
                for i, part in enumerate(parts):
                    try:
                        await self._next.consume_traces(part)
                    except RefusedError as exc:
                        # keep what was not taken, at the front, and try again later
                        rest = parts[i:]
                        self._pending = rest + self._pending
                        self._pending_spans += sum(p.span_count for p in rest)
                        self._blocked_until = time.monotonic() + min(exc.retry_after, 5.0)
                        self._oldest = time.monotonic()
                        for b in batch:
                            b.release()
                        for p in rest:
                            p.retain()
                        self._wake.set()
                        return
                    except Exception as exc:
                        self.metrics.dropped.inc(part.span_count)
                        self._log.error(
                            "dropping %d spans: downstream failed: %s", part.span_count, exc
                        )
                    else:
                        self.metrics.outgoing.inc(part.span_count)
                        self._send_size.observe(part.span_count)
                        (self._size_trigger if size_trigger else self._timeout_trigger).inc()
                for b in batch:
                    b.release()
                if not size_trigger:
                    break

    async def _timer(self) -> None:
        timeout = self.cfg.timeout.seconds
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            due = max(self._oldest + timeout, self._blocked_until) - time.monotonic()
            if due > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due)
                continue
            await self._flush(size_trigger=False)

    async def shutdown(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        # send what is left; if downstream refuses, retry until it takes it or gives up
        for _ in range(100):
            if not self._pending:
                break
            self._blocked_until = 0
            await self._flush(size_trigger=False)
            if self._pending:
                await asyncio.sleep(0.1)
        if self._pending:
            n = self._pending_spans
            self.metrics.dropped.inc(n)
            self._log.error("dropping %d spans at shutdown: downstream refused them", n)
            for b in self._pending:
                b.release(False)
            self._pending = []


factory = ProcessorFactory(
    type="batch",
    config_type=BatchConfig,
    create=BatchProcessor,
    stability="beta",
    description="groups spans into larger batches (by size or timeout)",
)
