"""Batches of whole traces, as `groupbytrace` releases them, and what later components
(`cleanliness`, `tail_sampling`, the `routing` connector) need to work on them per trace.

A batch from `groupbytrace` is *trace-aligned*: each trace occupies a contiguous run of
`resource_spans` and of bytes in the encoding. It carries a `TraceIndex` in
`traces.cache[INDEX]`:

    TraceIndex.entries[i]  one per trace: trace_id, its resource_spans range [rs_start,
                           rs_end), its byte range in `TraceIndex.raw`, span_count, whether
                           the root span is in it, why it was released (`release`), and
                           `facts`, a dict where processors leave per-trace results for
                           later ones (e.g. the cleanliness class), keyed by the attribute
                           name they also write.
    TraceIndex.raw         the encoding the byte ranges refer to; they are valid only
                           while `traces.raw is index.raw` (nobody changed the batch).

`release` is one of: "wait" (quiet for `wait_duration`), "root" (root arrived, then quiet
for `wait_duration_after_root`), "num_traces" / "memory" (evicted to stay within limits:
possibly incomplete), "shutdown" (released at shutdown: possibly incomplete) and "late"
(spans of a trace already released: a fragment, to follow the decision made for it).

A component that removes traces keeps the index right (`select`); one that only adds
attributes leaves it valid. Without an index (a batch that did not come from
`groupbytrace`, or a copy made by a fan-out) `trace_views` groups the spans by trace id.

The root span of a trace is its span without a parent span id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from pipeline.otlpwire import TAG_1, frame
from pipeline.pdata import Traces, traces_from_spans

INDEX = "wholetraces"

RELEASES = ("wait", "root", "num_traces", "memory", "shutdown", "late")


@dataclass(slots=True)
class TraceEntry:
    trace_id: bytes
    rs_start: int
    rs_end: int
    span_count: int
    root: bool
    release: str
    byte_start: int = 0
    byte_end: int = 0
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def late(self) -> bool:
        return self.release == "late"


class TraceIndex:
    __slots__ = ("entries", "raw")

    def __init__(self, entries: list[TraceEntry], raw: bytes | None) -> None:
        self.entries = entries
        self.raw = raw


def index_of(traces: Traces) -> TraceIndex | None:
    """The batch's trace index if it still describes the batch."""
    idx = traces.cache.get(INDEX)
    if not isinstance(idx, TraceIndex):
        return None
    if idx.raw is not None and traces.raw is idx.raw:
        return idx
    n = idx.entries[-1].rs_end if idx.entries else 0
    return idx if len(traces.request.resource_spans) == n else None


def bytes_of(traces: Traces, idx: TraceIndex | None) -> bytes | None:
    """The encoding the index's byte ranges refer to, if they are still valid."""
    if idx is not None and idx.raw is not None and traces.raw is idx.raw:
        return idx.raw
    return None


# -- views ---------------------------------------------------------------------------------


class TraceView:
    """The spans of one trace in a batch: `parts` are (resource, scope, spans) groups."""

    __slots__ = ("entry", "parts", "root", "root_resource", "trace_id")

    def __init__(
        self,
        trace_id: bytes,
        parts: list[tuple[ResourceSpans, ScopeSpans, list[Span]]],
        entry: TraceEntry | None,
    ) -> None:
        self.trace_id = trace_id
        self.parts = parts
        self.entry = entry
        self.root: Span | None = None
        self.root_resource: ResourceSpans | None = None
        for rs, _, spans in parts:
            for s in spans:
                if not s.parent_span_id:
                    self.root = s
                    self.root_resource = rs
                    break
            if self.root is not None:
                break

    @property
    def span_count(self) -> int:
        return sum(len(spans) for _, _, spans in self.parts)

    def spans(self) -> Iterator[Span]:
        for _, _, spans in self.parts:
            yield from spans

    def resources(self) -> Iterator[ResourceSpans]:
        seen: set[int] = set()
        for rs, _, _ in self.parts:
            if id(rs) not in seen:
                seen.add(id(rs))
                yield rs

    @property
    def late(self) -> bool:
        return self.entry is not None and self.entry.late


def trace_views(traces: Traces) -> tuple[list[TraceView], TraceIndex | None]:
    """One view per trace in the batch (decodes it), and the index they came from."""
    req = traces.request
    idx = index_of(traces)
    if idx is not None:
        all_rs = req.resource_spans
        views = []
        for e in idx.entries:
            parts = [
                (rs, ss, list(ss.spans))
                for rs in all_rs[e.rs_start : e.rs_end]
                for ss in rs.scope_spans
            ]
            views.append(TraceView(e.trace_id, parts, e))
        return views, idx
    by_id: dict[bytes, list[tuple[ResourceSpans, ScopeSpans, list[Span]]]] = {}
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            groups: dict[bytes, list[Span]] = {}
            for s in ss.spans:
                tid = s.trace_id
                g = groups.get(tid)
                if g is None:
                    groups[tid] = [s]
                else:
                    g.append(s)
            for tid, spans in groups.items():
                by_id.setdefault(tid, []).append((rs, ss, spans))
    return [TraceView(tid, parts, None) for tid, parts in by_id.items()], None


# -- attributes ----------------------------------------------------------------------------


