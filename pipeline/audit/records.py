"""What the audit reads from each classified trace, and the sums the report is made of.

Read once, where the processors left it: `cleanliness`' verdict from the trace's entry in
the `groupbytrace` index (the same values as `sieve.trace.*`); what the enrichment
processors found per LLM call and tool run from the batch's GenAI index, by a tap between
`fallback_chain` and `cleanliness` (`CallTap`: the index's results, the very values the
processors write as `sieve.provider.*`, `sieve.cache.*`, `sieve.fallback.*` and
`sieve.retry.count`; reading them back from the spans would mean splicing the batch and
scanning it again).

Two kinds of sums, because the second pass changes only verdicts:

- what the timing check cannot change (spans, time range, services, LLM calls by requested
  and served provider/model, fallback chains, cache hits, tool retries, schema-invalid tool
  results, traces without a root) is summed in the first pass, straight into a `Tally`;
- per trace, a small `Verdict` (class, reasons, task class, duration) is kept on disk
  between the passes; the second pass sums those (classes, reasons, the four-point filter,
  task classes), with the verdicts `cleanliness` gave the traces it saw again.

Tallies of partitions add up (`Tally.merge`) to the report's.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from ddsketch import LogCollapsingLowestDenseDDSketch

from pipeline.pdata import Traces
from pipeline.wholetraces import TraceView, resource_attributes, trace_views
from processors.cleanliness import A_CLASS, A_MODELS, A_PROVIDERS, A_RATIO, A_REASONS
from processors.genai import index_for

__all__ = [
    "CONVENTIONS",
    "HIST_EDGES",
    "BatchSink",
    "CallTap",
    "RecordSink",
    "Tally",
    "TaskTally",
    "Verdict",
    "hist_bin",
    "ratio_of",
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
# duration histogram: log-spaced bins of root durations, 8 a doubling, from 1 ms to ~1 day
_HIST_BASE = 0.001
_HIST_STEP = 2 ** (1 / 8)
HIST_EDGES = [_HIST_BASE * _HIST_STEP**i for i in range(8 * 27 + 1)]


def hist_bin(seconds: float) -> int:
    """The duration histogram's bin of `seconds` (0: below 1 ms; the last: beyond)."""
    return bisect_right(HIST_EDGES, seconds)


class Verdict(msgspec.Struct, array_like=True):
    """One trace as `cleanliness` judged it, and what the timing check rests on."""

    trace_id: bytes
    cls: str
    reasons: list[str]
    providers: int  # served providers (successful LLM calls)
    models: int  # served models
    task: str  # "" without a timing check (no root span, or no positive duration)
    seconds: float
    ratio: float | None = None  # as cleanliness computed it (second pass), else None


def ratio_of(v: Verdict, medians: dict[str, float]) -> float | None:
    """The trace's duration over its task class's median: as cleanliness computed it when
    it did (second pass), else the same division."""
    if v.ratio is not None:
        return v.ratio
    if not v.task:
        return None
    m = medians.get(v.task)
    return v.seconds / m if m else None


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


_COUNTERS = (
    "classes",
    "reasons",
    "four_point_fails",
    "services",
    "calls",
    "chains",
    "cache_hits",
)


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
    # logical LLM calls, each counted once (not again by its failed attempts, its twin or
    # its gateway's span), by (requested provider, model, served provider, model, mismatch)
    calls: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    chains: Counter[tuple[str, ...]] = field(default_factory=Counter)
    cache_hits: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, evidence)
    tool_retries: dict[str, list[int]] = field(default_factory=dict)  # tool -> [traces, retries]
    schema_invalid: dict[str, list[Any]] = field(default_factory=dict)  # tool -> [n, error]
    tasks: dict[str, TaskTally] = field(default_factory=dict)
    no_root: int = 0
    no_root_examples: list[str] = field(default_factory=list)

    def add(self, v: Verdict, ratio: float | None, max_ratio: float) -> None:
        """A trace's verdict; `ratio` its duration over its task class's median (None: no
        median, or no timing check)."""
        self.traces += 1
        self.classes[v.cls] += 1
        self.reasons.update(v.reasons)
        # the founding story's four points
        fails = []
        if "fallback" in v.reasons or v.providers > 1 or v.models > 1:
            fails.append("provider_or_model")
        if "tool_retry" in v.reasons:
            fails.append("tool_retry")
        if "tool_schema_invalid" in v.reasons:
            fails.append("tool_schema_invalid")
        if ratio is None:
            fails.append("no_median")
        elif ratio > max_ratio:
            fails.append("duration")
        if fails:
            self.four_point_fails.update(fails)
        else:
            self.four_point += 1
        if v.task:
            tt = self.tasks.get(v.task)
            if tt is None:
                tt = self.tasks[v.task] = TaskTally()
            tt.traces += 1
            tt.sketch.add(v.seconds)
            tt.hist[hist_bin(v.seconds)] += 1
            if ratio is None:
                tt.no_median += 1
            elif ratio > max_ratio:
                tt.slow += 1

    def merge(self, o: Tally) -> None:
        self.traces += o.traces
        self.spans += o.spans
        if o.start and (not self.start or o.start < self.start):
            self.start = o.start
        self.end = max(self.end, o.end)
        for name in _COUNTERS:
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


# -- reading the classified batches -----------------------------------------------------------

# a consumer of whole classified traces (the enriched output; a dataset writer): the batch
# (what the processors wrote, pending: `to_bytes()` splices it in), its traces' views, and
# their verdicts
BatchSink = Callable[[Traces, list[TraceView], list[Verdict]], None]


