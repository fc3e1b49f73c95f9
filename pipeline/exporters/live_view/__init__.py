"""`live_view` exporter: a web page of the most recent traces, their class, reasons and
fallback chains, served by the collector itself (default `http://127.0.0.1:55680/`).

It sits at the end of a pipeline, after `cleanliness`, and keeps the newest whole traces
in memory within `max_traces` and `max_bytes` (oldest evicted first, counted). The list
page shows them newest first, live over server-sent events, with their class, reasons,
task class, what served them and how long they took against their task class's median;
the trace page draws the span tree as a waterfall with tracesieve's annotations
(requested vs served provider and model, cache hits, retries, fallback chains, schema
errors). A JSON API serves the same data (`pipeline.exporters.live_view.server`).

It never holds the pipeline up. `consume_traces` only hands the batch's encoding (and its
trace index, when it carries one) to a bounded queue; when `queue_size` batches (or
`max_bytes` of them) wait, the batch is dropped from the view (counted as
`otelcol_exporter_enqueue_failed_spans`) and the pipeline goes on. Every `interval` the
queued batches are read into the store (`store`), and the pages connected are sent what
is new; a page that falls behind loses events (counted) and resynchronises. It takes no
part in delivery tracking: what it shows is a copy, never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import msgspec

from pipeline.component import ExporterFactory, Host, Settings
from pipeline.configtypes import Config, Duration, PositiveInt, check_endpoint, split_endpoint
from pipeline.errors import RefusedError
from pipeline.exporters.live_view.server import Hub, Site, event
from pipeline.exporters.live_view.store import ClassCounts, Held, TraceStore, cut, summarize
from pipeline.httpserver import HTTPServer
from pipeline.pdata import Traces
from pipeline.receivers.auth import AuthConfig
from pipeline.wholetraces import TraceIndex, current

__all__ = ["LiveViewConfig", "LiveViewExporter", "factory"]

# seconds between `stats` events on the streams: while traces come in, and when idle (the
# chart's windows slide)
STATS_EVERY = 1.0
STATS_IDLE = 5.0


class LiveViewConfig(Config):
    endpoint: str = "127.0.0.1:55680"
    # traces held (the newest); and the bytes they may take (their encodings and summaries)
    max_traces: PositiveInt = 1000
    max_bytes: PositiveInt = 64 << 20
    # batches waiting to be read into the view; beyond, batches are dropped from the view
    queue_size: PositiveInt = 64
    # how often waiting batches are read in and the pages are sent what is new
    interval: Duration = msgspec.field(default_factory=lambda: Duration(0.25))
    # events waiting for one page; beyond, the page loses them and resynchronises
    stream_buffer: PositiveInt = 64
    # a bearer token for the pages and the API (as the receivers' `auth`)
    auth: AuthConfig | None = None

    def validate(self) -> list[str]:
        errs = check_endpoint(self.endpoint)
        if self.interval.seconds <= 0:
            errs.append("interval: must be greater than 0")
        return errs


class LiveViewExporter:
    mutates_data = False

    def __init__(self, settings: Settings, cfg: LiveViewConfig) -> None:
        self.cfg = cfg
        self._id = str(settings.id)
        self._log: logging.Logger = settings.logger
        self.store = TraceStore(cfg.max_traces, cfg.max_bytes)
        self.counts = ClassCounts()
        self._queue: deque[tuple[float, bytes, TraceIndex | None, int]] = deque()
        self._queued_bytes = 0
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._server: HTTPServer | None = None
        self._site: Site | None = None
        self.url = ""
        self.dropped_spans = 0
        self.unreadable_spans = 0
        self._last_stats = 0.0
        self._facets_at: tuple[float, dict[str, list[str]]] | None = None
        tel = settings.telemetry
        self.metrics = tel.exporter(self._id)
        self.metrics.queue_capacity.set(cfg.queue_size)
        names = ("exporter",)
        self._m_traces = tel.gauge(
            "tracesieve_live_view_traces", "Traces the live view holds", names
        ).labels(self._id)
        self._m_bytes = tel.gauge(
            "tracesieve_live_view_bytes", "Bytes the live view's traces take", names
        ).labels(self._id)
        evicted = tel.counter(
            "tracesieve_live_view_evicted_traces",
            "Traces the live view let go to stay within max_traces / max_bytes",
            ("exporter", "bound"),
        )
        self._m_evicted = {b: evicted.labels(self._id, b) for b in ("max_traces", "max_bytes")}
        self._evicted_seen = {b: 0 for b in self._m_evicted}
        self._m_streams = tel.gauge(
            "tracesieve_live_view_streams", "Pages (event streams) connected", names
        ).labels(self._id)
        m_dropped = tel.counter(
            "tracesieve_live_view_stream_dropped_events",
            "Events not sent to a page that fell behind (it resynchronises)",
            names,
        ).labels(self._id)
        self.hub = Hub(cfg.stream_buffer, m_dropped.inc)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self, host: Host) -> None:
        h, p = split_endpoint(self.cfg.endpoint)
        self._site = Site(self, h)
        self._server = HTTPServer(self._site.app, h, p)
        bh, bp = await self._server.start()
        shown = f"[{bh}]" if ":" in bh else bh
        self.url = f"http://{shown}:{bp}/"
        token = (
            " (bearer token required: open it with ?token=<token> once)" if self.cfg.auth else ""
        )
        host.announce(f"exporters::{self._id}: live view on {self.url}{token}")
        self._running = True
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def shutdown(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.hub.close()
        if self._server is not None:
            await self._server.stop()
            self._server = None
        self._queue.clear()
        self._queued_bytes = 0

    # -- the pipeline's side: a hand-off, never a wait ----------------------------------------
    async def consume_traces(self, traces: Traces) -> None:
        if not self._running:
            raise RefusedError("live_view exporter is not running")
        n = traces.span_count
        raw = traces.to_bytes()
        if len(self._queue) >= self.cfg.queue_size or (
            self._queued_bytes + len(raw) > self.cfg.max_bytes
        ):
            self.dropped_spans += n
            self.metrics.enqueue_failed.inc(n)
            return
        # the index as it is now: `cut` uses it only while it is still one of `raw`
        self._queue.append((time.time(), raw, current(traces), n))
        self._queued_bytes += len(raw)

    # -- the view's side ------------------------------------------------------------------------
    async def _run(self) -> None:
        interval = self.cfg.interval.seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await self.take_in()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the view die of one bad batch
                self._log.exception("live view: reading traces in failed")

    async def take_in(self) -> int:
        """Read the waiting batches into the store and tell the pages; the traces taken."""
        self.metrics.queue_size.set(len(self._queue))
        new: dict[bytes, Held] = {}
        store, counts = self.store, self.counts
        for i in range(len(self._queue)):  # what waits now; later batches, next time
            if i:
                await asyncio.sleep(0)  # between batches, the pipeline goes first
            received, raw, index, n = self._queue.popleft()
            self._queued_bytes -= len(raw)
            try:
                for tid, data, a, b, count, facts in cut(raw, index):
                    summary = summarize(tid, data, a, b, count, facts, received)
                    if store.get(tid) is None:  # a fragment of a trace held is not another
                        counts.add(summary.cls, received)
                    h = store.put(tid, data, a, b, summary)
                    if h is not None:
                        new[tid] = h
            except ValueError as exc:  # WireError: a batch no receiver would have let in
                self.unreadable_spans += n
                self.metrics.send_failed.inc(n)
                self._log.warning("live view: a batch of %d spans is unreadable: %s", n, exc)
                continue
            self.metrics.sent.inc(n)
        self._m_traces.set(len(store))
        self._m_bytes.set(store.bytes)
        for bound, m in self._m_evicted.items():
            d = store.evicted[bound] - self._evicted_seen[bound]
            if d:
                m.inc(d)
                self._evicted_seen[bound] = store.evicted[bound]
        self.metrics.queue_size.set(len(self._queue))
        hub = self.hub
        if hub.streams:
            if new:
                hub.publish_traces(list(new.values()))
            now = time.monotonic()
            if now - self._last_stats >= (STATS_EVERY if new else STATS_IDLE):
                self._last_stats = now
                hub.publish(event("stats", self.stats()))
        return len(new)

    def streams_changed(self) -> None:
        self._m_streams.set(len(self.hub.streams))

    def stats(self) -> dict[str, Any]:
        store = self.store
        return {
            "windows": self.counts.windows(),
            "held": len(store),
            "bytes": store.bytes,
            "seq": store.seq,
            "max_traces": store.max_traces,
            "max_bytes": store.max_bytes,
            "evicted": dict(store.evicted),
            "dropped_spans": self.dropped_spans,
            "unreadable_spans": self.unreadable_spans,
            "streams": len(self.hub.streams),
            "facets": self._facets(),
        }

    def _facets(self) -> dict[str, list[str]]:
        """The held traces' task classes and providers, found again every few seconds."""
        now = time.monotonic()
        if self._facets_at is None or now - self._facets_at[0] >= STATS_IDLE:
            self._facets_at = (now, self.store.facets())
        return self._facets_at[1]


factory = ExporterFactory(
    type="live_view",
    config_type=LiveViewConfig,
    create=LiveViewExporter,
    stability="alpha",
    description="a web page of recent traces: class, reasons, fallback chains (never blocks)",
)
