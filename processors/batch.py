"""`batch` processor: groups batches into larger ones, as the OTel Collector's does.

`send_batch_size` (default 8192 spans) is the trigger, `timeout` (200ms) the longest a
span waits, `send_batch_max_size` (0 = no limit) the cap at which batches are split.
Batches merge without decoding (their encodings are concatenated).

Unlike the OTel Collector's batch processor, a refusal from downstream is not lost: the
batch is kept and retried, and while more than `send_batch_max_size` (or 4 x
`send_batch_size`) spans wait here, new data is refused with a retryable error so the
back-pressure reaches the clients.

`metadata_keys` (the Collector's): one batcher per distinct combination of the values of
these client metadata keys (receivers set them with `include_metadata: true`), each with
the settings above; what a batcher sends carries those keys (and only those) as its
client metadata, so exporters can use them (`include_metadata_keys`,
`topic_from_metadata_key`). At most `metadata_cardinality_limit` combinations (0: no
limit); data that would open one more is refused permanently, as in the Collector.
Without `metadata_keys`, batches leave with no client metadata (as in the Collector).
"""

from __future__ import annotations

import asyncio

import msgspec

from pipeline.component import Host, ProcessorFactory, Settings, TracesConsumer
from pipeline.configtypes import Config, Duration, NonNegInt, PositiveInt
from pipeline.errors import PermanentError, RefusedError
from pipeline.pdata import ClientInfo, Traces
from pipeline.processorhelper import ProcessorBase


class BatchConfig(Config):
    send_batch_size: PositiveInt = 8192
    send_batch_max_size: NonNegInt = 0
    timeout: Duration = msgspec.field(default_factory=lambda: Duration(0.2))
    metadata_keys: list[str] = []
    metadata_cardinality_limit: NonNegInt = 1000

    def validate(self) -> list[str]:
        errs = []
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            errs.append("send_batch_max_size: must be greater or equal to send_batch_size")
        seen: set[str] = set()
        for k in self.metadata_keys:
            if k.lower() in seen:
                errs.append(f"metadata_keys: duplicate entry {k!r} (case-insensitive)")
            seen.add(k.lower())
        return errs