class CallTap:
    """Between `fallback_chain` and `cleanliness`: adds what the enrichment processors found
    in the batch (its GenAI index, built and analysed by them, shared through the batch)
    to `tally`; hands the batch on untouched. `tally` None: nothing to add (second pass)."""

    mutates_data = False

    def __init__(self, keys: Any, next_consumer: Any) -> None:
        self._keys = keys
        self._next = next_consumer
        self.tally: Tally | None = None
        # given the batch's index (the dataset's examples are built from it after cleanliness,
        # which drops it from the batch)
        self.on_index: Callable[[Any], None] | None = None

    async def start(self, host: Any) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume_traces(self, traces: Traces) -> None:
        t = self.tally
        if self.on_index is None and t is None:
            await self._next.consume_traces(traces)
            return
        idx = index_for(traces, self._keys)
        if self.on_index is not None:
            self.on_index(idx)
        if t is not None:
            calls = t.calls
            cache_hits = t.cache_hits
            chains = t.chains
            for rec in idx.calls:
                if rec.logical and rec.fallback_fired:
                    chains[tuple(rec.chain or ())] += 1
                if rec.nested or rec.superseded:  # counted once, by the logical call
                    continue
                calls[
                    (
                        rec.req_provider,
                        rec.req_model_n,
                        rec.served_provider,
                        rec.served_model,
                        rec.mismatch,
                    )
                ] += 1
                if rec.cache_hit:
                    cache_hits[
                        (rec.cache_hit_type or "unknown", rec.cache_evidence or "unknown")
                    ] += 1
            seen: set[tuple[str, bytes]] = set()
            for rec in idx.tools:
                if rec.tool_retries > 0:
                    tool = rec.tool_name or rec.name
                    counts = t.tool_retries.get(tool)
                    if counts is None:
                        counts = t.tool_retries[tool] = [0, 0]
                    if (tool, rec.trace_id) not in seen:
                        seen.add((tool, rec.trace_id))
                        counts[0] += 1
                    counts[1] += rec.tool_retries
        await self._next.consume_traces(traces)


class RecordSink:
    """The chain's last consumer: a `Verdict` per trace to `emit`; with `tally`, the sums
    the timing check cannot change (the first pass); each batch to `batch_sinks`."""

    mutates_data = False

    def __init__(
        self,
        timing_of: Callable[[TraceView], tuple[str, float] | None],
        emit: Callable[[Verdict], None],
        *,
        tally: Tally | None = None,
        schema_errors: Callable[[TraceView], list[tuple[str, str]]] | None = None,
        batch_sinks: Iterable[BatchSink] = (),
    ) -> None:
        self._timing_of = timing_of
        self._emit = emit
        self.tally = tally
        self._schema_errors = schema_errors
        self._batch_sinks = list(batch_sinks)
        self._unseen = list(CONVENTIONS)
        self.conventions: set[str] = set()  # seen in the batches so far

    async def start(self, host: Any) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume_traces(self, traces: Traces) -> None:
        # the batch as the processors had it: what they wrote is still pending (a sink that
        # wants it splices it in), the views and the span scan are theirs, cached
        views = trace_views(traces, settle=False)
        raw = traces.base
        verdicts = [self._verdict(v) for v in views]
        for verdict in verdicts:
            self._emit(verdict)
        tally = self.tally
        if tally is not None:
            if self._unseen:  # the conventions this partition shows, looked for once each
                for c in [c for c in self._unseen if any(n in raw for n in CONVENTIONS[c])]:
                    self._unseen.remove(c)
                    self.conventions.add(c)
            for v, verdict in zip(views, verdicts, strict=True):
                self._sum(tally, v, verdict)
        for sink in self._batch_sinks:
            sink(traces, views, verdicts)

    def _verdict(self, v: TraceView) -> Verdict:
        facts = v.entry.facts
        timing = self._timing_of(v)
        return Verdict(
            v.trace_id,
            str(facts.get(A_CLASS, "")),
            list(facts.get(A_REASONS, ())),
            len(facts.get(A_PROVIDERS, ())),
            len(facts.get(A_MODELS, ())),
            timing[0] if timing else "",
            timing[1] if timing else 0.0,
            facts.get(A_RATIO),
        )

    def _sum(self, t: Tally, v: TraceView, verdict: Verdict) -> None:
        """What the timing check cannot change: spans, time range, services, traces without
        a root span, schema-invalid tool results (the LLM calls and tool runs: `CallTap`)."""
        t.spans += len(v.spans)
        root = v.root
        if root is not None:
            start, end = root[6], root[7]
        else:
            start = min((s[6] for s in v.spans), default=0)
            end = max((s[7] for s in v.spans), default=0)
            t.no_root += 1
            if len(t.no_root_examples) < 5:
                t.no_root_examples.append(v.trace_id.hex())
        if start and (not t.start or start < t.start):
            t.start = start
        if end > t.end:
            t.end = end
        seen_services: set[str] = set()
        for _, head in v.resources():
            name = resource_attributes(head).get("service.name")
            if isinstance(name, str) and name not in seen_services:
                seen_services.add(name)
                t.services[name] += 1
        if "tool_schema_invalid" in verdict.reasons and self._schema_errors is not None:
            for tool, err in self._schema_errors(v):
                got = t.schema_invalid.get(tool)
                if got is None:
                    t.schema_invalid[tool] = [1, err]
                else:
                    got[0] += 1
