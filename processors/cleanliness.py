"""`cleanliness` processor: classifies each whole trace as `clean`, `noisy`, `corrupted` or
`failed`, and says why.

It works on whole traces, as `groupbytrace` (or a `tail_sampling`) before it releases
them. Per trace it
writes on the root span (without a root span in the batch, on every span of the trace):

- `sieve.trace.class`: the worst class among its reasons' classes (failed > corrupted >
  noisy > clean); `failed` whenever the root span reports an error, or an agent/chain span
  ended in ERROR with no successful LLM call after it (a failed run under a root an
  instrumentation leaves OK); `clean` without reasons.
- `sieve.trace.reasons`: string array, in the order of `REASONS`.
- `sieve.trace.providers`, `sieve.trace.models`: string arrays, what served the trace's
  successful LLM calls (normalised, sorted).
- `sieve.trace.duration_ratio`: root duration / the running median of the trace's task
  class (only once that median has `timing.min_samples` clean traces behind it).
- `sieve.trace.task_class`: that task class (`timing.class_key` on the root span or its
  resource, then `gen_ai.workflow.name`, `gen_ai.agent.name`, then the root span's name);
  written when the trace has its root span.

With `tool_schemas`, on each tool span whose result fails its tool's schema:
`sieve.tool.schema_error` (the validator's message for the first error) and
`sieve.tool.schema_path` (the JSON Pointer of the failing value in the result; "" when the
result as a whole fails).

The enrichment facts (fallback, retries, cache hits, provider mismatch, unrecovered
failures) come from the batch's shared GenAI index (`processors.genai.index_for`): built
here when no enrichment processor ran on this batch, shared when one did. The same values
go into the trace's `facts` in the `groupbytrace` index, for `tail_sampling` and `routing`,
with (under `FACT_ROOT`) the root span's `wirescan.SpanInfo` row, for readers of its name,
times and status (the `live_view` exporter): its byte offsets are of an earlier encoding.

State: one quantile sketch (DDSketch, 1% relative accuracy) of root durations per task
class, fed only by clean traces; and the results of recent traces, so that late fragments
of a trace (spans `groupbytrace` passes on after the trace was released) get the same
attributes instead of a verdict on the fragment alone.
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict
from typing import Annotated, Any, NamedTuple

import jsonschema_rs
import msgspec
from ddsketch import LogCollapsingLowestDenseDDSketch
from msgspec import Meta

from pipeline import wirescan
from pipeline.component import ProcessorFactory, Settings, TracesConsumer
from pipeline.configtypes import Config, NonNegInt, PositiveInt
from pipeline.pdata import Traces
from pipeline.processorhelper import ProcessorHelper
from pipeline.wholetraces import TraceView, resource_attributes, trace_views
from pipeline.wirescan import Row, SpanInfo
from processors.genai import GenAIConfig, TraceFacts, drop_index, index_for, keys_for, no_gc
from processors.genai.tools import Failure, ToolChecker
from processors.genai.write import Encoder, attr_double, attr_str, attr_strs

__all__ = [
    "CLASSES",
    "DEFAULT_CLASSES",
    "FACT_ROOT",
    "REASONS",
    "CleanlinessConfig",
    "CleanlinessProcessor",
    "TimingConfig",
    "factory",
    "load_tool_schemas",
]

CLASSES = ("clean", "noisy", "corrupted", "failed")  # best to worst
REASONS = (
    "fallback",
    "llm_retry",
    "tool_retry",
    "cache_hit",
    "provider_mismatch",
    "slow",
    "multi_model",
    "tool_schema_invalid",
    "swallowed_error",
)
DEFAULT_CLASSES = {
    "fallback": "noisy",
    "llm_retry": "noisy",
    "tool_retry": "noisy",
    "cache_hit": "noisy",
    "provider_mismatch": "noisy",
    "slow": "noisy",
    "multi_model": "noisy",
    "tool_schema_invalid": "corrupted",
    "swallowed_error": "corrupted",
}

A_CLASS = "sieve.trace.class"
A_REASONS = "sieve.trace.reasons"
A_PROVIDERS = "sieve.trace.providers"
A_MODELS = "sieve.trace.models"
A_RATIO = "sieve.trace.duration_ratio"
A_TASK = "sieve.trace.task_class"
A_SCHEMA_ERROR = "sieve.tool.schema_error"
A_SCHEMA_PATH = "sieve.tool.schema_path"
FACT_ROOT = "sieve.trace.root_span"  # in a trace's facts: its root span's row (never written)
_OURS_B = b"sieve.trace."
_OURS_KEYS = frozenset((A_CLASS, A_REASONS, A_PROVIDERS, A_MODELS, A_RATIO, A_TASK))
_SCHEMA_B = b"sieve.tool.schema_"
_SCHEMA_KEYS = frozenset((A_SCHEMA_ERROR, A_SCHEMA_PATH))

# task class: the configured key, then these, then the root span's name
_CLASS_FALLBACK_KEYS = ("gen_ai.workflow.name", "gen_ai.agent.name")
# tool name and result, after the configured keys
_TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name", "traceloop.entity.name")
_TOOL_RESULT_KEYS = ("gen_ai.tool.call.result", "output.value", "traceloop.entity.output")
_ERROR = 2  # Status.STATUS_CODE_ERROR


# -- config -----------------------------------------------------------------------------------


class TimingConfig(Config):
    """`slow`: root duration above `max_ratio` x the running median of its task class."""

    max_ratio: Annotated[float, Meta(gt=0)] = 1.5
    # clean traces of a task class needed before its median is used
    min_samples: PositiveInt = 20
    # the task class: this root span attribute (then the root's resource), then
    # gen_ai.workflow.name, gen_ai.agent.name, then the root span's name
    class_key: str = "task.class"
    # task classes tracked (least recently seen forgotten beyond it)
    max_task_classes: PositiveInt = 1_000
    # of the median sketches (DDSketch)
    relative_accuracy: Annotated[float, Meta(gt=0, lt=1)] = 0.01


class CleanlinessConfig(GenAIConfig):
    timing: TimingConfig = msgspec.field(default_factory=TimingConfig)
    # more than one served model in a trace is `multi_model` (noisy)
    strict_single_model: bool = False
    # directory with one `<tool name>.json` JSON Schema per tool (unset: no schema checks)
    tool_schemas: str | None = None
    # attribute holding a tool's result, read before the built-in keys
    tool_result_key: str = ""
    # reason -> class, overriding DEFAULT_CLASSES
    reason_classes: dict[str, str] = msgspec.field(default_factory=dict)
    # traces whose result is remembered for their late fragments (0: off)
    late_cache_size: NonNegInt = 100_000

    def validate(self) -> list[str]:
        errs = super().validate()
        for reason, cls in self.reason_classes.items():
            if reason not in REASONS:
                errs.append(
                    f"reason_classes: unknown reason {reason!r} (valid: {', '.join(REASONS)})"
                )
            elif cls not in CLASSES:
                errs.append(
                    f"reason_classes::{reason}: unknown class {cls!r} (valid: {', '.join(CLASSES)})"
                )
        if self.tool_schemas is not None:
            _, problems = load_tool_schemas(self.tool_schemas)
            errs.extend(f"tool_schemas: {p}" for p in problems)
        return errs


_NO_TOOLS: list[Row] = []

# -- tool schemas -------------------------------------------------------------------------------

# (absolute path, file content) -> compiled validator: compiled once per schema, though the
# config is validated before the processor is made
_COMPILED: dict[tuple[str, bytes], Any] = {}


def load_tool_schemas(directory: str) -> tuple[dict[str, Any], list[str]]:
    """The compiled schema (a `jsonschema_rs` validator) of each `<tool>.json` in
    `directory`, and the problems found (each naming the file)."""
    problems: list[str] = []
    if not directory.strip():
        return {}, ["is empty (a directory of <tool name>.json JSON Schemas)"]
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        return {}, [f"{directory!r} {what} (want a directory of <tool name>.json JSON Schemas)"]
    out: dict[str, Any] = {}
    names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            problems.append(f"{path}: cannot read ({exc.strerror or exc})")
            continue
        key = (os.path.abspath(path), data)
        v = _COMPILED.get(key)
        if v is None:
            try:
                schema = msgspec.json.decode(data)
            except msgspec.DecodeError as exc:
                problems.append(f"{path}: not valid JSON ({exc})")
                continue
            if not isinstance(schema, dict | bool):
                problems.append(f"{path}: invalid JSON Schema (want an object or a boolean)")
                continue
            try:
                v = jsonschema_rs.validator_for(schema)
            except Exception as exc:  # ValidationError (against the meta-schema), refs
                problems.append(f"{path}: invalid JSON Schema ({_schema_problem(exc)})")
                continue
            if len(_COMPILED) > 10_000:
                _COMPILED.clear()
            _COMPILED[key] = v
        out[name[:-5]] = v
    if not names:
        problems.append(f"{directory!r} holds no <tool name>.json schema")
    return out, problems


def _schema_problem(exc: Exception) -> str:
    """What is wrong with a schema, and where in it (`at /required`)."""
    msg = getattr(exc, "message", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    where = getattr(exc, "instance_path", None)
    return f"{msg} at /{'/'.join(map(str, where))}" if where else str(msg)


# -- the processor ------------------------------------------------------------------------------


class _Timing:
    """Running median of root durations per task class (seconds), from clean traces; or,
    once `fixed` is set (offline, `tracesieve audit`), the medians given there."""

    __slots__ = ("cfg", "classes", "fixed")

    def __init__(self, cfg: TimingConfig) -> None:
        self.cfg = cfg
        # key -> [sketch, median, sample count when the median was read]
        self.classes: OrderedDict[str, list[Any]] = OrderedDict()
        self.fixed: dict[str, float] | None = None

    def ratio(self, key: str, seconds: float) -> float | None:
        if self.fixed is not None:
            median = self.fixed.get(key)
            return seconds / median if median else None
        got = self.classes.get(key)
        if got is None:
            return None
        self.classes.move_to_end(key)
        sketch, median, at = got
        n = sketch.count
        if n < self.cfg.min_samples:
            return None
        # read again once the samples grew by 1% (exact up to 100 samples): a median of
        # many samples barely moves, and reading it walks the sketch's bins
        if median is None or n - at >= max(1.0, at / 100):
            median = got[1] = sketch.get_quantile_value(0.5)
            got[2] = n
        return seconds / median if median and median > 0 else None

    def add(self, key: str, seconds: float) -> None:
        got = self.classes.get(key)
        if got is None:
            got = self.classes[key] = [
                LogCollapsingLowestDenseDDSketch(self.cfg.relative_accuracy, bin_limit=2048),
                None,
                0,
            ]
            if len(self.classes) > self.cfg.max_task_classes:
                self.classes.popitem(last=False)
        got[0].add(seconds)


class _Verdict(NamedTuple):
    """What a trace is, but for its duration ratio: one shared object per distinct value."""

    cls: str
    reasons: tuple[str, ...]
    providers: tuple[str, ...]
    models: tuple[str, ...]


# a trace's result: its verdict, duration ratio and task class (kept this small for late
# fragments: ~0.25 KB a remembered trace, the verdicts being shared)
_Result = tuple[_Verdict, float | None, str]


class CleanlinessProcessor(ProcessorHelper):
    """Stateful (timing medians, recent results); one `process` per batch."""

    def __init__(
        self, settings: Settings, cfg: CleanlinessConfig, next_consumer: TracesConsumer
    ) -> None:
        super().__init__(settings, next_consumer, self.process, mutates_data=True)
        self.cfg = cfg
        self._keys = keys_for(cfg)
        rank = {c: i for i, c in enumerate(CLASSES)}
        classes = {**DEFAULT_CLASSES, **cfg.reason_classes}
        self._rank = {r: rank[classes[r]] for r in REASONS}
        self._timing = _Timing(cfg.timing)
        self._class_keys = (cfg.timing.class_key, *_CLASS_FALLBACK_KEYS)
        self._class_key_set = frozenset(self._class_keys)
        self._schemas: dict[str, Any] = {}
        if cfg.tool_schemas is not None:
            self._schemas, problems = load_tool_schemas(cfg.tool_schemas)
            if problems:  # validated before; the directory changed since
                raise ValueError("tool_schemas: " + "; ".join(problems))
        self._tools = ToolChecker(
            self._schemas,
            (cfg.tool_result_key, *_TOOL_RESULT_KEYS) if cfg.tool_result_key else _TOOL_RESULT_KEYS,
            (*cfg.attributes.tool_name, *_TOOL_NAME_KEYS),
        )
        self._late: OrderedDict[bytes, _Result] = OrderedDict()
        self._verdicts: dict[_Verdict, _Verdict] = {}  # interned
        self._enc = Encoder()
        self._task_enc = Encoder()
        self._m_class = self.counters(
            "tracesieve_cleanliness_traces", "Traces classified, by class", "class", CLASSES
        )
        self._m_reason = self.counters(
            "tracesieve_cleanliness_reasons", "Traces classified, by reason", "reason", REASONS
        )
        late = self.counters(
            "tracesieve_cleanliness_late_fragments",
            "Late fragments given the result of their trace (cached) or classified alone",
            "cached",
            ("true", "false"),
        )
        self._m_late_l = (late["true"], late["false"])
        self._m_task_classes = self.gauge(
            "tracesieve_cleanliness_task_classes",
            "Task classes with a running duration median",
        )

    # -- offline timing (tracesieve audit) ------------------------------------------------
    def fix_medians(self, medians: dict[str, float]) -> None:
        """From now on, judge durations against these medians (task class -> seconds)
        instead of the running ones: a task class without one gets no duration ratio and
        no `slow`; `fix_medians({})` turns the timing check off. The sketches go on
        learning from clean traces (`timing_sketches`)."""
        self._timing.fixed = dict(medians)

    def timing_sketches(self) -> dict[str, Any]:
        """The DDSketch of clean traces' root durations (seconds) per task class, as far as
        they have been fed (the least recently seen beyond `timing.max_task_classes` are
        gone)."""
        return {key: got[0] for key, got in self._timing.classes.items()}

    def timing_of(self, v: TraceView) -> tuple[str, float] | None:
        """(task class, root duration in seconds) that the timing check of trace `v` rests
        on; None without a root span in the batch, for a late fragment, or for a duration
        that is not positive (no check)."""
        root = v.root
        if root is None or v.late:
            return None
        seconds = (root[7] - root[6]) / 1e9
        return (self._task_class(v, root), seconds) if seconds > 0 else None

    # -- per batch ------------------------------------------------------------------------
    def process(self, traces: Traces) -> Traces:
        with no_gc():
            return self._run(traces)

    def _run(self, traces: Traces) -> Traces:
        # views first (they regroup a batch that is not trace-aligned), then the index:
        # both read `base`, and what the enrichment processors wrote stays pending
        views = trace_views(traces, settle=False)
        if not views:
            return traces
        gidx = index_for(traces, self._keys)
        facts = gidx.facts()
        tools = self._tools.by_trace(gidx.tool_spans) if self._schemas else {}
        classes: Counter[str] = Counter()
        reasons_n: Counter[str] = Counter()
        late_n = [0, 0]
        for v in views:
            res = self._late.get(v.trace_id) if v.late else None
            if res is not None:
                late_n[0] += 1
            else:
                if v.late:
                    late_n[1] += 1
                failed: list[Failure] = []
                if self._schemas:
                    failed = self._tools.failures(tools.get(v.trace_id, _NO_TOOLS), v.raw)
                    if failed or v.has(_SCHEMA_B):
                        self._write_schema_errors(traces, v, failed)
                res = self._classify(v, facts.get(v.trace_id), bool(failed))
                classes[res[0].cls] += 1
                reasons_n.update(res[0].reasons)
                if self.cfg.late_cache_size and not v.late:
                    self._late[v.trace_id] = res
                    if len(self._late) > self.cfg.late_cache_size:
                        self._late.popitem(last=False)
            facts_of = v.entry.facts
            facts_of.update(_facts(res))
            if v.root is not None:
                facts_of[FACT_ROOT] = v.root
            verdict, ratio, task = res
            data = self._encoded(verdict)
            if ratio is not None:
                data += attr_double(A_RATIO, ratio)
            if task:
                data += self._encoded_task(task)
            v.write(traces, data, _OURS_KEYS, _OURS_B)
        drop_index(traces)
        for c, n in classes.items():
            self._m_class[c].inc(n)
        for r, n in reasons_n.items():
            self._m_reason[r].inc(n)
        if late_n[0]:
            self._m_late_l[0].inc(late_n[0])
        if late_n[1]:
            self._m_late_l[1].inc(late_n[1])
        self._m_task_classes.set(len(self._timing.classes))
        return traces

    def _encoded(self, verdict: _Verdict) -> bytes:
        data = self._enc.get(verdict)
        if data is None:
            data = self._enc.put(
                verdict,
                attr_str(A_CLASS, verdict.cls)
                + attr_strs(A_REASONS, verdict.reasons)
                + attr_strs(A_PROVIDERS, verdict.providers)
                + attr_strs(A_MODELS, verdict.models),
            )
        return data

    def _encoded_task(self, task: str) -> bytes:
        data = self._task_enc.get(task)
        if data is None:
            data = self._task_enc.put(task, attr_str(A_TASK, task))
        return data

    def _write_schema_errors(self, traces: Traces, v: TraceView, failed: list[Failure]) -> None:
        """The first schema error of each failing tool span on it; what an earlier
        tracesieve wrote there (on any span of the trace) replaced."""
        base = traces.base
        stale = v.has(_SCHEMA_B)
        done: set[int] = set()
        for b0, path, message in failed:
            data = attr_str(A_SCHEMA_ERROR, message) + attr_str(A_SCHEMA_PATH, path)
            traces.patch(base, b0, data, _SCHEMA_KEYS if stale else None)
            done.add(b0)
        if stale:
            for s in v.spans:
                if s[9] not in done and v.raw.find(_SCHEMA_B, s[9], s[10]) >= 0:
                    traces.patch(base, s[9], b"", _SCHEMA_KEYS)

    # -- per trace ------------------------------------------------------------------------
    def _classify(self, v: TraceView, f: TraceFacts | None, schema_invalid: bool) -> _Result:
        cfg = self.cfg
        reasons: set[str] = set(f.reasons()) if f is not None else set()
        root = v.root
        root_error = root is not None and root[8] == _ERROR
        ratio: float | None = None
        task = ""
        seconds = 0.0
        if root is not None and not v.late:
            task = self._task_class(v, root)
            seconds = (root[7] - root[6]) / 1e9
            if seconds > 0:
                ratio = self._timing.ratio(task, seconds)
                if ratio is not None and ratio > cfg.timing.max_ratio:
                    reasons.add("slow")
        if f is not None:
            if cfg.strict_single_model and len(f.models) > 1:
                reasons.add("multi_model")
            # a run that failed explains its failed calls: not swallowed
            root_error = root_error or f.failed_run
            if f.unrecovered and not root_error:
                reasons.add("swallowed_error")
        if schema_invalid:
            reasons.add("tool_schema_invalid")
        ordered = [r for r in REASONS if r in reasons]
        rank = max((self._rank[r] for r in ordered), default=0)
        cls = "failed" if root_error else CLASSES[rank]
        if cls == "clean" and seconds > 0 and task:
            self._timing.add(task, seconds)
        verdict = _Verdict(
            cls,
            tuple(ordered),
            tuple(sorted(f.providers)) if f is not None else (),
            tuple(sorted(f.models)) if f is not None else (),
        )
        shared = self._verdicts.get(verdict)
        if shared is None:
            if len(self._verdicts) > 10_000:
                self._verdicts.clear()
            shared = self._verdicts[verdict] = verdict
        return shared, ratio, task

    def _task_class(self, v: TraceView, root: SpanInfo) -> str:
        """The first of the class keys present on the root span (the configured key also on
        its resource), else the root span's name."""
        keys = self._class_keys
        found: dict[str, str] = {}
        for k, value in wirescan.attributes(v.raw, root[9], root[10], self._class_key_set, None):
            text = _text(value)
            if text:
                found[k] = text
        for k in keys:
            if k in found:
                return found[k]
            if k == keys[0]:
                text = _text(resource_attributes(v.resource_of(root[9])).get(k))
                if text:
                    return text
        return root[1]


def _facts(res: _Result) -> dict[str, Any]:
    """A result as the values written (for the trace's entry in the groupbytrace index)."""
    verdict, ratio, task = res
    out: dict[str, Any] = {
        A_CLASS: verdict.cls,
        A_REASONS: list(verdict.reasons),
        A_PROVIDERS: list(verdict.providers),
        A_MODELS: list(verdict.models),
    }
    if ratio is not None:
        out[A_RATIO] = ratio
    if task:
        out[A_TASK] = task
    return out


def _text(v: Any) -> str:
    if v is None or isinstance(v, dict | list | bytes):
        return ""
    return str(v)


factory = ProcessorFactory(
    type="cleanliness",
    config_type=CleanlinessConfig,
    create=CleanlinessProcessor,
    stability="alpha",
    description="classifies whole traces clean/noisy/corrupted/failed and says why (sieve.trace.*)",
    requires_before=("groupbytrace", "tail_sampling"),
    requires_reason=(
        "cleanliness classifies whole traces, and groupbytrace is what holds spans "
        "until their trace is complete (a tail_sampling placed after cleanliness holds "
        "traces only for its own decision; with groupbytrace before cleanliness, it "
        "decides the whole traces released without holding them again)"
    ),
)
