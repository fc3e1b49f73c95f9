"""What the audit keeps of each classified trace (`TraceRecord`), read from the batches the
processors hand on, and the sums the report is made of (`Tally`).

The record is read from what the processors wrote, the documented contract, not from their
internals: `cleanliness`' verdict from the trace's entry in the `groupbytrace` index (the
same values as `sieve.trace.*`), and per span the `sieve.*` attributes of the enrichment
processors (only spans whose bytes hold `sieve.` are read). Records are written to disk per
partition (msgpack) between the two passes, and summed into a `Tally` per partition; tallies
of all partitions add up to the report.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from ddsketch import LogCollapsingLowestDenseDDSketch

from pipeline import wirescan
from pipeline.pdata import Traces
from pipeline.wholetraces import TraceView, resource_attributes, trace_views
from processors.cleanliness import (
    A_CLASS,
    A_MODELS,
    A_PROVIDERS,
    A_RATIO,
    A_REASONS,
)
from processors.genai.tools import name_from_span

__all__ = [
    "CONVENTIONS",
    "HIST_EDGES",
    "RecordSink",
    "Tally",
    "TraceRecord",
    "hist_bin",
]

# what marks a convention in a batch's bytes (attribute keys)
CONVENTIONS: dict[str, tuple[bytes, ...]] = {
    "otel_genai": (b"gen_ai.provider.name", b"gen_ai.operation.name"),
    "otel_genai_legacy": (b"gen_ai.system",),
    "openinference": (b"openinference.span.kind",),
    "openllmetry": (b"traceloop.", b"llm.request.type"),
    "litellm": (b"litellm", b"hidden_params"),
    "bifrost": (b"bifrost.",),
    "portkey": (b"portkey",),
}
_TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name", "traceloop.entity.name")  # as cleanliness
_TOOL_RESULT_KEYS = ("gen_ai.tool.call.result", "output.value", "traceloop.entity.output")
_ERROR = 2
# duration histogram: log-spaced bins of root durations, 8 a doubling, from 1 ms to ~1 day
_HIST_BASE = 0.001
_HIST_STEP = 2 ** (1 / 8)
HIST_EDGES = [_HIST_BASE * _HIST_STEP**i for i in range(8 * 27 + 1)]


def hist_bin(seconds: float) -> int:
    """The duration histogram's bin of `seconds` (0: below 1 ms; the last: beyond)."""
    return bisect_right(HIST_EDGES, seconds)


class TraceRecord(msgspec.Struct, array_like=True):
    trace_id: bytes
    spans: int
    cls: str
    reasons: list[str]
    providers: list[str]
    models: list[str]
    root: bool
    task: str  # "" without a timing check (no root, or no positive duration)
    seconds: float
    start: int  # earliest span start, ns (0: none)
    end: int  # latest span end, ns
    services: list[str]
    # per LLM call span: (requested provider, requested model, served provider, served
    # model, mismatch)
    calls: list[tuple[str, str, str, str, bool]]
    chains: list[list[str]]  # fallback chains that fired
    cache_hits: list[tuple[str, str]]  # (type, evidence)
    tool_retries: list[tuple[str, int]]  # (tool, retries)
    schema_invalid: list[tuple[str, str]]  # (tool, first validation error)
    ratio: float | None = None  # as cleanliness computed it (second pass), else None


# -- reading the classified batches -----------------------------------------------------------

_SLOT_KEYS = (
    "sieve.provider.requested",
    "sieve.model.requested",
    "sieve.provider.served",
    "sieve.model.served",
    "sieve.provider.mismatch",
    "sieve.cache.hit",
    "sieve.cache.type",
    "sieve.cache.evidence",
    "sieve.fallback.fired",
    "sieve.fallback.chain",
    "sieve.retry.count",
    "sieve.attempt.count",
)