def plain(v: AnyValue) -> Any:
    """An attribute value as a Python value (arrays as lists, kvlists as dicts)."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [plain(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {x.key: plain(x.value) for x in v.kvlist_value.values}
    return getattr(v, which)


def get_attribute(attributes: Iterable[KeyValue], key: str) -> AnyValue | None:
    for kv in attributes:
        if kv.key == key:
            return kv.value
    return None


def trace_attribute(view: TraceView, key: str, raw: bytes | None = None) -> Any:
    """A trace-level attribute: `facts` first, then the root span, then the root's
    resource; without a root, the first span carrying it (then its resource). `raw`, the
    batch encoding with valid byte ranges, lets traces without the key be skipped."""
    e = view.entry
    if e is not None:
        if key in e.facts:
            return e.facts[key]
        if raw is not None and raw.find(key.encode(), e.byte_start, e.byte_end) < 0:
            return None
    if view.root is not None:
        v = get_attribute(view.root.attributes, key)
        if v is None and view.root_resource is not None:
            v = get_attribute(view.root_resource.resource.attributes, key)
        return None if v is None else plain(v)
    for rs, _, spans in view.parts:
        for s in spans:
            v = get_attribute(s.attributes, key)
            if v is not None:
                return plain(v)
        v = get_attribute(rs.resource.attributes, key)
        if v is not None:
            return plain(v)
    return None


def set_attribute(span: Span, key: str, value: AnyValue, known_absent: bool = False) -> None:
    """Set (replace or add) an attribute; the caller has made the batch mutable."""
    if not known_absent:
        for kv in span.attributes:
            if kv.key == key:
                kv.value.CopyFrom(value)
                return
    span.attributes.append(KeyValue(key=key, value=value))


# -- keeping and splitting -------------------------------------------------------------------


def select(traces: Traces, views: list[TraceView], keep: list[bool]) -> Traces | None:
    """The batch with only the kept traces (changed in place), or None if none is kept."""
    if all(keep):
        return traces
    if not any(keep):
        return None
    idx = index_of(traces)
    req = traces.mutable()
    if idx is not None and len(idx.entries) == len(views):
        entries: list[TraceEntry] = []
        # delete from the end so that earlier ranges stay put
        for e, k in zip(reversed(idx.entries), reversed(keep), strict=True):
            if not k:
                del req.resource_spans[e.rs_start : e.rs_end]
        pos = 0
        for e, k in zip(idx.entries, keep, strict=True):
            if k:
                n = e.rs_end - e.rs_start
                entries.append(
                    TraceEntry(
                        e.trace_id, pos, pos + n, e.span_count, e.root, e.release, 0, 0, e.facts
                    )
                )
                pos += n
        traces.changed()
        traces.cache[INDEX] = TraceIndex(entries, None)
        return traces
    dropped = {v.trace_id for v, k in zip(views, keep, strict=True) if not k}
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            spans = ss.spans
            for i in range(len(spans) - 1, -1, -1):
                if spans[i].trace_id in dropped:
                    del spans[i]
        for j in range(len(rs.scope_spans) - 1, -1, -1):
            if not rs.scope_spans[j].spans:
                del rs.scope_spans[j]
    for j in range(len(req.resource_spans) - 1, -1, -1):
        if not req.resource_spans[j].scope_spans:
            del req.resource_spans[j]
    traces.changed()
    traces.cache.pop(INDEX, None)
    return traces


def split(traces: Traces, views: list[TraceView], routes: list[int]) -> dict[int, Traces]:
    """Split a batch by trace: `routes[i]` is where `views[i]` goes. Each part is a new
    trace-aligned batch with its own index, carrying the batch's deliveries."""
    if not views:
        return {}
    first = routes[0]
    if all(r == first for r in routes):
        return {first: traces}
    idx = index_of(traces)
    aligned = idx is not None and len(idx.entries) == len(views)
    pieces: list[bytes]
    if aligned:
        assert idx is not None
        raw = bytes_of(traces, idx)
        if raw is not None:
            pieces = [raw[e.byte_start : e.byte_end] for e in idx.entries]
        else:
            framed = [frame(TAG_1, rs.SerializeToString()) for rs in traces.request.resource_spans]
            pieces = [b"".join(framed[e.rs_start : e.rs_end]) for e in idx.entries]
        rs_counts = [e.rs_end - e.rs_start for e in idx.entries]
    else:
        pieces, rs_counts = [], []
        for v in views:
            req = traces_from_spans(v.parts)
            pieces.append(req.SerializeToString())
            rs_counts.append(len(v.parts))
    by_route: dict[int, list[int]] = {}
    for i, r in enumerate(routes):
        by_route.setdefault(r, []).append(i)
    out: dict[int, Traces] = {}
    for r, members in by_route.items():
        entries: list[TraceEntry] = []
        rs_pos = byte_pos = 0
        for i in members:
            v = views[i]
            e = v.entry
            n_rs, n_bytes = rs_counts[i], len(pieces[i])
            entries.append(
                TraceEntry(
                    v.trace_id,
                    rs_pos,
                    rs_pos + n_rs,
                    e.span_count if e is not None else v.span_count,
                    e.root if e is not None else v.root is not None,
                    e.release if e is not None else "wait",
                    byte_pos,
                    byte_pos + n_bytes,
                    e.facts if e is not None else {},
                )
            )
            rs_pos += n_rs
            byte_pos += n_bytes
        raw_part = b"".join(pieces[i] for i in members)
        part = Traces(
            raw=raw_part,
            span_count=sum(en.span_count for en in entries),
            deliveries=traces.deliveries,
        )
        part.cache[INDEX] = TraceIndex(entries, raw_part)
        out[r] = part
    return out


def build_request(views: Iterable[TraceView]) -> ExportTraceServiceRequest:
    """A new request holding copies of the given traces (for tests and slow paths)."""
    return traces_from_spans(p for v in views for p in v.parts)


__all__ = [
    "INDEX",
    "RELEASES",
    "TraceEntry",
    "TraceIndex",
    "TraceView",
    "build_request",
    "bytes_of",
    "get_attribute",
    "index_of",
    "plain",
    "select",
    "set_attribute",
    "split",
    "trace_attribute",
    "trace_views",
]
