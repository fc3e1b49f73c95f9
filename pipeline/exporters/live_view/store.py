"""The live view's memory: the most recent traces, bounded by count and by bytes.

A trace is kept as its own encoding (an `ExportTraceServiceRequest` holding only its
spans: the run of bytes `groupbytrace` gave it in the batch, not copied, or cut from the
batch on the wire when the batch is not trace-aligned) and a `Summary`, what a row of the
list shows.

Reading a trace in costs no pass over its spans when `cleanliness` ran on it in this
pipeline and the batch still carries the trace index (`pipeline.wholetraces`): the
cleanliness results and the root span's row are in the trace's `facts`. Otherwise (the
batch was merged by `batch` on the way, or classified by an upstream tracesieve) the
trace's spans are scanned (`wirescan`) for its root span, whose `sieve.trace.*`
attributes are read. Nothing is decoded into protobuf messages until a page opens one
trace (`detail`); span names, for the search, are read when a search first needs them.

The oldest traces go first when either bound is passed (counted by bound). Fragments of a
trace that arrive later (a late span, a trace split across batches) join it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import wirescan
from pipeline.otlpwire import frame
from pipeline.wholetraces import TraceIndex, plain
from processors.cleanliness import FACT_ROOT, REASONS

__all__ = [
    "CLASSES",
    "ClassCounts",
    "Filter",
    "Held",
    "Summary",
    "TraceStore",
    "annotate",
    "cut",
    "detail",
    "parse_attempt",
    "summarize",
]

# the cleanliness classes, best to worst, and what a trace nobody classified shows
CLASSES: Final = ("clean", "noisy", "corrupted", "failed", "unclassified")
_CLASS_INDEX: Final = {c: i for i, c in enumerate(CLASSES)}

A_CLASS: Final = "sieve.trace.class"
A_REASONS: Final = "sieve.trace.reasons"
A_PROVIDERS: Final = "sieve.trace.providers"
A_MODELS: Final = "sieve.trace.models"
A_RATIO: Final = "sieve.trace.duration_ratio"
A_TASK: Final = "sieve.trace.task_class"
# the task class where cleanliness did not write it: its default keys, then the root's name
TASK_KEYS: Final = ("task.class", "gen_ai.workflow.name", "gen_ai.agent.name")
_ROOT_KEYS: Final = frozenset(
    (A_CLASS, A_REASONS, A_PROVIDERS, A_MODELS, A_RATIO, A_TASK, *TASK_KEYS)
)

MAX_NAME: Final = 200  # characters of a name kept in a summary
MAX_VALUE: Final = 16_384  # characters of an attribute value a trace page gets
_OVERHEAD: Final = 700  # bytes a held trace costs beside its encoding (measured)
_ERROR: Final = 2  # Status.STATUS_CODE_ERROR


# The store's objects are kept out of the cyclic GC (no reference cycles: `gc=False`, and
# tuples of strings, which the GC stops tracking): a thousand traces held would otherwise
# be walked by every full collection, and made collections more frequent.


class Summary(msgspec.Struct, kw_only=True, gc=False):
    """One row of the list (the JSON API's trace summary)."""

    trace_id: str  # hex
    seq: int = 0  # the view's arrival number: newer traces have larger ones
    received: float  # unix seconds, when the view took the trace in
    start: float | None  # unix milliseconds: the root span's start (without one, the first)
    name: str  # the root span's name ("" without a root span)
    root: bool  # whether the root span is here
    task_class: str
    cls: str = msgspec.field(name="class")
    reasons: tuple[str, ...]
    providers: tuple[str, ...]
    models: tuple[str, ...]
    duration_ms: float | None
    ratio: float | None  # duration / the task class's median (cleanliness)
    spans: int
    error: bool  # the root span's status is ERROR


class Held(msgspec.Struct, gc=False):
    """A trace held: its encoding is `raw[start:end]`, where `raw` is the batch it came in
    (shared by the batch's traces, never copied for them; a fragment arriving later makes
    a joined copy)."""

    raw: bytes
    start: int
    end: int
    summary: Summary
    size: int  # what it counts against max_bytes
    names: frozenset[str] | None = None  # lower-cased span names, once searched

    @property
    def data(self) -> bytes:
        """The trace's own encoding (an ExportTraceServiceRequest)."""
        raw = self.raw
        return raw if self.start == 0 and self.end == len(raw) else raw[self.start : self.end]

    def span_names(self) -> frozenset[str]:
        got = self.names
        if got is None:
            got = self.names = frozenset(s[1].lower() for s in wirescan.spans(self.data))
        return got


class TraceStore:
    """The held traces, oldest first; see the module docstring."""

    def __init__(self, max_traces: int, max_bytes: int) -> None:
        self.max_traces = max_traces
        self.max_bytes = max_bytes
        self._held: OrderedDict[bytes, Held] = OrderedDict()
        self.bytes = 0
        self.seq = 0
        self.evicted = {"max_traces": 0, "max_bytes": 0}

    def __len__(self) -> int:
        return len(self._held)

    def put(
        self, trace_id: bytes, raw: bytes, start: int, end: int, summary: Summary
    ) -> Held | None:
        """Hold a trace, `raw[start:end]` (joining what is held of it), as the newest; or
        None when it alone is larger than `max_bytes` (not held; counted as evicted by
        `max_bytes`). The bytes counted are the trace's: the batch they are part of stays
        until its last trace goes (the oldest go first, so at most one batch more)."""
        old = self._held.pop(trace_id, None)
        if old is not None:
            self.bytes -= old.size
            # two encoded requests concatenated: one request
            raw = old.data + raw[start:end]
            start, end = 0, len(raw)
            summary = _merge(old.summary, summary)
        size = end - start + _OVERHEAD
        if size > self.max_bytes:
            self.evicted["max_bytes"] += 1
            return None
        self.seq += 1
        summary.seq = self.seq
        h = self._held[trace_id] = Held(raw, start, end, summary, size)
        self.bytes += size
        held = self._held
        while len(held) > self.max_traces:
            self.bytes -= held.popitem(last=False)[1].size
            self.evicted["max_traces"] += 1
        while self.bytes > self.max_bytes:
            self.bytes -= held.popitem(last=False)[1].size
            self.evicted["max_bytes"] += 1
        return h

    def get(self, trace_id: bytes) -> Held | None:
        return self._held.get(trace_id)

    def newest(self) -> Iterator[Held]:
        """Held traces, newest first."""
        return reversed(self._held.values())

    def since(self, seq: int) -> list[Held]:
        """Held traces newer than `seq`, oldest first."""
        out: list[Held] = []
        for h in self.newest():
            if h.summary.seq <= seq:
                break
            out.append(h)
        out.reverse()
        return out

    def facets(self) -> dict[str, list[str]]:
        """The task classes and providers of the held traces (for the page's filters)."""
        tasks: set[str] = set()
        providers: set[str] = set()
        for h in self._held.values():
            s = h.summary
            if s.task_class:
                tasks.add(s.task_class)
            providers.update(s.providers)
        return {"task_class": sorted(tasks), "provider": sorted(providers)}


def _merge(old: Summary, new: Summary) -> Summary:
    """A trace's summary after another fragment of it arrived."""
    base, other = (new, old) if new.root and not old.root else (old, new)
    if base.cls == "unclassified" and other.cls != "unclassified":
        base.cls, base.reasons = other.cls, other.reasons
        base.providers, base.models, base.ratio = other.providers, other.models, other.ratio
    if not base.task_class:
        base.task_class = other.task_class
    if not base.root and other.start is not None and base.start is not None:
        # without a root: from the earliest start to the latest end of what is here
        ends = [
            s.start + s.duration_ms
            for s in (base, other)
            if s.start is not None and s.duration_ms is not None
        ]
        start = min(base.start, other.start)
        base.start = start
        base.duration_ms = max(ends) - start if ends else None
    base.spans = old.spans + new.spans
    base.received = new.received
    return base


class Filter(msgspec.Struct, frozen=True):
    """What a page (or an API client) wants to see. Empty fields match everything; `q`
    matches, ignoring case, part of the trace id, the root span's name, the task class or
    any span's name."""

    cls: str = ""
    reason: str = ""
    task_class: str = ""
    provider: str = ""
    q: str = ""

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> tuple[Filter, list[str]]:
        """A filter from query parameters, and what is wrong with them."""
        errors: list[str] = []
        klass = query.get("class", "")
        if klass and klass not in _CLASS_INDEX:
            errors.append(f"class: unknown class {klass!r} (valid: {', '.join(CLASSES)})")
        reason = query.get("reason", "")
        if reason and reason not in REASONS:
            errors.append(f"reason: unknown reason {reason!r} (valid: {', '.join(REASONS)})")
        q = query.get("q", "").strip().lower()
        if len(q) > MAX_NAME:
            errors.append(f"q: longer than {MAX_NAME} characters")
        return (
            cls(
                cls=klass,
                reason=reason,
                task_class=query.get("task_class", ""),
                provider=query.get("provider", ""),
                q=q,
            ),
            errors,
        )

    @property
    def empty(self) -> bool:
        return not (self.cls or self.reason or self.task_class or self.provider or self.q)

    def match(self, h: Held) -> bool:
        s = h.summary
        if self.cls and s.cls != self.cls:
            return False
        if self.reason and self.reason not in s.reasons:
            return False
        if self.task_class and s.task_class != self.task_class:
            return False
        if self.provider and self.provider not in s.providers:
            return False
        q = self.q
        if q:
            if q in s.trace_id or q in s.name.lower() or q in s.task_class.lower():
                return True
            return any(q in n for n in h.span_names())
        return True


# -- reading a batch ------------------------------------------------------------------------

Facts = dict[str, Any]
_RS: Final = b"\x0a"  # ExportTraceServiceRequest.resource_spans
_SS: Final = b"\x12"  # ResourceSpans.scope_spans


Piece = tuple[bytes, bytes, int, int, int, Facts | None]


def cut(raw: bytes, index: TraceIndex | None) -> Iterator[Piece]:
    """(trace id, encoding, start, end, span count, facts) of each trace of a batch, whose
    own encoding is `encoding[start:end]`: by the batch's trace index when it is one of
    `raw` (`wholetraces.current`; no copy), else cut on the wire."""
    if index is not None and index.raw is raw:
        for e in index.entries:
            yield e.trace_id, raw, e.byte_start, e.byte_end, e.span_count, e.facts
        return
    parts: dict[bytes, list[bytes]] = {}
    counts: dict[bytes, int] = {}
    for (res, res_url), (scope, scope_url), by_tid in wirescan.group(raw)[0]:
        for tid, (spans, n) in by_tid.items():
            piece = frame(_RS, res + res_url + frame(_SS, scope + scope_url + spans))
            got = parts.get(tid)
            if got is None:
                parts[tid] = [piece]
                counts[tid] = n
            else:
                got.append(piece)
                counts[tid] += n
    for tid, pieces in parts.items():
        data = b"".join(pieces)
        yield tid, data, 0, len(data), counts[tid], None


def summarize(
    trace_id: bytes,
    raw: bytes,
    start: int,
    end: int,
    span_count: int,
    facts: Facts | None,
    received: float,
) -> Summary:
    """The summary of one trace, `raw[start:end]`; see the module docstring."""
    root: Any = None
    info: Facts = facts if facts is not None and A_CLASS in facts else {}
    if info:
        root = info.get(FACT_ROOT)  # a wirescan row of an earlier encoding: fields 1, 6-8
    if root is None:
        data = raw if start == 0 and end == len(raw) else raw[start:end]
        spans = wirescan.spans(data)
        root = next((s for s in spans if not s[5]), None)
        if not info:
            # classified upstream (or not at all): what the root span (or the first span,
            # without one) says
            first = root if root is not None else (spans[0] if spans else None)
            if first is not None:
                info = dict(wirescan.attributes(data, first[9], first[10], _ROOT_KEYS, None))
        if root is None and spans:
            start_ns: int = min(s[6] for s in spans)
            end_ns: int = max(s[7] for s in spans)
        else:
            start_ns, end_ns = (root[6], root[7]) if root is not None else (0, 0)
    else:
        start_ns, end_ns = root[6], root[7]
    task = info.get(A_TASK)
    if not isinstance(task, str) or not task:
        task = next((v for k in TASK_KEYS if isinstance(v := info.get(k), str) and v), "")
        if not task and root is not None:
            task = root[1]
    cls = info.get(A_CLASS)
    ratio = info.get(A_RATIO)
    return Summary(
        trace_id=trace_id.hex(),
        received=received,
        start=start_ns / 1e6 if start_ns else None,
        name=root[1][:MAX_NAME] if root is not None else "",
        root=root is not None,
        task_class=task[:MAX_NAME],
        cls=cls if isinstance(cls, str) and cls in _CLASS_INDEX else "unclassified",
        reasons=_strings(info.get(A_REASONS)),
        providers=_strings(info.get(A_PROVIDERS)),
        models=_strings(info.get(A_MODELS)),
        duration_ms=(end_ns - start_ns) / 1e6 if start_ns else None,
        ratio=float(ratio) if isinstance(ratio, int | float) else None,
        spans=span_count,
        error=root is not None and root[8] == _ERROR,
    )


def _strings(v: Any) -> tuple[str, ...]:
    if isinstance(v, list | tuple):
        return tuple([x for x in v if isinstance(x, str)])
    return ()


# -- the chart: traces by class, per second, over 15 minutes --------------------------------


class ClassCounts:
    """Traces taken in, by class, in `bucket`-second buckets over the last `seconds`."""

    def __init__(
        self, seconds: int = 900, bucket: int = 5, clock: Callable[[], float] = time.time
    ) -> None:
        self.bucket = bucket
        self.n = seconds // bucket
        self._clock = clock
        self._counts = [[0] * len(CLASSES) for _ in range(self.n)]
        self._stamps = [-1] * self.n  # the bucket number each slot holds

    def add(self, cls: str, now: float | None = None) -> None:
        b = int(self._clock() if now is None else now) // self.bucket
        i = b % self.n
        if self._stamps[i] != b:
            self._stamps[i] = b
            self._counts[i] = [0] * len(CLASSES)
        self._counts[i][_CLASS_INDEX.get(cls, len(CLASSES) - 1)] += 1

    def windows(self, spans: tuple[int, ...] = (60, 300, 900)) -> dict[str, dict[str, int]]:
        """Per window ('1m', '5m', '15m'): traces by class (to the bucket)."""
        now = int(self._clock()) // self.bucket
        totals = {w: [0] * len(CLASSES) for w in spans}
        for stamp, counts in zip(self._stamps, self._counts, strict=True):
            age = (now - stamp) * self.bucket
            if stamp < 0 or age < 0:
                continue
            for w in spans:
                if age < w:
                    t = totals[w]
                    for c, n in enumerate(counts):
                        t[c] += n
        return {f"{w // 60}m": dict(zip(CLASSES, totals[w], strict=True)) for w in spans}


# -- one trace, for its page ----------------------------------------------------------------

_KINDS: Final = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}
_STATUS: Final = {0: "unset", 1: "ok", 2: "error"}


