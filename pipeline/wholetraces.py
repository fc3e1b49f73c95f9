"""Batches of whole traces, as `groupbytrace` releases them, and what later components
(`cleanliness`, `tail_sampling`, the `routing` connector) need to work on them per trace,
read from the batch's encoding: nothing here decodes a span into protobuf objects.

A batch from `groupbytrace` is *trace-aligned*: each trace occupies a contiguous run of
bytes (whole `resource_spans` fields) in the encoding. It carries a `TraceIndex` in
`traces.trace_index` (what changes of the batch keep it: `pipeline.pdata`):

    TraceIndex.entries[i]  one per trace: trace_id, span_count, why it was released
                           (`release`), its byte range [byte_start, byte_end) in
                           `TraceIndex.raw` and the `frames` (resource_spans fields) in
                           it, and `facts`, a dict where processors leave
                           per-trace results for later ones (e.g. the cleanliness class),
                           keyed by the attribute name they also write.
    TraceIndex.raw         the encoding the byte ranges refer to: valid while it is the
                           batch's `Traces.base` (pending patches keep it valid).
    TraceIndex.relocatable whether the entries cover the batch's `resource_spans` fields
                           in order (`frames` each), so that their byte ranges can be
                           found again in another encoding of the same traces; if not,
                           the batch is regrouped by trace id when next read by trace.

`release` is one of: "wait" (quiet for `wait_duration`), "root" (root arrived, then quiet
for `wait_duration_after_root`), "num_traces" / "memory" (evicted to stay within limits:
possibly incomplete), "shutdown" (released at shutdown: possibly incomplete) and "late"
(spans of a trace already released: a fragment, to follow the decision made for it); ""
for a trace no holder released (a batch regrouped by trace id: not known to be whole).

`aligned` makes any batch trace-aligned: after a change that kept every trace's
`resource_spans` fields (patches spliced in, a re-encoding, batches merged) only the byte
ranges are found again; a batch that did not come from `groupbytrace`, or whose fields
changed, is regrouped by trace id on the wire (spans kept byte for byte), keeping the
entries' release and facts by trace id (a trace that was released and is also a late
fragment in the same batch is one trace, not late). `select` and `split` keep or
route whole traces by byte range, pending patches included, and leave the index right.

The root span of a trace is its first span without a parent span id.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Final, cast

from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from pipeline import wirescan, wiresplit
from pipeline.otlpwire import TAG_1, frame
from pipeline.pdata import Traces
from pipeline.wirescan import Row, SpanInfo

RELEASES: Final = ("wait", "root", "num_traces", "memory", "shutdown", "late")

_RS_KEY: Final = 0x0A  # ExportTraceServiceRequest.resource_spans = 1, LEN
_SS_KEY: Final = 0x12  # ResourceSpans.scope_spans = 2, LEN


class TraceEntry:
    __slots__ = (
        "byte_end",
        "byte_start",
        "facts",
        "frames",
        "release",
        "span_count",
        "trace_id",
    )

    def __init__(
        self,
        trace_id: bytes,
        span_count: int,
        release: str,
        byte_start: int = 0,
        byte_end: int = 0,
        frames: int = 1,
        facts: dict[str, Any] | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_count = span_count
        self.release = release
        self.byte_start = byte_start
        self.byte_end = byte_end
        self.frames = frames  # resource_spans fields in the range
        self.facts: dict[str, Any] = {} if facts is None else facts

    @property
    def late(self) -> bool:
        return self.release == "late"

    def clone(self) -> TraceEntry:
        """An independent copy (its own facts)."""
        return TraceEntry(
            self.trace_id,
            self.span_count,
            self.release,
            self.byte_start,
            self.byte_end,
            self.frames,
            dict(self.facts),
        )


class TraceIndex:
    __slots__ = ("entries", "raw", "relocatable")

    def __init__(
        self, entries: list[TraceEntry], raw: bytes | None, relocatable: bool = True
    ) -> None:
        self.entries = entries
        self.raw = raw
        self.relocatable = relocatable

    def copy(self) -> TraceIndex:
        """An independent copy, for a copy of the batch."""
        return TraceIndex([e.clone() for e in self.entries], self.raw, self.relocatable)

    def joined(self, others: list[TraceIndex]) -> TraceIndex:
        """The index of this batch's bytes followed by the others' (`Traces.merge`): the
        entries one after the other, byte ranges to be found again."""
        entries = [e.clone() for e in self.entries]
        relocatable = self.relocatable
        for o in others:
            entries += [e.clone() for e in o.entries]
            relocatable = relocatable and o.relocatable
        return TraceIndex(entries, None, relocatable)

    def by_trace_id(self) -> TraceIndex:
        """What the entries say of each trace (release, facts), for a batch holding some
        of the traces in another layout (`Traces.split`): regrouped on first use."""
        return TraceIndex([e.clone() for e in self.entries], None, False)

    def forget(self, keys: frozenset[str] | None) -> None:
        """Drop the facts of these attribute keys (None: every fact)."""
        for e in self.entries:
            facts = e.facts
            if not facts:
                continue
            if keys is None:
                e.facts = {}
            elif not keys.isdisjoint(facts):
                e.facts = {k: v for k, v in facts.items() if k not in keys}


# -- alignment -----------------------------------------------------------------------------


def aligned(traces: Traces) -> TraceIndex:
    """The batch's trace index, valid for `traces.base`. After a change that kept every
    trace's `resource_spans` fields (patches spliced in, a re-encoding) only the byte
    ranges are found again; a batch that is not trace-aligned is regrouped by trace on the
    wire first (spans kept byte for byte; release and facts kept by trace id)."""
    old = traces.trace_index
    base = traces.base
    known: dict[bytes, TraceEntry] = {}
    if old is not None:
        if old.raw is base:
            return old
        if old.relocatable and _relocate(old, base):
            return old
        for e in old.entries:
            was = known.get(e.trace_id)
            if was is None or (was.late and not e.late):
                known[e.trace_id] = e
    raw = traces.to_bytes()
    pieces: list[bytes] = []
    entries: list[TraceEntry] = []
    pos = 0
    for tid, refs in wiresplit.by_trace(wiresplit.parse(raw)).items():
        piece = wiresplit.build(refs)
        frames = 0
        last: object = None
        for scope, _, _ in refs:
            if scope.resource is not last:
                last = scope.resource
                frames += 1
        was = known.get(tid)
        release = was.release if was is not None else ""
        facts = was.facts if was is not None else None
        entries.append(TraceEntry(tid, len(refs), release, pos, pos + len(piece), frames, facts))
        pieces.append(piece)
        pos += len(piece)
    raw = b"".join(pieces)
    out = TraceIndex(entries, raw)
    traces.reset(raw, sum(e.span_count for e in entries), out)
    return out


def current(traces: Traces) -> TraceIndex | None:
    """The batch's trace index if it holds one for its current encoding (found again after
    patches were spliced in), else None. Unlike `aligned`, never regroups or changes the
    batch: for a consumer that only reads it."""
    idx = traces.trace_index
    if idx is None:
        return None
    base = traces.base
    if idx.raw is base or (idx.relocatable and _relocate(idx, base)):
        return idx
    return None


def _relocate(idx: TraceIndex, raw: bytes) -> bool:
    """Find the entries' byte ranges in `raw` if it has as many `resource_spans` fields as
    they cover, and nothing else at the top level."""
    tops = wiresplit.fields(raw, 0, len(raw))
    if len(tops) != sum(e.frames for e in idx.entries):
        return False
    for key, _, _, _ in tops:
        if key != _RS_KEY:
            return False
    i = 0
    for e in idx.entries:
        e.byte_start = tops[i][1]
        i += e.frames
        e.byte_end = tops[i - 1][3]
    idx.raw = raw
    return True


# -- views ---------------------------------------------------------------------------------


class TraceView:
    """The spans of one trace in a batch: `spans` are `wirescan.SpanInfo` of `raw`."""

    __slots__ = ("_resources", "entry", "raw", "root", "spans", "trace_id")

    def __init__(self, entry: TraceEntry, spans: list[SpanInfo], raw: bytes) -> None:
        self.entry = entry
        self.trace_id = entry.trace_id
        self.spans = spans
        self.raw = raw
        self.root: SpanInfo | None = None
        for s in cast("list[Row]", spans):
            if not s[5]:
                self.root = s
                break
        self._resources: list[tuple[int, bytes]] | None = None

    @property
    def span_count(self) -> int:
        return len(self.spans)

    @property
    def late(self) -> bool:
        return self.entry.release == "late"

    def resources(self) -> list[tuple[int, bytes]]:
        """(end offset, head) of each ResourceSpans of the trace, in order; the head is its
        fields but `scope_spans` (the resource and schema URL), as encoded."""
        got = self._resources
        if got is None:
            got = self._resources = _resource_heads(
                self.raw, self.entry.byte_start, self.entry.byte_end
            )
        return got

    def resource_of(self, pos: int) -> bytes:
        """The head of the ResourceSpans holding byte offset `pos`."""
        for end, head in self.resources():
            if pos < end:
                return head
        return b""

    def write(self, traces: Traces, data: bytes, keys: frozenset[str], needle: bytes) -> None:
        """Patch `data` (encoded attributes) onto the root span, or without one in the batch
        onto every span, replacing what an earlier tracesieve wrote under `keys`: dropped
        only from traces whose bytes hold `needle` (a prefix the keys share)."""
        drop = keys if self.has(needle) else None
        base = traces.base
        for s in (self.root,) if self.root is not None else self.spans:
            traces.patch(base, s[9], data, drop)

    def has(self, needle: bytes) -> bool:
        """Whether the trace's bytes contain `needle` (a cheap test before reading)."""
        e = self.entry
        return self.raw.find(needle, e.byte_start, e.byte_end) >= 0


