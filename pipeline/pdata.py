"""`Traces`: the unit of data that flows between components.

A batch of spans in the shape of one OTLP `ExportTraceServiceRequest`, held as wire
bytes, as a decoded message, or both:

- decoded at most once, and only when some component reads it;
- encoded only if it changed: an untouched batch leaves with the bytes it came in with;
- merged without decoding: concatenating two encoded requests is, by protobuf's rules
  for repeated fields, the encoding of one request holding both sets of spans;
- patched without decoding: `patch()` appends attribute fields to a span (and may drop some
  of its attributes) in the encoding, named by the span's byte offset in `base`
  (`pipeline.wirescan`); pending patches are spliced in, in one pass, when the bytes or
  the decoded request are next asked for. Patches change no span's place.
  `slice()` cuts a batch by byte ranges (whole traces) with their pending patches, and
  `settle()` splices patches in range by range, saying where each range went;
- scanned once: `scan()` gives every span's cheap fields and byte bounds in `base`.

`client` is the OTel Collector's `client.Info` of the request the batch came from: the
peer address and, when the receiver has `include_metadata: true`, its metadata (HTTP
headers or gRPC metadata, keys in lower case). Copies, slices and splits keep it; a merge
keeps it only when every part has the same (the batch processor partitions by
`metadata_keys` for that); stages that regroup spans (groupbytrace) drop it, as in the
Collector.

Derived data
============
What stages work out about a batch travels with it, so that the next stage need not work
it out again. Each kind is a typed member of `Traces`, and each is dropped only by the
changes that make it wrong:

- the span scan (`scan()`) and the GenAI indexes (`genai_index()`, built by
  `processors.genai.index_for`, one per GenAI config): read from the bytes, they hold
  byte offsets into `base`. Valid while `base` is the same object (checked on every use):
  patches keep them, splicing the patches in or any other change of the bytes does not.
  `mutable()` and `reset()` drop them at once; copies, merges and splits start without.
- the trace index (`trace_index`, a `pipeline.wholetraces.TraceIndex`): which traces the
  batch holds and why `groupbytrace` released each (`release`: a late fragment or not),
  with each trace's byte range. The releases depend only on which traces the batch
  holds, so every change of content keeps them: patches, splicing, attribute edits,
  re-encoding (`mutable()`), copies (`copy()`), merges and splits (by trace id). Only the
  byte ranges follow the bytes: `wholetraces.aligned` finds them again after a change.
  `reset()` replaces the index with the one its caller gives.
- trace facts (`TraceEntry.facts` in the trace index): attribute values a processor
  wrote on a trace (`cleanliness`: `sieve.trace.*`), keyed by the attribute's name, so
  that later stages (`tail_sampling`, `routing`) read them without reading the spans.
  A fact describes the attribute it is named after, not what it was computed from: an
  edit of attribute K (`mutable(edits)`, with K in `edits`) drops fact K, an edit that
  cannot say which keys it changes (`edits=None`) drops every fact, and any other change
  keeps them. The processor that patches an attribute it also records as a fact keeps
  the two in step itself. A dropped fact is read from the spans instead: the same value.

`Delivery` tokens track data whose source wants to know when it is fully handled (the
Kafka receiver commits an offset only then). Reference counting: a component that keeps
a batch beyond the `consume_traces` call that handed it over calls `retain()`, and later
`release()` once the data is exported, dropped by design, or given up on (`ok=False`).
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from pipeline import wirescan
from pipeline.wirescan import SpanInfo

if TYPE_CHECKING:  # (they import this module)
    from pipeline.wholetraces import TraceIndex
    from processors.genai.analysis import GenAIIndex

__all__ = ["ClientInfo", "Delivery", "InvalidTracesError", "Traces"]

_Patch = tuple[int, bytes, frozenset[str] | None]  # as `wirescan.splice` takes it
_START = operator.itemgetter(0)


class _Scan:
    __slots__ = ("raw", "spans")

    def __init__(self, raw: bytes, spans: list[SpanInfo]) -> None:
        self.raw = raw
        self.spans = spans


class InvalidTracesError(ValueError):
    """The bytes are not a valid OTLP ExportTraceServiceRequest."""


class ClientInfo:
    """Who sent a batch: `addr` (host or host:port of the peer, or a socket path) and
    `metadata` (lower-case key -> values; empty unless the receiver includes it)."""

    __slots__ = ("addr", "metadata")

    def __init__(self, addr: str = "", metadata: dict[str, tuple[str, ...]] | None = None) -> None:
        self.addr = addr
        self.metadata: dict[str, tuple[str, ...]] = metadata or {}

    def get(self, key: str) -> tuple[str, ...]:
        """The values of a metadata key (case-insensitive), () if absent."""
        return self.metadata.get(key.lower(), ())

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ClientInfo)
            and other.addr == self.addr
            and other.metadata == self.metadata
        )

    def __hash__(self) -> int:
        return hash((self.addr, tuple(sorted(self.metadata.items()))))

    def __repr__(self) -> str:
        return f"ClientInfo({self.addr!r}, {self.metadata!r})"


class Delivery:
    """Completion tracking for one unit of received data; see the module docstring."""

    __slots__ = ("_callback", "_failed", "_pending")

    def __init__(self, callback: Callable[[bool], None]) -> None:
        self._pending = 1  # the creator's own share
        self._failed = False
        self._callback = callback

    @property
    def done(self) -> bool:
        return self._pending <= 0

    def retain(self) -> None:
        self._pending += 1

    def release(self, ok: bool = True) -> None:
        if not ok:
            self._failed = True
        self._pending -= 1
        if self._pending == 0:
            self._callback(not self._failed)


def count_spans(msg: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in msg.resource_spans for ss in rs.scope_spans)


class Traces:
    """A batch of spans; see the module docstring."""

    __slots__ = (
        "__weakref__",  # a sender may keep its state of a batch by a weak reference
        "_genai",
        "_msg",
        "_patches",
        "_raw",
        "_scan",
        "client",
        "deliveries",
        "span_count",
        "trace_index",
    )

    def __init__(
        self,
        msg: ExportTraceServiceRequest | None = None,
        *,
        raw: bytes | None = None,
        span_count: int | None = None,
        deliveries: tuple[Delivery, ...] = (),
        client: ClientInfo | None = None,
    ) -> None:
        if msg is None and raw is None:
            msg = ExportTraceServiceRequest()
        self._msg = msg
        self._raw = raw
        self._patches: list[_Patch] | None = None  # as given; several for one span add up
        if span_count is None:
            span_count = count_spans(self.request)
        self.span_count = span_count
        self.deliveries = deliveries
        self.client = client
        # derived data: see the module docstring
        self._scan: _Scan | None = None
        self._genai: dict[str, GenAIIndex] | None = None  # by GenAI config fingerprint
        self.trace_index: TraceIndex | None = None

    # -- construction -------------------------------------------------------------
    @classmethod
    def decode(cls, raw: bytes) -> Traces:
        """Parse wire bytes; raise `InvalidTracesError` saying what is wrong."""
        try:
            msg = ExportTraceServiceRequest.FromString(raw)
        except DecodeError as exc:
            raise InvalidTracesError(f"cannot decode ExportTraceServiceRequest: {exc}") from exc
        return cls(msg, raw=raw, span_count=count_spans(msg))

    # -- access -------------------------------------------------------------------
    @property
    def request(self) -> ExportTraceServiceRequest:
        """The decoded request. Do not change it: call `mutable()` for that."""
        if self._msg is None:
            self._msg = ExportTraceServiceRequest.FromString(self.to_bytes())
        return self._msg

    @property
    def is_decoded(self) -> bool:
        return self._msg is not None

    @property
    def raw(self) -> bytes | None:
        """The wire bytes if the batch is unchanged since it was received or encoded, else
        None. Never encodes (use `to_bytes()` for that); splices pending patches in."""
        if self._patches:
            self._apply()
        return self._raw

    @property
    def base(self) -> bytes:
        """The bytes that `patch()` offsets refer to: the encoding before pending patches
        (encoded now if the batch has none). The same object until the patches are
        applied or the batch is changed."""
        if self._raw is None:
            self._raw = self.request.SerializeToString()
        return self._raw

    def patch(
        self, base: bytes, start: int, data: bytes, drop: frozenset[str] | None = None
    ) -> None:
        """Append `data` (encoded Span fields) to the span whose body starts at `start` in
        `base`, first dropping its attributes whose keys are in `drop`. Several patches of
        one span add up. Raises ValueError if `base` is no longer the batch's base."""
        self.patch_all(base, ((start, data, drop),))

    def patch_all(
        self, base: bytes, patches: Iterable[tuple[int, bytes, frozenset[str] | None]]
    ) -> None:
        """`patch` for each (start, data, drop) of `patches`."""
        if base is not self._raw or self._raw is None:
            raise ValueError("patch: the batch changed since its base was read")
        if self._patches is None:
            self._patches = []
            self._msg = None
        # kept in the splice's own form: in its one pass it appends a span's patches in
        # order and unites their drops (merging them here copied a span's bytes per patch)
        self._patches.extend(patches)

    @property
    def pending(self) -> bool:
        """Whether patches are waiting to be spliced in."""
        return bool(self._patches)

    # -- derived data (see the module docstring) ----------------------------------------
    def scan(self) -> list[SpanInfo]:
        """Every span of `base` as a `wirescan.SpanInfo`, in wire order (scanned once per
        base, for every stage that reads the batch from its encoding)."""
        base = self.base
        got = self._scan
        if got is not None and got.raw is base:
            return got.spans
        spans = wirescan.spans(base)
        self._scan = _Scan(base, spans)
        return spans

    def genai_index(self, fingerprint: str) -> GenAIIndex | None:
        """The GenAI index built for the config with this fingerprint, if it is still
        valid (built from the current `base`)."""
        got = self._genai
        if got is None:
            return None
        idx = got.get(fingerprint)
        return idx if idx is not None and idx.raw is self.base else None

    def set_genai_index(self, fingerprint: str, index: GenAIIndex) -> None:
        if index.raw is not self.base:
            raise ValueError("set_genai_index: the index was not built from the batch's base")
        if self._genai is None:
            self._genai = {}
        self._genai[fingerprint] = index

    def drop_genai_indexes(self) -> None:
        """Free the GenAI indexes now (the last stage that reads them calls this)."""
        self._genai = None

    def _bytes_changed(self) -> None:
        """Drop what was read from the bytes (the scan, the GenAI indexes)."""
        self._scan = None
        self._genai = None

    def _sorted_patches(self) -> list[_Patch]:
        """The pending patches by span, each span's in the order given (a stable sort)."""
        return sorted(self._patches or (), key=_START)

    def _patches_in(self, ranges: Sequence[tuple[int, int]]) -> list[list[_Patch]]:
        """The pending patches of each range of `base`, sorted, with offsets made relative
        to it."""
        patches = self._sorted_patches()
        starts = [p[0] for p in patches]
        out: list[list[_Patch]] = []
        for a, b in ranges:
            out.append(
                [
                    (s - a, data, drop)
                    for s, data, drop in patches[bisect_left(starts, a) : bisect_left(starts, b)]
                ]
            )
        return out

    def slice(self, ranges: Sequence[tuple[int, int]], span_count: int) -> Traces:
        """A new batch of these byte ranges of `base` (whole top-level fields, sorted and
        disjoint), with their pending patches and this batch's deliveries. Nothing is
        decoded or spliced."""
        base = self.base
        raw = (
            base
            if len(ranges) == 1 and ranges[0] == (0, len(base))
            else b"".join([base[a:b] for a, b in ranges])
        )
        out = Traces(raw=raw, span_count=span_count, deliveries=self.deliveries, client=self.client)
        if self._patches:
            moved: list[_Patch] = []
            pos = 0
            for (a, b), got in zip(ranges, self._patches_in(ranges), strict=True):
                moved += [(s + pos, data, drop) for s, data, drop in got]
                pos += b - a
            out._patches = moved or None
        return out

    def settle(self, ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        """Splice the pending patches in range by range (`ranges`: whole top-level fields
        of `base`, sorted, disjoint, covering every patched span) and return where each
        range is in the new encoding."""
        if not self._patches:
            return list(ranges)
        base = self.base
        if len(ranges) == 1 and ranges[0] == (0, len(base)):  # the whole encoding at once
            self._raw = wirescan.splice(base, self._sorted_patches())
            self._patches = None
            return [(0, len(self._raw))]
        pieces: list[bytes] = []
        out: list[tuple[int, int]] = []
        pos = 0
        for (a, b), got in zip(ranges, self._patches_in(ranges), strict=True):
            piece = base[a:b]
            if got:
                piece = wirescan.splice(piece, got)
            pieces.append(piece)
            out.append((pos, pos + len(piece)))
            pos += len(piece)
        self._raw = b"".join(pieces)
        self._patches = None
        return out

    def _apply(self) -> None:
        assert self._raw is not None
        self.settle(((0, len(self._raw)),))

    def mutable(self, edits: Iterable[str] | None = None) -> ExportTraceServiceRequest:
        """The decoded request, for changing; the original bytes are dropped, and so is
        what was read from them. `edits`: the attribute keys the caller may change (trace
        facts of those keys are dropped); None: any key (every fact is dropped). Changes
        must keep each span in its trace: the trace index (the releases) is kept."""
        msg = self.request
        self._raw = None
        self._bytes_changed()
        idx = self.trace_index
        if idx is not None:
            idx.forget(None if edits is None else frozenset(edits))
        return msg

    def reset(self, raw: bytes, span_count: int, trace_index: TraceIndex | None) -> None:
        """Replace the batch's content with another encoding (same deliveries), described
        by `trace_index`; what was read from the old bytes is dropped."""
        self._raw = raw
        self._msg = None
        self._patches = None
        self.span_count = span_count
        self._bytes_changed()
        self.trace_index = trace_index

    def to_bytes(self) -> bytes:
        if self._patches:
            self._apply()
        if self._raw is None:
            self._raw = self.request.SerializeToString()
        return self._raw

    def spans(self) -> Iterator[tuple[ResourceSpans, ScopeSpans, Span]]:
        for rs in self.request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    yield rs, ss, span

    def __len__(self) -> int:
        return self.span_count

    def __repr__(self) -> str:
        return f"Traces(spans={self.span_count})"

    # -- delivery tracking --------------------------------------------------------
    def retain(self) -> None:
        for d in self.deliveries:
            d.retain()

    def release(self, ok: bool = True) -> None:
        for d in self.deliveries:
            d.release(ok)

    # -- copies, merges, splits ---------------------------------------------------
    def copy(self, *, bare: bool = False) -> Traces:
        """An independent copy (for a consumer that mutates data), with its own copy of
        the trace index (`bare`: the bytes, deliveries and client only, for a sending
        queue). Cheap: bytes are shared and decoded again only if the copy is read."""
        out = Traces(
            raw=self.to_bytes(),
            span_count=self.span_count,
            deliveries=self.deliveries,
            client=self.client,
        )
        if not bare and self.trace_index is not None:
            out.trace_index = self.trace_index.copy()
        return out

    @staticmethod
    def merge(batches: Iterable[Traces]) -> Traces:
        """One batch of all of them. When each has a trace index, so does the result
        (theirs, one after the other; the byte ranges are found again on first use)."""
        batches = list(batches)
        if len(batches) == 1:
            return batches[0]
        raw = b"".join(b.to_bytes() for b in batches)
        clients = [b.client for b in batches]
        same = clients[0] is not None and all(c == clients[0] for c in clients)
        out = Traces(
            raw=raw,
            span_count=sum(b.span_count for b in batches),
            deliveries=tuple(d for b in batches for d in b.deliveries),
            client=clients[0] if same else None,
        )
        first, *rest = [b.trace_index for b in batches]
        if first is not None and all(i is not None for i in rest):
            out.trace_index = first.joined([i for i in rest if i is not None])
        return out

    def split(self, max_spans: int) -> list[Traces]:
        """Split into batches of at most `max_spans` spans, keeping resource and scope.

        Every part carries this batch's deliveries (a holder of a part retains it), and
        what its trace index says of each trace (a part is regrouped by trace id when
        read by trace)."""
        if max_spans <= 0 or self.span_count <= max_spans:
            return [self]
        parts: list[ExportTraceServiceRequest] = []
        out = ExportTraceServiceRequest()
        room = max_spans
        for rs in self.request.resource_spans:
            out_rs: ResourceSpans | None = None
            for ss in rs.scope_spans:
                spans = ss.spans
                i = 0
                while i < len(spans):
                    if room == 0:
                        parts.append(out)
                        out, out_rs, room = ExportTraceServiceRequest(), None, max_spans
                    if out_rs is None:
                        out_rs = out.resource_spans.add()
                        out_rs.resource.CopyFrom(rs.resource)
                        out_rs.schema_url = rs.schema_url
                    take = spans[i : i + room]
                    out_ss = out_rs.scope_spans.add()
                    out_ss.scope.CopyFrom(ss.scope)
                    out_ss.schema_url = ss.schema_url
                    out_ss.spans.extend(take)
                    i += len(take)
                    room -= len(take)
                # a new scope in the same resource continues in the same out_rs
        if room < max_spans:
            parts.append(out)
        batches = [Traces(p, deliveries=self.deliveries, client=self.client) for p in parts]
        if self.trace_index is not None:
            for b in batches:
                b.trace_index = self.trace_index.by_trace_id()
        return batches


def traces_from_spans(
    groups: Iterable[tuple[ResourceSpans, ScopeSpans, Iterable[Span]]],
) -> ExportTraceServiceRequest:
    """Build a request from (resource, scope, spans) groups, copying the spans."""
    out = ExportTraceServiceRequest()
    for rs, ss, spans in groups:
        out_rs = out.resource_spans.add()
        out_rs.resource.CopyFrom(rs.resource)
        out_rs.schema_url = rs.schema_url
        out_ss = out_rs.scope_spans.add()
        out_ss.scope.CopyFrom(ss.scope)
        out_ss.schema_url = ss.schema_url
        out_ss.spans.extend(spans)
    return out


__all__ += ["DecodeError", "count_spans", "traces_from_spans"]