def detail(held: Held) -> dict[str, Any]:
    """A trace for its page: every span with its attributes (long values cut), events,
    links, resource and scope, and our annotations (`sieve`) read from its attributes;
    times in milliseconds from the trace's first start."""
    req = ExportTraceServiceRequest.FromString(held.data)
    starts = [
        sp.start_time_unix_nano
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for sp in ss.spans
    ]
    t0 = min(starts) if starts else 0
    resources: list[dict[str, Any]] = []
    spans: list[dict[str, Any]] = []
    for ri, rs in enumerate(req.resource_spans):
        resources.append({"attributes": _attrs(rs.resource.attributes)})
        for ss in rs.scope_spans:
            scope = {"name": ss.scope.name, "version": ss.scope.version}
            for sp in ss.spans:
                a = _attrs(sp.attributes)
                spans.append(
                    {
                        "span_id": sp.span_id.hex(),
                        "parent_span_id": sp.parent_span_id.hex(),
                        "name": sp.name,
                        "kind": _KINDS.get(sp.kind, str(sp.kind)),
                        "start_ms": (sp.start_time_unix_nano - t0) / 1e6,
                        "duration_ms": (sp.end_time_unix_nano - sp.start_time_unix_nano) / 1e6,
                        "status": {
                            "code": _STATUS.get(sp.status.code, str(sp.status.code)),
                            "message": _clip(sp.status.message),
                        },
                        "resource": ri,
                        "scope": scope,
                        "attributes": a,
                        "events": [
                            {
                                "name": ev.name,
                                "at_ms": (ev.time_unix_nano - t0) / 1e6
                                if ev.time_unix_nano
                                else None,
                                "attributes": _attrs(ev.attributes),
                            }
                            for ev in sp.events
                        ],
                        "links": [
                            {
                                "trace_id": ln.trace_id.hex(),
                                "span_id": ln.span_id.hex(),
                                "attributes": _attrs(ln.attributes),
                            }
                            for ln in sp.links
                        ],
                        "sieve": annotate(a),
                    }
                )
    return {
        "summary": held.summary,
        "start": t0 / 1e6 if t0 else None,
        "resources": resources,
        "spans": spans,
    }


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _clip(plain(kv.value)) for kv in kvs}