class BatchProcessor(ProcessorBase):
    """Stateful: holds batches until a size or a timeout is reached."""

    def __init__(self, settings: Settings, cfg: BatchConfig, next_consumer: TracesConsumer) -> None:
        super().__init__(settings, next_consumer)
        self.cfg = cfg
        self._size_trigger = self.counter(
            "otelcol_processor_batch_batch_size_trigger_send", "Batches sent because of size"
        )
        self._timeout_trigger = self.counter(
            "otelcol_processor_batch_timeout_trigger_send", "Batches sent because of timeout"
        )
        self._send_size = self.histogram(
            "otelcol_processor_batch_batch_send_size",
            "Spans per sent batch",
            (
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
        )
        self._pending: list[Traces] = []
        self._pending_spans = 0
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # one timer for the pending data (armed when the buffer goes from empty to not),
        # not a wake-up per batch: the hot path only appends
        self._timer: asyncio.TimerHandle | None = None
        self._timed_flush: asyncio.Task[None] | None = None
        self._oldest = 0.0  # loop time the oldest pending batch arrived
        self._blocked_until = 0.0  # loop time; after a refusal downstream
        self._timeout = cfg.timeout.seconds
        self._size = cfg.send_batch_size
        self._limit = cfg.send_batch_max_size or 4 * cfg.send_batch_size
        # the client metadata sent batches carry (set per batcher with metadata_keys)
        self.client: ClientInfo | None = None

    async def _start(self, host: Host) -> None:
        self._loop = asyncio.get_running_loop()

    async def consume_traces(self, traces: Traces) -> None:
        if self.closing:
            raise RefusedError("batch processor is shutting down")
        if self._pending_spans >= self._limit:
            raise RefusedError(
                "downstream is not taking data; batch buffer is full", retry_after=1.0
            )
        loop = self._loop or asyncio.get_running_loop()
        n = traces.span_count
        self.metrics.incoming.inc(n)
        traces.retain()
        first = not self._pending
        if first:
            self._oldest = loop.time()
        self._pending.append(traces)
        self._pending_spans += n
        if (self._timeout == 0 or self._pending_spans >= self._size) and (
            loop.time() >= self._blocked_until
        ):
            await self._flush(size_trigger=True)
        elif first:
            self._arm()

    # -- timer ------------------------------------------------------------------------
    def _arm(self) -> None:
        """Schedule the timer for when the pending data is due (or cancel it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and not self.closing:
            loop = self._loop or asyncio.get_running_loop()
            due = max(self._oldest + self._timeout, self._blocked_until)
            self._timer = loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._pending and (self._timed_flush is None or self._timed_flush.done()):
            self._timed_flush = self.spawn(self._flush(size_trigger=False), "timed-flush")

    # -- sending ----------------------------------------------------------------------
    async def _flush(self, size_trigger: bool) -> None:
        async with self._lock:
            while self._pending and (
                not size_trigger or self._pending_spans >= self._size or self._timeout == 0
            ):
                if not await self._send_pending(size_trigger):
                    break
                if not size_trigger:
                    break
            self._arm()

    async def _send_pending(self, size_trigger: bool) -> bool:
        """Send everything pending; False if downstream refused (what it did not take
        stays pending, at the front)."""
        batch, self._pending = self._pending, []
        self._pending_spans = 0
        merged = Traces.merge(batch)
        merged.client = self.client
        max_size = self.cfg.send_batch_max_size
        parts = merged.split(max_size) if max_size else [merged]
        failed = False
        for i, part in enumerate(parts):
            try:
                await self._next.consume_traces(part)
            except RefusedError as exc:
                rest = parts[i:]
                for p in rest:
                    p.retain()
                for b in batch:
                    b.release(not failed)
                self._pending = rest + self._pending
                self._pending_spans += sum(p.span_count for p in rest)
                loop = self._loop or asyncio.get_running_loop()
                self._blocked_until = loop.time() + min(exc.retry_after, 5.0)
                self._oldest = loop.time()
                return False
            except Exception as exc:
                failed = True
                self.metrics.dropped.inc(part.span_count)
                self.log.error("dropping %d spans: downstream failed: %s", part.span_count, exc)
            else:
                self.metrics.outgoing.inc(part.span_count)
                self._send_size.observe(part.span_count)
                (self._size_trigger if size_trigger else self._timeout_trigger).inc()
        for b in batch:
            b.release(not failed)
        return True

    async def _shutdown(self) -> None:
        """Send what is left; while downstream refuses, retry until the shutdown deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timed_flush is not None:
            await asyncio.gather(self._timed_flush, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = self.shutdown_deadline()
        while self._pending:
            self._blocked_until = 0.0
            await self._flush(size_trigger=False)
            if not self._pending or loop.time() >= deadline:
                break
            await asyncio.sleep(0.1)
        if self._pending:
            n = self._pending_spans
            self.metrics.dropped.inc(n)
            self.log.error("dropping %d spans at shutdown: downstream refused them", n)
            for b in self._pending:
                b.release(False)
            self._pending = []
            self._pending_spans = 0


class MetadataBatchProcessor:
    """`batch` with `metadata_keys`: a `BatchProcessor` per combination of values."""

    mutates_data = False

    def __init__(self, settings: Settings, cfg: BatchConfig, next_consumer: TracesConsumer) -> None:
        self.settings = settings
        self.cfg = cfg
        self._next = next_consumer
        self._keys = [k.lower() for k in cfg.metadata_keys]
        self._batchers: dict[tuple[tuple[str, ...], ...], BatchProcessor] = {}
        self._host: Host | None = None
        self._closed = False
        self._refused = settings.telemetry.counter(
            "tracesieve_batch_metadata_cardinality_refused_spans",
            "Spans refused because metadata_cardinality_limit batchers exist",
            ("processor", "pipeline"),
        ).labels(str(settings.id), settings.pipeline or "")

    async def start(self, host: Host) -> None:
        self._host = host

    async def consume_traces(self, traces: Traces) -> None:
        if self._closed:
            raise RefusedError("batch processor is shutting down")
        client = traces.client
        key = tuple(client.get(k) if client is not None else () for k in self._keys)
        batcher = self._batchers.get(key)
        if batcher is None:
            limit = self.cfg.metadata_cardinality_limit
            if limit and len(self._batchers) >= limit:
                self._refused.inc(traces.span_count)
                raise PermanentError("too many batcher metadata-value combinations")
            batcher = BatchProcessor(self.settings, self.cfg, self._next)
            batcher.client = ClientInfo(
                "", {k: v for k, v in zip(self._keys, key, strict=True) if v}
            )
            if self._host is not None:
                await batcher.start(self._host)
            self._batchers[key] = batcher
        await batcher.consume_traces(traces)

    async def shutdown(self) -> None:
        self._closed = True
        for b in list(self._batchers.values()):
            await b.shutdown()


def create(
    settings: Settings, cfg: BatchConfig, next_consumer: TracesConsumer
) -> BatchProcessor | MetadataBatchProcessor:
    if cfg.metadata_keys:
        return MetadataBatchProcessor(settings, cfg, next_consumer)
    return BatchProcessor(settings, cfg, next_consumer)


factory = ProcessorFactory(
    type="batch",
    config_type=BatchConfig,
    create=create,
    stability="beta",
    description="groups spans into larger batches (by size or timeout)",
)