class RecordSink:
    """The chain's last consumer: a `TraceRecord` per trace, handed to `emit` with the
    batch's view of it (for sinks of whole traces: `--output`, a dataset)."""

    mutates_data = False

    def __init__(
        self,
        timing_of: Callable[[TraceView], tuple[str, float] | None],
        emit: Callable[[TraceRecord], None],
        tool_name_keys: Iterable[str] = (),
        schema_errors: Callable[[TraceView, Traces], list[tuple[str, str]]] | None = None,
        batch_sinks: Iterable[Callable[[Traces, list[TraceView], list[TraceRecord]], None]] = (),
    ) -> None:
        self._timing_of = timing_of
        self._emit = emit
        self._schema_errors = schema_errors
        self._batch_sinks = list(batch_sinks)
        slots: dict[str, tuple[int, int]] = {k: (i, 0) for i, k in enumerate(_SLOT_KEYS)}
        name_slot = len(_SLOT_KEYS)
        for prio, k in enumerate((*tool_name_keys, *_TOOL_NAME_KEYS)):
            slots.setdefault(k, (name_slot, prio))
        self._slots = wirescan.Slots(slots)
        self._unseen = list(CONVENTIONS)
        self._starts: list[int] = []
        self._spans: list[Any] = []
        self.conventions: set[str] = set()  # seen in the batches so far

    async def start(self, host: Any) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume_traces(self, traces: Traces) -> None:
        traces.to_bytes()  # what the processors wrote, spliced in (in one pass)
        views = trace_views(traces, settle=False)
        raw = traces.base
        spans = traces.scan()
        self._starts = [s[9] for s in spans]
        self._spans = spans
        if self._unseen:  # the conventions this partition shows, looked for once each
            for c in [c for c in self._unseen if any(n in raw for n in CONVENTIONS[c])]:
                self._unseen.remove(c)
                self.conventions.add(c)
        records = [self.record(v, raw, traces) for v in views]
        for rec in records:
            self._emit(rec)
        for sink in self._batch_sinks:
            sink(traces, views, records)

    def record(self, v: TraceView, raw: bytes, traces: Traces) -> TraceRecord:
        facts = v.entry.facts
        spans = v.spans
        root = v.root
        if root is not None:
            start, end = root[6], root[7]
        else:
            start = min((s[6] for s in spans), default=0)
            end = max((s[7] for s in spans), default=0)
        services: list[str] = []
        for _, head in v.resources():
            name = resource_attributes(head).get("service.name")
            if isinstance(name, str) and name not in services:
                services.append(name)
        timing = self._timing_of(v)
        reasons = list(facts.get(A_REASONS, ()))
        rec = TraceRecord(
            trace_id=v.trace_id,
            spans=len(spans),
            cls=str(facts.get(A_CLASS, "")),
            reasons=reasons,
            providers=list(facts.get(A_PROVIDERS, ())),
            models=list(facts.get(A_MODELS, ())),
            root=root is not None,
            task=timing[0] if timing else "",
            seconds=timing[1] if timing else 0.0,
            start=start,
            end=end,
            services=services,
            calls=[],
            chains=[],
            cache_hits=[],
            tool_retries=[],
            schema_invalid=[],
            ratio=facts.get(A_RATIO),
        )
        self._read_calls(v, raw, rec)
        if "tool_schema_invalid" in reasons and self._schema_errors is not None:
            rec.schema_invalid = self._schema_errors(v, traces)
        return rec

    def _read_calls(self, v: TraceView, raw: bytes, rec: TraceRecord) -> None:
        """The `sieve.*` attributes of the trace's spans that have some: found by looking
        for `sieve.` in the trace's bytes, span after span (spans without are skipped)."""
        collect = wirescan.collect
        slots = self._slots
        spans = self._spans  # the batch's, in wire order
        starts = self._starts
        e = v.entry
        stop = e.byte_end
        pos = raw.find(b"sieve.", e.byte_start, stop)
        while pos >= 0:
            i = bisect_right(starts, pos) - 1
            if i < 0:
                pos = raw.find(b"sieve.", spans[0][9], stop) if spans else -1
                continue
            s = spans[i]
            b0, b1 = s[9], s[10]
            if pos >= b1:  # between spans (a resource or scope attribute)
                pos = raw.find(b"sieve.", spans[i + 1][9], stop) if i + 1 < len(spans) else -1
                continue
            got, mask = collect(raw, b0, b1, slots, None)
            if mask & (1 << 4):  # an LLM call span
                rec.calls.append((_s(got[0]), _s(got[1]), _s(got[2]), _s(got[3]), got[4] is True))
            if got[5] is True:
                rec.cache_hits.append((_s(got[6]) or "unknown", _s(got[7]) or "unknown"))
            if got[8] is True and isinstance(got[9], list):
                rec.chains.append([str(x) for x in got[9]])
            retries = got[10]
            if isinstance(retries, int) and retries > 0 and not mask & (1 << 11):
                tool = name_from_span(s[1]) or _s(got[len(_SLOT_KEYS)]) or s[1]
                rec.tool_retries.append((tool, retries))
            pos = raw.find(b"sieve.", b1, stop)


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


# -- sums -------------------------------------------------------------------------------------


def _sketch() -> LogCollapsingLowestDenseDDSketch:
    return LogCollapsingLowestDenseDDSketch(0.01, bin_limit=2048)


@dataclass
class TaskTally:
    traces: int = 0
    slow: int = 0
    no_median: int = 0
    sketch: Any = field(default_factory=_sketch)
    hist: Counter[int] = field(default_factory=Counter)

    def merge(self, o: TaskTally) -> None:
        self.traces += o.traces
        self.slow += o.slow
        self.no_median += o.no_median
        self.sketch.merge(o.sketch)
        self.hist.update(o.hist)