def _clip(v: Any) -> Any:
    if isinstance(v, str):
        if len(v) > MAX_VALUE:
            return f"{v[:MAX_VALUE]}… ({len(v) - MAX_VALUE} more characters)"
        return v
    if isinstance(v, bytes):
        return v[:MAX_VALUE].hex()
    if isinstance(v, list):
        return [_clip(x) for x in v[:1000]]
    if isinstance(v, dict):
        return {k: _clip(x) for k, x in list(v.items())[:1000]}
    return v


def annotate(a: dict[str, Any]) -> dict[str, Any]:
    """What tracesieve wrote on a span, grouped: `provider` (requested vs served),
    `cache`, `attempts`, `retries`, `fallback` (fired, and the chain of attempts),
    `schema_error`."""
    out: dict[str, Any] = {}
    provider = {
        name: a[key]
        for name, key in (
            ("requested", "sieve.provider.requested"),
            ("served", "sieve.provider.served"),
            ("model_requested", "sieve.model.requested"),
            ("model_served", "sieve.model.served"),
            ("evidence", "sieve.provider.evidence"),
            ("mismatch", "sieve.provider.mismatch"),
        )
        if key in a
    }
    if provider:
        out["provider"] = provider
    if "sieve.cache.hit" in a:
        out["cache"] = {
            "hit": a["sieve.cache.hit"] is True,
            "type": a.get("sieve.cache.type", ""),
            "evidence": a.get("sieve.cache.evidence", ""),
        }
    for name, key in (("attempts", "sieve.attempt.count"), ("retries", "sieve.retry.count")):
        if isinstance(a.get(key), int):
            out[name] = a[key]
    chain = a.get("sieve.fallback.chain")
    if "sieve.fallback.fired" in a or chain:
        out["fallback"] = {
            "fired": a.get("sieve.fallback.fired") is True,
            "chain": [parse_attempt(e) for e in chain if isinstance(e, str)]
            if isinstance(chain, list)
            else [],
        }
    if "sieve.tool.schema_error" in a:
        out["schema_error"] = {
            "message": a["sieve.tool.schema_error"],
            "path": a.get("sieve.tool.schema_path", ""),
        }
    return out


def parse_attempt(entry: str) -> dict[str, Any]:
    """One `sieve.fallback.chain` entry, `provider/model:outcome` (outcome `ok` or
    `error:<type or status>`; a model may itself hold ':')."""
    slash = entry.find("/")
    err = entry.find(":error", max(slash, 0))
    if err >= 0:
        target, outcome = entry[:err], entry[err + 1 :]
    elif entry.endswith(":ok"):
        target, outcome = entry[:-3], "ok"
    else:
        target, outcome = entry, ""
    provider, _, model = target.partition("/")
    return {"provider": provider, "model": model, "outcome": outcome, "ok": outcome == "ok"}