def trace_views(traces: Traces, settle: bool = True) -> list[TraceView]:
    """One view per trace in the batch, from its encoding (made trace-aligned if it was
    not). With `settle`, pending patches are spliced in first (the views see what earlier
    processors wrote); without, the views read `base` and the patches stay pending."""
    idx = aligned(traces)
    if settle and traces.pending:
        ranges = traces.settle([(e.byte_start, e.byte_end) for e in idx.entries])
        for e, (a, b) in zip(idx.entries, ranges, strict=True):
            e.byte_start, e.byte_end = a, b
        idx.raw = traces.base
    raw = traces.base
    spans = traces.scan()
    starts: list[int] = [s[9] for s in cast("list[Row]", spans)]
    views: list[TraceView] = []
    for e in idx.entries:
        i = bisect_left(starts, e.byte_start)
        j = bisect_left(starts, e.byte_end, i)
        views.append(TraceView(e, spans[i:j], raw))
    return views


def _resource_heads(raw: bytes, lo: int, hi: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    for key, _, rs_start, rs_end in wiresplit.fields(raw, lo, hi):
        if key != _RS_KEY:
            continue
        head = [
            raw[start:end]
            for k, start, _, end in wiresplit.fields(raw, rs_start, rs_end)
            if k != _SS_KEY
        ]
        out.append((rs_end, b"".join(head)))
    return out


# -- attributes ----------------------------------------------------------------------------

_RESOURCE_ATTRS: Final[dict[bytes, dict[str, Any]]] = {}
_KEY_FIELDS: Final[dict[str, bytes]] = {}


def _key_field(key: str) -> bytes:
    """A KeyValue's encoded key field (what an attribute `key` looks like on the wire)."""
    got = _KEY_FIELDS.get(key)
    if got is None:
        if len(_KEY_FIELDS) > 10_000:
            _KEY_FIELDS.clear()
        got = _KEY_FIELDS[key] = frame(TAG_1, key.encode())
    return got


def resource_attributes(head: bytes) -> dict[str, Any]:
    """The attributes of a ResourceSpans head as plain values (the first of a repeated
    key); decoded once per distinct resource."""
    got = _RESOURCE_ATTRS.get(head)
    if got is None:
        got = {}
        for kv in ResourceSpans.FromString(head).resource.attributes:
            if kv.key not in got:
                got[kv.key] = plain(kv.value)
        if len(_RESOURCE_ATTRS) > 10_000:
            _RESOURCE_ATTRS.clear()
        _RESOURCE_ATTRS[head] = got
    return got


def plain(v: Any) -> Any:
    """An AnyValue as a Python value (arrays as lists, kvlists as dicts; unset: None)."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [plain(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {x.key: plain(x.value) for x in v.kvlist_value.values}
    return getattr(v, which)


def span_attribute(raw: bytes, span: SpanInfo, key: str) -> Any:
    """A span's attribute as a plain value (the first of a repeated key), None if absent."""
    for _, value in wirescan.attributes(raw, span[9], span[10], frozenset((key,)), None):
        return value
    return None


def trace_attribute(view: TraceView, key: str) -> Any:
    """A trace-level attribute: `facts` first, then the root span, then the root's
    resource; without a root, the first span carrying it (then its resource)."""
    facts = view.entry.facts
    if key in facts:
        return facts[key]
    if not view.has(key.encode()):
        return None
    raw = view.raw
    root = view.root
    if root is not None:
        v = span_attribute(raw, root, key)
        if v is None:
            v = resource_attributes(view.resource_of(root[9])).get(key)
        return v
    resources = view.resources()
    r = 0
    for s in view.spans:
        while r < len(resources) - 1 and s[9] >= resources[r][0]:
            v = resource_attributes(resources[r][1]).get(key)
            if v is not None:
                return v
            r += 1
        v = span_attribute(raw, s, key)
        if v is not None:
            return v
    for _, head in resources[r:]:
        v = resource_attributes(head).get(key)
        if v is not None:
            return v
    return None


def trace_values(view: TraceView, keys: frozenset[str]) -> dict[str, list[Any]]:
    """Every value of the attributes `keys` on the trace's resources and spans (plain);
    only resources and spans whose bytes hold a wanted key are read."""
    found: dict[str, list[Any]] = {}
    raw = view.raw
    wanted = [k for k in keys if view.has(k.encode())]
    if not wanted:
        return found
    patterns = [_key_field(k) for k in wanted]
    for _, head in view.resources():
        if any(p in head for p in patterns):
            attrs = resource_attributes(head)
            for k in wanted:
                if k in attrs:
                    found.setdefault(k, []).append(attrs[k])
    want = frozenset(wanted)
    for s in cast("list[Row]", view.spans):
        b0: int = s[9]
        b1: int = s[10]
        if any(raw.find(p, b0, b1) >= 0 for p in patterns):
            for k, value in wirescan.attributes(raw, b0, b1, want, None):
                found.setdefault(k, []).append(value)
    return found


# -- keeping and splitting -------------------------------------------------------------------


def select(traces: Traces, views: list[TraceView], keep: list[bool]) -> Traces | None:
    """The batch with only the kept traces (a new batch unless all are kept), or None if
    none is kept. Pending patches of kept traces go along."""
    if all(keep):
        return traces
    if not any(keep):
        return None
    return _part(traces, [v for v, k in zip(views, keep, strict=True) if k])


def split(traces: Traces, views: list[TraceView], routes: list[int]) -> dict[int, Traces]:
    """Split a batch by trace: `routes[i]` is where `views[i]` goes. Each part is a
    trace-aligned batch with its own index, carrying the batch's deliveries."""
    if not views:
        return {}
    first = routes[0]
    if all(r == first for r in routes):
        return {first: traces}
    by_route: dict[int, list[TraceView]] = {}
    for v, r in zip(views, routes, strict=True):
        by_route.setdefault(r, []).append(v)
    return {r: _part(traces, members) for r, members in by_route.items()}


def _part(traces: Traces, views: list[TraceView]) -> Traces:
    ranges = [(v.entry.byte_start, v.entry.byte_end) for v in views]
    part = traces.slice(ranges, sum(len(v.spans) for v in views))
    entries: list[TraceEntry] = []
    pos = 0
    for v in views:
        e = v.entry
        n = e.byte_end - e.byte_start
        entries.append(
            TraceEntry(e.trace_id, e.span_count, e.release, pos, pos + n, e.frames, e.facts)
        )
        pos += n
    part.trace_index = TraceIndex(entries, part.base)
    return part


__all__ = [
    "RELEASES",
    "TraceEntry",
    "TraceIndex",
    "TraceView",
    "aligned",
    "current",
    "plain",
    "resource_attributes",
    "select",
    "span_attribute",
    "split",
    "trace_attribute",
    "trace_values",
    "trace_views",
]