@dataclass
class Tally:
    """The report's sums over some traces; `merge` adds another's."""

    traces: int = 0
    spans: int = 0
    start: int = 0
    end: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    four_point: int = 0
    four_point_fails: Counter[str] = field(default_factory=Counter)
    services: Counter[str] = field(default_factory=Counter)
    calls: Counter[tuple[str, str, str, str, bool]] = field(default_factory=Counter)
    chains: Counter[tuple[str, ...]] = field(default_factory=Counter)
    cache_hits: Counter[tuple[str, str]] = field(default_factory=Counter)
    tool_retries: dict[str, list[int]] = field(default_factory=dict)  # tool -> [traces, retries]
    schema_invalid: dict[str, list[Any]] = field(default_factory=dict)  # tool -> [n, error]
    tasks: dict[str, TaskTally] = field(default_factory=dict)
    no_root: int = 0
    no_root_examples: list[str] = field(default_factory=list)

    def add(self, r: TraceRecord, ratio: float | None, max_ratio: float) -> None:
        """One trace; `ratio` its duration over its task class's median (None: no median
        or no timing check)."""
        self.traces += 1
        self.spans += r.spans
        if r.start and (not self.start or r.start < self.start):
            self.start = r.start
        if r.end > self.end:
            self.end = r.end
        self.classes[r.cls] += 1
        self.reasons.update(r.reasons)
        self.services.update(r.services)
        self.calls.update(r.calls)
        self.chains.update(tuple(c) for c in r.chains)
        self.cache_hits.update(r.cache_hits)
        seen_tools: set[str] = set()
        for tool, n in r.tool_retries:
            t = self.tool_retries.setdefault(tool, [0, 0])
            if tool not in seen_tools:
                t[0] += 1
                seen_tools.add(tool)
            t[1] += n
        for tool, err in r.schema_invalid:
            got = self.schema_invalid.get(tool)
            if got is None:
                self.schema_invalid[tool] = [1, err]
            else:
                got[0] += 1
        # the founding story's four points
        fails = []
        if "fallback" in r.reasons or len(r.providers) > 1 or len(r.models) > 1:
            fails.append("provider_or_model")
        if "tool_retry" in r.reasons:
            fails.append("tool_retry")
        if "tool_schema_invalid" in r.reasons:
            fails.append("tool_schema_invalid")
        if ratio is None:
            fails.append("no_median")
        elif ratio > max_ratio:
            fails.append("duration")
        if fails:
            self.four_point_fails.update(fails)
        else:
            self.four_point += 1
        if r.task:
            tt = self.tasks.get(r.task)
            if tt is None:
                tt = self.tasks[r.task] = TaskTally()
            tt.traces += 1
            tt.sketch.add(r.seconds)
            tt.hist[hist_bin(r.seconds)] += 1
            if ratio is None:
                tt.no_median += 1
            elif ratio > max_ratio:
                tt.slow += 1
        if not r.root:
            self.no_root += 1
            if len(self.no_root_examples) < 5:
                self.no_root_examples.append(r.trace_id.hex())

    def merge(self, o: Tally) -> None:
        self.traces += o.traces
        self.spans += o.spans
        if o.start and (not self.start or o.start < self.start):
            self.start = o.start
        self.end = max(self.end, o.end)
        for name in (
            "classes",
            "reasons",
            "four_point_fails",
            "services",
            "calls",
            "chains",
            "cache_hits",
        ):
            getattr(self, name).update(getattr(o, name))
        self.four_point += o.four_point
        for tool, (n, k) in o.tool_retries.items():
            t = self.tool_retries.setdefault(tool, [0, 0])
            t[0] += n
            t[1] += k
        for tool, (n, err) in o.schema_invalid.items():
            got = self.schema_invalid.get(tool)
            if got is None:
                self.schema_invalid[tool] = [n, err]
            else:
                got[0] += n
        for task, tt in o.tasks.items():
            mine = self.tasks.get(task)
            if mine is None:
                self.tasks[task] = tt
            else:
                mine.merge(tt)
        self.no_root += o.no_root
        self.no_root_examples = (self.no_root_examples + o.no_root_examples)[:5]


def ratio_of(r: TraceRecord, medians: dict[str, float]) -> float | None:
    """The trace's duration over its task class's median: as cleanliness computed it when
    it did (a second-pass trace), else the same division."""
    if r.ratio is not None:
        return r.ratio
    if not r.task:
        return None
    m = medians.get(r.task)
    return r.seconds / m if m else None


def finite(x: float) -> bool:
    return math.isfinite(x)


__all__ += ["TaskTally", "finite", "ratio_of"]
