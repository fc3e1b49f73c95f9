"""`groupbytrace` processor: holds spans until their trace is complete, then passes whole
traces on, as the OTel Collector's groupbytrace does.

A trace is released when nothing more of it has arrived for `wait_duration`, or for the
shorter `wait_duration_after_root` once its root span (the span without a parent) is in.
Traces released together go out in one batch (up to `_MAX_RELEASE_SPANS` spans; a trace is
never split), trace-aligned and indexed for later components (`pipeline.wholetraces`).

Limits: at most `num_traces` traces and `memory_limit_mib` of held span data; beyond them
the oldest trace is released early ("evicted": counted, never dropped). Spans of a trace
released within the last `released_cache_size` traces are passed on at once as a *late*
fragment (`release == "late"` in the index), for `tail_sampling` to apply the decision it
cached for the trace. At shutdown every pending trace is released.

The holding machinery is `TraceHolder`, a processor base that `tail_sampling` reuses to
hold traces itself when no `groupbytrace` comes before it (`HoldSettings` says how long
and from when a trace is held, and names its metrics).

Stateful (one releaser task). Spans are held compactly, as their encodings: a request is
taken apart with `pipeline.otlpwire` (spans are never decoded), and the spans a batch
brings to a trace are kept as one bytes blob of framed span fields (no Python object per
span, nothing for the garbage collector to walk), with the resource and scope encodings
shared by all spans that came with them. A released batch is built by joining bytes. Deliveries: every batch's deliveries are retained once per trace it added
spans to, and released once that trace has been handed on (or given up on).

Back-pressure: if downstream refuses, released traces wait and are retried; while more
than the limits wait to go out, new data is refused (retryable).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import weakref
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass

import msgspec

from pipeline import wirescan
from pipeline.component import Host, ProcessorFactory, Settings, TracesConsumer
from pipeline.configtypes import Config, Duration, NonNegInt, PositiveInt
from pipeline.errors import InvalidDataError, RefusedError
from pipeline.otlpwire import (
    TAG_1,
    TAG_2,
    varint,
)
from pipeline.pdata import Delivery, Traces
from pipeline.processorhelper import ProcessorBase
from pipeline.wholetraces import RELEASES, TraceEntry, TraceIndex
from pipeline.wirescan import WireError

MIB = 1 << 20
# Estimated memory beyond the encodings: per blob of spans (a bytes object, a list slot)
# and per trace (its record, dict and ordering entries, chunk list); see
# benchmarks/memory.py for the measured figures these approximate.
BLOB_OVERHEAD = 64
TRACE_OVERHEAD = 600
_MAX_RELEASE_SPANS = 8192
_COALESCE = 0.01  # release up to 10 ms late so that traces go out together
_MAX_BACKOFF = 5.0
_SHUTDOWN_LIMIT = 10.0  # when the service sets no deadline


class GroupByTraceConfig(Config):
    wait_duration: Duration = msgspec.field(default_factory=lambda: Duration(1.0))
    wait_duration_after_root: Duration = msgspec.field(default_factory=lambda: Duration(0.1))
    num_traces: PositiveInt = 1_000_000
    memory_limit_mib: PositiveInt = 1024
    released_cache_size: NonNegInt = 100_000
    num_workers: PositiveInt = 1  # accepted for OTel configs; one event loop does the work

    def validate(self) -> list[str]:
        errs = []
        if self.wait_duration.seconds <= 0:
            errs.append("wait_duration: must be greater than zero")
        if self.wait_duration_after_root.seconds < 0:
            errs.append("wait_duration_after_root: must not be negative")
        elif self.wait_duration_after_root.seconds > self.wait_duration.seconds:
            errs.append("wait_duration_after_root: must not be longer than wait_duration")
        return errs


class _Group:
    """Encoded resource and scope fields shared by the spans that came with them."""

    __slots__ = ("__weakref__", "resource", "scope")

    def __init__(self, resource: tuple[bytes, bytes], scope: tuple[bytes, bytes]) -> None:
        self.resource = resource
        self.scope = scope


_BUFFERED, _READY = 0, 1


class _Trace:
    __slots__ = ("chunks", "holds", "last", "release", "root", "size", "spans", "state", "tid")

    def __init__(self, tid: bytes, state: int, release: str = "") -> None:
        self.tid = tid
        # (resource and scope, blobs of framed span encodings, one per batch)
        self.chunks: list[tuple[_Group, list[bytes]]] = []
        self.holds: list[Delivery] | None = None
        self.last = 0.0
        self.release = release
        self.root = False
        self.size = TRACE_OVERHEAD
        self.spans = 0
        self.state = state

    def absorb(self, other: _Trace) -> None:
        self.chunks += other.chunks
        self.spans += other.spans
        self.size += other.size - TRACE_OVERHEAD
        self.root = self.root or other.root
        if other.holds:
            self.holds = (self.holds or []) + other.holds


def _encode_trace(t: _Trace) -> list[bytes]:
    """The trace as framed ResourceSpans fields, one per distinct resource."""
    by_resource: dict[tuple[bytes, bytes], dict[_Group, list[bytes]]] = {}
    for group, blobs in t.chunks:
        by_scope = by_resource.setdefault(group.resource, {})
        held = by_scope.get(group)
        if held is None:
            by_scope[group] = list(blobs)
        else:
            held += blobs
    out = []
    for (r0, r1), by_scope in by_resource.items():
        rs_parts = [r0]
        for group, blobs in by_scope.items():
            s0, s1 = group.scope
            body = b"".join((s0, *blobs, s1))
            rs_parts += (TAG_2, varint(len(body)), body)
        rs_parts.append(r1)
        rs_body = b"".join(rs_parts)
        out.append(TAG_1 + varint(len(rs_body)) + rs_body)
    return out


@dataclass(frozen=True)
class HoldSettings:
    """How a `TraceHolder` holds traces.

    `wait`: a trace is released this long after its last span arrived (groupbytrace), or
    with `from_first` after its first (the Collector's tail_sampling `decision_wait`).
    `root_wait`: once its root span is in, after this (shorter) time instead: counted
    from the last span (groupbytrace), or from the root's arrival when that is earlier
    than the `wait` deadline (`from_first`); None: no such shortcut. `num_traces`,
    `memory_limit` (bytes): beyond them the oldest trace is released early. The ids of
    the last `released_cache_size` traces handed on are remembered: their later spans go
    out at once as a late fragment. `metrics`: the prefix of the holder's metric names;
    `late_metric`: whether to count late spans (`<metrics>_late_spans`)."""

    wait: float
    root_wait: float | None
    num_traces: int
    memory_limit: int
    released_cache_size: int
    from_first: bool = False
    metrics: str = "tracesieve_groupbytrace"
    late_metric: bool = True

    @classmethod
    def of(cls, cfg: GroupByTraceConfig) -> HoldSettings:
        return cls(
            wait=cfg.wait_duration.seconds,
            root_wait=cfg.wait_duration_after_root.seconds,
            num_traces=cfg.num_traces,
            memory_limit=cfg.memory_limit_mib * MIB,
            released_cache_size=cfg.released_cache_size,
        )


class TraceHolder(ProcessorBase):
    """Stateful: holds spans by trace; one releaser task hands whole traces on (through
    `_handoff`, which a subclass may override to decide on them first)."""

    SHUTDOWN_LIMIT = _SHUTDOWN_LIMIT

    def __init__(
        self,
        settings: Settings,
        next_consumer: TracesConsumer,
        hold: HoldSettings,
        *,
        mutates_data: bool | None = None,
    ) -> None:
        super().__init__(settings, next_consumer, mutates_data=mutates_data)
        self.hold = hold
        self._wait = hold.wait
        self._root_wait = hold.root_wait
        self._from_first = hold.from_first
        self._limit = hold.memory_limit
        # buffered traces in creation order (the front is evicted first)
        self._traces: OrderedDict[bytes, _Trace] = OrderedDict()
        # buffered traces by last arrival, without and with their root (deadline order)
        self._waiting: OrderedDict[bytes, None] = OrderedDict()
        self._rooted: OrderedDict[bytes, None] = OrderedDict()
        self._bytes = 0  # estimated memory of buffered traces
        self._spans = 0
        # released, waiting to be handed on (also late fragments), in order
        self._ready: deque[_Trace] = deque()
        self._ready_ids: dict[bytes, _Trace] = {}
        self._ready_bytes = 0
        self._ready_spans = 0
        # trace ids handed on recently (late spans of these pass straight on)
        self._released: set[bytes] = set()
        self._released_order: deque[bytes] = deque()
        self._groups: weakref.WeakValueDictionary[tuple[bytes, ...], _Group] = (
            weakref.WeakValueDictionary()
        )
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._sleep_until = math.inf
        self._blocked_until = 0.0
        self._shutdown_deadline = math.inf
        m = hold.metrics
        self._m_traces = self.gauge(
            f"{m}_traces_in_memory", "Traces held (buffered or waiting to be handed on)"
        )
        self._m_spans = self.gauge(f"{m}_spans_in_memory", "Spans held")
        self._m_bytes = self.gauge(
            f"{m}_bytes_in_memory",
            "Estimated memory of the held spans (counted against the memory limit)",
        )
        self._m_released = self.counters(
            f"{m}_traces_released",
            "Traces handed on, by why they were released",
            "release",
            RELEASES,
        )
        self._m_evicted = self.counters(
            f"{m}_traces_evicted",
            "Traces released early to stay within num_traces or the memory limit",
            "cause",
            ("num_traces", "memory"),
        )
        self._m_late = (
            self.counter(
                f"{m}_late_spans",
                "Spans that arrived after their trace was released (passed on as late)",
            )
            if hold.late_metric
            else None
        )

    # -- lifecycle ----------------------------------------------------------------------
    async def _start(self, host: Host) -> None:
        self._task = self.spawn(self._run(), "releaser")

    async def _shutdown(self) -> None:
        """Release every pending trace and hand it on, until the shutdown deadline."""
        self._shutdown_deadline = self.shutdown_deadline()
        if self._task is None:
            await self._run()
        else:
            self._wake.set()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # -- ingest -------------------------------------------------------------------------
    async def consume_traces(self, traces: Traces) -> None:
        if self.closing:
            raise RefusedError(f"{self.settings.id} is shutting down")
        self._check_room()
        self._ingest(traces)
        self.metrics.incoming.inc(traces.span_count)
        self._update_gauges()

    def _check_room(self) -> None:
        """Refuse new data (retryable) while more than the limits wait to go out."""
        if self._ready_bytes > self._limit or len(self._ready) > self.hold.num_traces:
            raise RefusedError(
                f"{self.settings.id}: downstream is not taking released traces", retry_after=1.0
            )

    def _intern(self, resource: tuple[bytes, bytes], scope: tuple[bytes, bytes]) -> _Group:
        key = (*resource, *scope)
        g = self._groups.get(key)
        if g is None:
            g = _Group(resource, scope)
            self._groups[key] = g
        return g

    def _ingest(self, traces: Traces) -> None:
        # first read every span's trace id (nothing is held if the batch is bad) ...
        try:
            groups, rooted = wirescan.group(traces.to_bytes())
        except WireError as exc:
            raise InvalidDataError(f"{self.settings.id}: cannot read the batch: {exc}") from exc
        per_group = [(self._intern(res, scope), by_tid) for res, scope, by_tid in groups]
        # ... then hold them
        now = time.monotonic()
        touched: dict[bytes, _Trace] = {}
        late_spans = 0
        for group, by_tid in per_group:
            for tid, (blob, n) in by_tid.items():
                t = touched.get(tid)
                if t is None:
                    t = touched[tid] = self._locate(tid, now)
                last = t.chunks[-1] if t.chunks else None
                if last is not None and last[0] is group:
                    last[1].append(blob)
                else:
                    t.chunks.append((group, [blob]))
                size = len(blob) + BLOB_OVERHEAD
                t.spans += n
                t.size += size
                if t.state == _BUFFERED:
                    self._bytes += size
                    self._spans += n
                else:
                    self._ready_bytes += size
                    self._ready_spans += n
                    if t.release == "late":
                        late_spans += n
        earliest = math.inf
        deliveries = traces.deliveries
        root_wait = self._root_wait
        for tid, t in touched.items():
            if t.state == _BUFFERED:
                if self._from_first:
                    # the deadline counts from the first span: later ones do not move it,
                    # a root brings it forward (never back)
                    if tid in rooted and not t.root:
                        t.root = True
                        if root_wait is not None and now + root_wait < t.last + self._wait:
                            self._waiting.pop(tid, None)
                            self._rooted[tid] = None
                            t.last = now
                            earliest = min(earliest, now + root_wait)
                elif root_wait is not None and (t.root or tid in rooted):
                    t.last = now
                    if not t.root:
                        t.root = True
                        self._waiting.pop(tid, None)
                        self._rooted[tid] = None
                        earliest = min(earliest, now + root_wait)
                    else:
                        self._rooted.move_to_end(tid)
                else:
                    t.last = now
                    t.root = t.root or tid in rooted
                    self._waiting.move_to_end(tid)
            elif tid in rooted:
                t.root = True
            if deliveries:
                for d in deliveries:
                    d.retain()
                if t.holds is None:
                    t.holds = list(deliveries)
                else:
                    t.holds += deliveries
        while self._bytes > self._limit and self._traces:
            self._evict("memory")
        if late_spans and self._m_late is not None:
            self._m_late.inc(late_spans)
        if self._ready:
            earliest = now
        elif len(self._traces) and math.isinf(self._sleep_until):
            earliest = now + self._wait
        if earliest < self._sleep_until:
            self._wake.set()

    def _locate(self, tid: bytes, now: float) -> _Trace:
        """The held trace `tid` (buffered or about to go), a new late fragment for it, or
        a new buffered trace."""
        t = self._traces.get(tid) or self._ready_ids.get(tid)
        if t is not None:
            return t
        if self._is_released(tid):
            t = _Trace(tid, _READY, "late")
            self._ready.append(t)
            self._ready_ids[tid] = t
            self._ready_bytes += t.size
            return t
        if len(self._traces) >= self.hold.num_traces:
            self._evict("num_traces")
        t = _Trace(tid, _BUFFERED)
        t.last = now
        self._traces[tid] = t
        self._waiting[tid] = None
        self._bytes += t.size
        return t

    def _is_released(self, tid: bytes) -> bool:
        """Whether spans of trace `tid` go on at once as a late fragment (it was handed
        on lately) rather than wait as a new trace."""
        return tid in self._released

    # -- release ------------------------------------------------------------------------
    def _to_ready(self, t: _Trace, release: str) -> None:
        self._bytes -= t.size
        self._spans -= t.spans
        t.state = _READY
        t.release = release
        self._ready.append(t)
        self._ready_ids[t.tid] = t
        self._ready_bytes += t.size
        self._ready_spans += t.spans

    def _evict(self, cause: str) -> None:
        tid, t = self._traces.popitem(last=False)
        self._rooted.pop(tid, None)
        self._waiting.pop(tid, None)
        self._to_ready(t, cause)
        self._m_evicted[cause].inc()

    def _expire(self, now: float) -> None:
        for order, wait, release in (
            (self._rooted, self._root_wait or 0.0, "root"),
            (self._waiting, self._wait, "wait"),
        ):
            while order:
                tid = next(iter(order))
                t = self._traces[tid]
                if t.last + wait > now:
                    break
                order.popitem(last=False)
                del self._traces[tid]
                self._to_ready(t, release)

    def _release_all(self, release: str) -> None:
        while self._traces:
            _, t = self._traces.popitem(last=False)
            self._to_ready(t, release)
        self._waiting.clear()
        self._rooted.clear()

    def _next_due(self) -> float:
        due = math.inf
        if self._rooted:
            due = self._traces[next(iter(self._rooted))].last + (self._root_wait or 0.0)
        if self._waiting:
            due = min(due, self._traces[next(iter(self._waiting))].last + self._wait)
        if self._ready:
            due = min(due, self._blocked_until)
        return due

    def _remember(self, tid: bytes) -> None:
        size = self.hold.released_cache_size
        if size == 0 or tid in self._released:
            return
        self._released.add(tid)
        self._released_order.append(tid)
        if len(self._released_order) > size:
            self._released.discard(self._released_order.popleft())

    def _take_batch(self) -> list[_Trace]:
        batch: list[_Trace] = []
        n = 0
        while self._ready and (not batch or n + self._ready[0].spans <= _MAX_RELEASE_SPANS):
            t = self._ready.popleft()
            del self._ready_ids[t.tid]
            self._ready_bytes -= t.size
            self._ready_spans -= t.spans
            self._remember(t.tid)
            batch.append(t)
            n += t.spans
        return batch

    def _put_back(self, batch: list[_Trace]) -> None:
        """Refused downstream: the batch goes back to the front, in order, taking in any
        late fragment made for its traces meanwhile."""
        for t in reversed(batch):
            frag = self._ready_ids.get(t.tid)
            if frag is not None:
                self._ready.remove(frag)
                self._ready_bytes -= frag.size
                self._ready_spans -= frag.spans
                t.absorb(frag)
            self._ready.appendleft(t)
            self._ready_ids[t.tid] = t
            self._ready_bytes += t.size
            self._ready_spans += t.spans

    @staticmethod
    def _build(batch: list[_Trace]) -> Traces:
        entries: list[TraceEntry] = []
        pieces: list[bytes] = []
        byte_pos = spans = 0
        for t in batch:
            framed = _encode_trace(t)
            size = sum(map(len, framed))
            entries.append(
                TraceEntry(t.tid, t.spans, t.release, byte_pos, byte_pos + size, len(framed))
            )
            pieces += framed
            byte_pos += size
            spans += t.spans
        raw = b"".join(pieces)
        deliveries = tuple(dict.fromkeys(d for t in batch if t.holds for d in t.holds))
        out = Traces(raw=raw, span_count=spans, deliveries=deliveries)
        out.trace_index = TraceIndex(entries, raw)
        return out

    async def _handoff(self, out: Traces) -> int:
        """Hand a batch of released traces on; the spans sent (the rest were dropped by
        design). A `RefusedError` puts the batch back to be retried."""
        await self._next.consume_traces(out)
        return out.span_count

    async def _emit(self) -> None:
        """Hand on what is ready, batch by batch, until it is all gone or refused."""
        while self._ready:
            batch = self._take_batch()
            out = self._build(batch)
            try:
                sent = await self._handoff(out)
            except RefusedError as exc:
                self._put_back(batch)
                backoff = 0.1 if self.closing else min(max(exc.retry_after, 0.05), _MAX_BACKOFF)
                self._blocked_until = time.monotonic() + backoff
                self.warn.warning(
                    "downstream refused %d released spans, retrying: %s", out.span_count, exc
                )
                return
            except Exception as exc:
                self.metrics.dropped.inc(out.span_count)
                self.warn.warning(
                    "dropping %d released spans: downstream failed: %s", out.span_count, exc
                )
                self._finish(batch, ok=False)
            else:
                if sent:
                    self.metrics.outgoing.inc(sent)
                if sent < out.span_count:  # dropped by design (e.g. sampled out)
                    self.metrics.dropped.inc(out.span_count - sent)
                self._finish(batch, ok=True)
            finally:
                self._update_gauges()

    def _finish(self, batch: list[_Trace], ok: bool) -> None:
        for release, n in Counter(t.release for t in batch).items():
            self._m_released[release].inc(n)
        for t in batch:
            if t.holds:
                for d in t.holds:
                    d.release(ok)
                t.holds = None

    def _give_up(self) -> None:
        n = self._ready_spans
        batch = list(self._ready)
        self._ready.clear()
        self._ready_ids.clear()
        self._ready_bytes = self._ready_spans = 0
        if n:
            self.metrics.dropped.inc(n)
            self.log.error("dropping %d spans at shutdown: downstream refused them", n)
        for t in batch:
            if t.holds:
                for d in t.holds:
                    d.release(False)
                t.holds = None

    async def _run(self) -> None:
        while True:
            try:
                if not await self._step():
                    return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("%s releaser failed; continuing", self.settings.id)
                await asyncio.sleep(0.1)
            finally:
                self._update_gauges()

    async def _step(self) -> bool:
        """One round of the releaser: emit what is ready, or sleep until something is due.
        False when it is done (shut down)."""
        now = time.monotonic()
        if self.closing:
            self._release_all("shutdown")
        else:
            self._expire(now)
        if self._ready and now >= self._blocked_until:
            await self._emit()
            return True
        if self.closing:
            if not self._ready:
                return False
            if asyncio.get_running_loop().time() >= self._shutdown_deadline:
                self._give_up()
                return False
        self._wake.clear()
        due = self._next_due()
        self._sleep_until = due
        timeout = None if math.isinf(due) else max(due - time.monotonic(), 0.0) + _COALESCE
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._sleep_until = -math.inf
        return True

    # -- telemetry ----------------------------------------------------------------------
    def _update_gauges(self) -> None:
        self._m_traces.set(len(self._traces) + len(self._ready))
        self._m_spans.set(self._spans + self._ready_spans)
        self._m_bytes.set(self._bytes + self._ready_bytes)

    # -- introspection (tests, benchmarks) ------------------------------------------------
    @property
    def held_traces(self) -> int:
        return len(self._traces) + len(self._ready)

    @property
    def held_spans(self) -> int:
        return self._spans + self._ready_spans


class GroupByTraceProcessor(TraceHolder):
    """The `groupbytrace` processor: a `TraceHolder` with groupbytrace's options."""

    def __init__(
        self, settings: Settings, cfg: GroupByTraceConfig, next_consumer: TracesConsumer
    ) -> None:
        super().__init__(settings, next_consumer, HoldSettings.of(cfg))
        self.cfg = cfg


factory = ProcessorFactory(
    type="groupbytrace",
    config_type=GroupByTraceConfig,
    create=GroupByTraceProcessor,
    stability="beta",
    description="holds spans until their trace is complete, then passes whole traces on",
)
