"""`tail_sampling` processor: keeps or drops whole traces by policy, with the OTel
Collector's policy model and semantics.

Every policy is evaluated on a trace (in order; a `drop` stops the evaluation, and with
`sample_on_first_match` so does the first sample). The decision: any `drop` -> dropped;
else any (deprecated) inverted match that did not sample -> not sampled; else any sample
-> sampled, by the first policy that sampled; else not sampled. The deciding policy's
name is written on the root span as `sieve.sampling.policy` (without a root span in the
batch, on every span of the trace).

Unlike the OTel Collector's, this processor holds nothing: it decides each batch of whole
traces that `groupbytrace` (required before it in the pipeline) releases. Decisions are
cached by trace id (`decision_cache`) and applied to later spans of the same trace, such
as the late fragments `groupbytrace` passes on.

Cost: the batch is read from its encoding (`pipeline.wholetraces`), never decoded: status,
times and ids come from one scan of the spans; attribute policies read only the keys they
name, and only on spans whose bytes hold the key. Kept traces are cut out by byte range
and the policy attribute is patched in (`Traces.patch`).
"""

from __future__ import annotations

import re
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from enum import IntEnum
from fractions import Fraction
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from pipeline.component import ProcessorFactory, Settings, TracesConsumer
from pipeline.configtypes import Config, NonNegInt, Percentage, PositiveInt
from pipeline.pdata import Traces
from pipeline.processorhelper import ProcessorHelper
from pipeline.wholetraces import TraceView, select, trace_attribute, trace_values, trace_views
from processors.genai.write import attr_str

POLICY_ATTRIBUTE = "sieve.sampling.policy"
CLASS_ATTRIBUTE = "sieve.trace.class"
CLASSES = ("clean", "noisy", "corrupted", "failed")
_POLICY_KEY = POLICY_ATTRIBUTE.encode()
_POLICY_DROP = frozenset((POLICY_ATTRIBUTE,))

# -- config -------------------------------------------------------------------------------

LeafType = Literal[
    "always_sample",
    "latency",
    "numeric_attribute",
    "probabilistic",
    "status_code",
    "string_attribute",
    "boolean_attribute",
    "rate_limiting",
    "cleanliness",
]
LEAF_TYPES: tuple[str, ...] = LeafType.__args__  # type: ignore[attr-defined]
COMPOSITE_TYPES = ("and", "drop")


class LatencyConfig(Config):
    threshold_ms: NonNegInt = 0
    upper_threshold_ms: NonNegInt = 0

    def validate(self) -> list[str]:
        if self.upper_threshold_ms and self.upper_threshold_ms < self.threshold_ms:
            return ["upper_threshold_ms: must be 0 (none) or at least threshold_ms"]
        return []


class NumericAttributeConfig(Config):
    key: str
    min_value: int | float | None = None
    max_value: int | float | None = None
    invert_match: bool = False

    def validate(self) -> list[str]:
        if self.min_value is None and self.max_value is None:
            return ["min_value: set min_value, max_value or both"]
        if (
            self.min_value is not None
            and self.max_value is not None
            and self.min_value > self.max_value
        ):
            return ["max_value: must not be smaller than min_value"]
        return []


class ProbabilisticConfig(Config):
    hash_salt: str = ""
    sampling_percentage: Percentage = 0


class StatusCodeConfig(Config):
    status_codes: list[Literal["OK", "ERROR", "UNSET"]]

    def validate(self) -> list[str]:
        return [] if self.status_codes else ["status_codes: list at least one of OK, ERROR, UNSET"]


class StringAttributeConfig(Config):
    key: str
    values: list[str]
    enabled_regex_matching: bool = False
    cache_max_size: NonNegInt = 128  # regex results remembered, per value
    invert_match: bool = False

    def validate(self) -> list[str]:
        if not self.values:
            return ["values: list at least one value"]
        if self.enabled_regex_matching:
            for i, v in enumerate(self.values):
                try:
                    re.compile(v)
                except re.error as exc:
                    return [f"values::{i}: invalid regular expression {v!r}: {exc}"]
        return []


class BooleanAttributeConfig(Config):
    key: str
    value: bool
    invert_match: bool = False


class RateLimitingConfig(Config):
    spans_per_second: PositiveInt
    burst_capacity: PositiveInt | None = None  # default: 2 x spans_per_second


ClassRule = Literal["keep"] | Annotated[float, Meta(ge=0, le=100)]


class CleanlinessPolicyConfig(Config):
    """Per class of `sieve.trace.class` (on the root span): `keep`, or a percentage of
    traces sampled by trace id hash (salted with `hash_salt`)."""

    clean: ClassRule = "keep"
    noisy: ClassRule = 0
    corrupted: ClassRule = 0
    failed: ClassRule = 0
    unclassified: ClassRule = 0
    hash_salt: str = ""


_BLOCKS = {
    "latency": (LatencyConfig, False),
    "numeric_attribute": (NumericAttributeConfig, True),
    "probabilistic": (ProbabilisticConfig, False),
    "status_code": (StatusCodeConfig, True),
    "string_attribute": (StringAttributeConfig, True),
    "boolean_attribute": (BooleanAttributeConfig, True),
    "rate_limiting": (RateLimitingConfig, True),
    "cleanliness": (CleanlinessPolicyConfig, False),
}


class SubPolicyConfig(Config, omit_defaults=True):
    """A policy: `name`, `type`, and the block of that type's options (only that block is
    shown by print-config)."""

    name: str
    type: str
    latency: LatencyConfig | None = None
    numeric_attribute: NumericAttributeConfig | None = None
    probabilistic: ProbabilisticConfig | None = None
    status_code: StatusCodeConfig | None = None
    string_attribute: StringAttributeConfig | None = None
    boolean_attribute: BooleanAttributeConfig | None = None
    rate_limiting: RateLimitingConfig | None = None
    cleanliness: CleanlinessPolicyConfig | None = None

    def allowed_types(self) -> tuple[str, ...]:
        return LEAF_TYPES

    def validate(self) -> list[str]:
        errs = []
        if not self.name.strip():
            errs.append("name: must not be empty")
        if self.type not in self.allowed_types():
            valid = ", ".join(self.allowed_types())
            errs.append(f"type: unknown policy type {self.type!r} (valid: {valid})")
            return errs
        for block, (_, required) in _BLOCKS.items():
            given = getattr(self, block) is not None
            if block == self.type and required and not given:
                errs.append(f"{block}: required for a policy of type {block}")
            elif block != self.type and given:
                errs.append(f"{block}: given, but the policy's type is {self.type}")
        return errs


class AndConfig(Config):
    and_sub_policy: list[SubPolicyConfig]


class DropConfig(Config):
    drop_sub_policy: list[SubPolicyConfig]


class PolicyConfig(SubPolicyConfig):
    and_: AndConfig | None = msgspec.field(default=None, name="and")
    drop: DropConfig | None = None

    def allowed_types(self) -> tuple[str, ...]:
        return (*LEAF_TYPES, *COMPOSITE_TYPES)

    def validate(self) -> list[str]:
        errs = super().validate()
        subs = {"and": self.and_, "drop": self.drop}
        for kind, block in subs.items():
            if kind == self.type:
                if block is None:
                    errs.append(f"{kind}: required for a policy of type {kind}")
                else:
                    items = (
                        block.and_sub_policy
                        if isinstance(block, AndConfig)
                        else block.drop_sub_policy
                    )
                    if not items:
                        errs.append(f"{kind}: list at least one sub-policy")
            elif block is not None:
                errs.append(f"{kind}: given, but the policy's type is {self.type}")
        return errs


class DecisionCacheConfig(Config):
    sampled_cache_size: NonNegInt = 100_000
    non_sampled_cache_size: NonNegInt = 100_000


_MOVED = (
    "decision_wait",
    "decision_wait_after_root_received",
    "num_traces",
    "expected_new_traces_per_sec",
    "drop_pending_traces_on_shutdown",
)


class TailSamplingConfig(Config, omit_defaults=True):
    """(print-config leaves out options at their defaults, and the unset OTel options.)"""

    policies: list[PolicyConfig] = []
    decision_cache: DecisionCacheConfig = msgspec.field(default_factory=DecisionCacheConfig)
    sample_on_first_match: bool = False
    # OTel tail_sampling options that belong to groupbytrace here: named, to explain
    decision_wait: Any = None
    decision_wait_after_root_received: Any = None
    num_traces: Any = None
    expected_new_traces_per_sec: Any = None
    drop_pending_traces_on_shutdown: Any = None

    def validate(self) -> list[str]:
        errs = []
        for opt in _MOVED:
            if getattr(self, opt) is not None:
                errs.append(
                    f"{opt}: not an option here: tail_sampling decides whole traces released by "
                    "groupbytrace and holds nothing; set wait_duration, "
                    "wait_duration_after_root and num_traces on groupbytrace"
                )
        if not self.policies:
            errs.append("policies: list at least one policy")
        names = [p.name for p in self.policies]
        for n in sorted({n for n in names if names.count(n) > 1}):
            errs.append(f"policies: duplicate policy name {n!r}")
        return errs


# -- decisions and policies -------------------------------------------------------------------


class Decision(IntEnum):
    NOT_SAMPLED = 0
    SAMPLED = 1
    INVERT_SAMPLED = 2  # deprecated invert_match: no match anywhere
    INVERT_NOT_SAMPLED = 3  # deprecated invert_match: a match -> vetoes sampling
    DROPPED = 4


_SAMPLED = (Decision.SAMPLED, Decision.INVERT_SAMPLED)

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_U64 = (1 << 64) - 1
DEFAULT_HASH_SALT = "default-hash-seed"


def fnv1a_64(data: bytes, h: int = _FNV_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _U64
    return h


def threshold(percentage: float) -> int:
    """The OTel Collector's `calculateThreshold(percentage / 100)`: MaxUint64 x ratio in
    a 64-bit-mantissa big.Float (round half to even), truncated to a uint64."""
    ratio = percentage / 100
    exact = Fraction(_U64) * Fraction(ratio)
    if exact <= 0:
        return 0
    k = 64 - (exact.numerator.bit_length() - exact.denominator.bit_length())
    while exact * Fraction(2) ** k >= 1 << 64:
        k -= 1
    while exact * Fraction(2) ** k < 1 << 63:
        k += 1
    rounded = Fraction(round(exact * Fraction(2) ** k)) / Fraction(2) ** k
    return min(int(rounded), _U64)


class TraceHash:
    """`hash(salt + trace_id) <= threshold`, the OTel Collector's probabilistic test."""

    def __init__(self, salt: str) -> None:
        self._start = fnv1a_64((salt or DEFAULT_HASH_SALT).encode())

    def sampled(self, trace_id: bytes, limit: int) -> bool:
        return fnv1a_64(trace_id, self._start) <= limit


class _Ctx:
    """One trace being decided: derived facts computed once, on first use."""

    __slots__ = ("_duration", "_values", "keys", "view")

    def __init__(self, view: TraceView, keys: frozenset[str]) -> None:
        self.view = view
        self.keys = keys
        self._values: dict[str, list[Any]] | None = None
        self._duration: int | None = None

    def values(self, key: str) -> list[Any]:
        """Every value of attribute `key` on the trace's resources and spans (plain)."""
        if self._values is None:
            self._values = trace_values(self.view, self.keys)
        return self._values.get(key, [])

    def duration_ns(self) -> int:
        if self._duration is None:
            lo, hi = 0, 0
            for s in self.view.spans:
                start, end = s[6], s[7]
                if lo == 0 or start < lo:
                    lo = start
                if end > hi:
                    hi = end
            self._duration = max(hi - lo, 0)
        return self._duration


class Policy:
    name: str
    keys: frozenset[str] = frozenset()

    def evaluate(self, ctx: _Ctx) -> Decision:
        raise NotImplementedError


class AlwaysSample(Policy):
    def __init__(self, name: str) -> None:
        self.name = name

    def evaluate(self, ctx: _Ctx) -> Decision:
        return Decision.SAMPLED


class Latency(Policy):
    def __init__(self, name: str, cfg: LatencyConfig) -> None:
        self.name = name
        self.lo = cfg.threshold_ms
        self.hi = cfg.upper_threshold_ms

    def evaluate(self, ctx: _Ctx) -> Decision:
        ms = ctx.duration_ns() // 1_000_000
        ok = ms >= self.lo if self.hi == 0 else self.lo < ms <= self.hi
        return Decision.SAMPLED if ok else Decision.NOT_SAMPLED


class Probabilistic(Policy):
    def __init__(self, name: str, cfg: ProbabilisticConfig) -> None:
        self.name = name
        self.hash = TraceHash(cfg.hash_salt)
        self.limit = threshold(cfg.sampling_percentage)

    def evaluate(self, ctx: _Ctx) -> Decision:
        if self.hash.sampled(ctx.view.trace_id, self.limit):
            return Decision.SAMPLED
        return Decision.NOT_SAMPLED


_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


class StatusCode(Policy):
    def __init__(self, name: str, cfg: StatusCodeConfig) -> None:
        self.name = name
        self.codes = frozenset(_STATUS[c] for c in cfg.status_codes)

    def evaluate(self, ctx: _Ctx) -> Decision:
        codes = self.codes
        for s in ctx.view.spans:
            if s[8] in codes:
                return Decision.SAMPLED
        return Decision.NOT_SAMPLED


def _matched(found: bool, invert: bool) -> Decision:
    if invert:
        return Decision.INVERT_NOT_SAMPLED if found else Decision.INVERT_SAMPLED
    return Decision.SAMPLED if found else Decision.NOT_SAMPLED


class StringAttribute(Policy):
    def __init__(self, name: str, cfg: StringAttributeConfig) -> None:
        self.name = name
        self.key = cfg.key
        self.keys = frozenset((cfg.key,))
        self.invert = cfg.invert_match
        self.match: Callable[[str], bool]
        if cfg.enabled_regex_matching:
            patterns = [re.compile(v) for v in cfg.values]
            memo: dict[str, bool] = {}
            size = cfg.cache_max_size

            def match(s: str) -> bool:
                hit = memo.get(s)
                if hit is None:
                    hit = any(p.search(s) for p in patterns)
                    if size:
                        if len(memo) >= size:
                            memo.clear()
                        memo[s] = hit
                return hit

            self.match = match
        else:
            values = frozenset(v for v in cfg.values if v)
            self.match = values.__contains__

    def evaluate(self, ctx: _Ctx) -> Decision:
        found = any(type(v) is str and v and self.match(v) for v in ctx.values(self.key))
        return _matched(found, self.invert)


class NumericAttribute(Policy):
    def __init__(self, name: str, cfg: NumericAttributeConfig) -> None:
        self.name = name
        self.key = cfg.key
        self.keys = frozenset((cfg.key,))
        self.lo = cfg.min_value
        self.hi = cfg.max_value
        self.invert = cfg.invert_match

    def _in_range(self, x: Any) -> bool:
        if type(x) is not int and type(x) is not float:
            return False  # bool is not a number here: OTLP's bool_value is its own kind
        return (self.lo is None or x >= self.lo) and (self.hi is None or x <= self.hi)

    def evaluate(self, ctx: _Ctx) -> Decision:
        return _matched(any(self._in_range(v) for v in ctx.values(self.key)), self.invert)


class BooleanAttribute(Policy):
    def __init__(self, name: str, cfg: BooleanAttributeConfig) -> None:
        self.name = name
        self.key = cfg.key
        self.keys = frozenset((cfg.key,))
        self.value = cfg.value
        self.invert = cfg.invert_match

    def evaluate(self, ctx: _Ctx) -> Decision:
        found = any(type(v) is bool and v == self.value for v in ctx.values(self.key))
        return _matched(found, self.invert)


class RateLimiting(Policy):
    """Token bucket of spans: refills at `spans_per_second` up to `burst_capacity`
    (default twice that), starting full; a trace is sampled if its spans fit."""

    def __init__(
        self, name: str, cfg: RateLimitingConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.rate = float(cfg.spans_per_second)
        self.burst = float(cfg.burst_capacity or 2 * cfg.spans_per_second)
        self.tokens = self.burst
        self.clock = clock
        self.last = clock()

    def evaluate(self, ctx: _Ctx) -> Decision:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        n = ctx.view.span_count
        if n <= self.tokens:
            self.tokens -= n
            return Decision.SAMPLED
        return Decision.NOT_SAMPLED


class Cleanliness(Policy):
    def __init__(self, name: str, cfg: CleanlinessPolicyConfig) -> None:
        self.name = name
        self.hash = TraceHash(cfg.hash_salt)
        self.rules: dict[str | None, int] = {c: _limit(getattr(cfg, c)) for c in CLASSES}
        self.unclassified = _limit(cfg.unclassified)

    def evaluate(self, ctx: _Ctx) -> Decision:
        cls = trace_attribute(ctx.view, CLASS_ATTRIBUTE)
        limit = (
            self.rules.get(cls, self.unclassified) if isinstance(cls, str) else self.unclassified
        )
        if limit < 0:
            return Decision.NOT_SAMPLED
        if limit >= _U64 or self.hash.sampled(ctx.view.trace_id, limit):
            return Decision.SAMPLED
        return Decision.NOT_SAMPLED


def _limit(rule: str | float) -> int:
    """`keep` -> everything; 0 -> nothing (-1: not even hash 0); else the hash threshold."""
    if rule == "keep":
        return _U64
    assert isinstance(rule, int | float)
    return -1 if rule <= 0 else threshold(float(rule))


class And(Policy):
    def __init__(self, name: str, subs: list[Policy]) -> None:
        self.name = name
        self.subs = subs
        self.keys = frozenset().union(*(s.keys for s in subs))

    def evaluate(self, ctx: _Ctx) -> Decision:
        for sub in self.subs:
            if sub.evaluate(ctx) in (Decision.NOT_SAMPLED, Decision.INVERT_NOT_SAMPLED):
                return Decision.NOT_SAMPLED
        return Decision.SAMPLED


class Drop(And):
    def evaluate(self, ctx: _Ctx) -> Decision:
        if super().evaluate(ctx) == Decision.SAMPLED:
            return Decision.DROPPED
        return Decision.NOT_SAMPLED


def build_policy(cfg: SubPolicyConfig) -> Policy:
    t = cfg.type
    if t == "always_sample":
        return AlwaysSample(cfg.name)
    if t == "latency":
        return Latency(cfg.name, cfg.latency or LatencyConfig())
    if t == "probabilistic":
        return Probabilistic(cfg.name, cfg.probabilistic or ProbabilisticConfig())
    if t == "status_code":
        assert cfg.status_code is not None
        return StatusCode(cfg.name, cfg.status_code)
    if t == "string_attribute":
        assert cfg.string_attribute is not None
        return StringAttribute(cfg.name, cfg.string_attribute)
    if t == "numeric_attribute":
        assert cfg.numeric_attribute is not None
        return NumericAttribute(cfg.name, cfg.numeric_attribute)
    if t == "boolean_attribute":
        assert cfg.boolean_attribute is not None
        return BooleanAttribute(cfg.name, cfg.boolean_attribute)
    if t == "rate_limiting":
        assert cfg.rate_limiting is not None
        return RateLimiting(cfg.name, cfg.rate_limiting)
    if t == "cleanliness":
        return Cleanliness(cfg.name, cfg.cleanliness or CleanlinessPolicyConfig())
    if isinstance(cfg, PolicyConfig) and t == "and" and cfg.and_ is not None:
        return And(cfg.name, [build_policy(s) for s in cfg.and_.and_sub_policy])
    if isinstance(cfg, PolicyConfig) and t == "drop" and cfg.drop is not None:
        return Drop(cfg.name, [build_policy(s) for s in cfg.drop.drop_sub_policy])
    raise ValueError(f"policy {cfg.name!r}: unknown type {t!r}")


def decide(
    policies: list[Policy], ctx: _Ctx, first_match: bool, seen: Counter[tuple[str, bool]]
) -> tuple[Decision, str]:
    """The final decision on a trace and the deciding policy's name ('' if none)."""
    first: dict[Decision, str] = {}
    for p in policies:
        d = p.evaluate(ctx)
        seen[(p.name, d in _SAMPLED)] += 1
        first.setdefault(d, p.name)
        if d == Decision.DROPPED or (first_match and d == Decision.SAMPLED):
            break
    if Decision.DROPPED in first:
        return Decision.DROPPED, first[Decision.DROPPED]
    if Decision.INVERT_NOT_SAMPLED in first:
        return Decision.NOT_SAMPLED, first[Decision.INVERT_NOT_SAMPLED]
    if Decision.SAMPLED in first:
        return Decision.SAMPLED, first[Decision.SAMPLED]
    if Decision.INVERT_SAMPLED in first and Decision.NOT_SAMPLED not in first:
        return Decision.SAMPLED, first[Decision.INVERT_SAMPLED]
    return Decision.NOT_SAMPLED, ""


class _FifoCache:
    """trace id -> policy name, forgetting the oldest entry beyond `size`."""

    __slots__ = ("_d", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[bytes, str] = OrderedDict()

    def get(self, tid: bytes) -> str | None:
        return self._d.get(tid)

    def put(self, tid: bytes, policy: str) -> None:
        if self.size == 0:
            return
        self._d[tid] = policy
        if len(self._d) > self.size:
            self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


_LABEL = {
    Decision.SAMPLED: "sampled",
    Decision.NOT_SAMPLED: "not_sampled",
    Decision.DROPPED: "dropped",
}


class TailSamplingProcessor(ProcessorHelper):
    """Decision caches between batches; one `process` per batch."""

    def __init__(
        self, settings: Settings, cfg: TailSamplingConfig, next_consumer: TracesConsumer
    ) -> None:
        # writes sieve.sampling.policy, removes traces
        super().__init__(settings, next_consumer, self.process, mutates_data=True)
        self.cfg = cfg
        self.policies = [build_policy(p) for p in cfg.policies]
        self._keys = frozenset().union(*(p.keys for p in self.policies))
        self._first_match = cfg.sample_on_first_match
        self._sampled = _FifoCache(cfg.decision_cache.sampled_cache_size)
        self._not_sampled = _FifoCache(cfg.decision_cache.non_sampled_cache_size)
        self._policy_attr: dict[str, bytes] = {}  # policy name -> encoded attribute
        self._m_policy = self.counter_family(
            "tracesieve_tail_sampling_count_traces_sampled",
            "Traces each policy evaluated, by whether it sampled them",
            "policy",
            "sampled",
        )
        self._m_decisions = self.counter_family(
            "tracesieve_tail_sampling_decisions",
            "Final decisions on traces, by deciding policy ('' when none sampled)",
            "policy",
            "decision",
        )
        self._m_cached = self.counter_family(
            "tracesieve_tail_sampling_cached_decisions",
            "Traces (or late fragments) decided from the decision cache",
            "decision",
        )
        self._m_late = self.counter_family(
            "tracesieve_tail_sampling_late_spans",
            "Spans of late fragments from groupbytrace, by the decision applied",
            "decision",
        )
        cache = self.gauges(
            "tracesieve_tail_sampling_decision_cache_size",
            "Trace ids in the decision cache",
            "decision",
            ("sampled", "not_sampled"),
        )
        self._m_cache_size = (cache["sampled"], cache["not_sampled"])

    def _cached(self, tid: bytes) -> tuple[bool, str] | None:
        p = self._sampled.get(tid)
        if p is not None:
            return True, p
        if self._not_sampled.get(tid) is not None:
            return False, ""
        return None

    def process(self, traces: Traces) -> Traces | None:
        # attribute policies read what earlier processors wrote: their patches are
        # spliced in first; the other policies read spans' ids, times and status only
        views = trace_views(traces, settle=bool(self._keys))
        keep: list[bool] = []
        seen: Counter[tuple[str, bool]] = Counter()
        decided: Counter[tuple[str, str]] = Counter()
        cached_n: Counter[str] = Counter()
        late_n: Counter[str] = Counter()
        for v in views:
            tid = v.trace_id
            hit = self._cached(tid)
            if hit is not None:
                sampled, policy = hit
                cached_n["sampled" if sampled else "not_sampled"] += 1
            else:
                decision, policy = decide(
                    self.policies, _Ctx(v, self._keys), self._first_match, seen
                )
                sampled = decision == Decision.SAMPLED
                decided[(policy, _LABEL[decision])] += 1
                if sampled:
                    self._sampled.put(tid, policy)
                else:
                    self._not_sampled.put(tid, policy or "-")
            if v.late:
                late_n["sampled" if sampled else "not_sampled"] += v.span_count
            keep.append(sampled)
            if sampled:
                v.write(traces, self._encoded(policy), _POLICY_DROP, _POLICY_KEY)
        out = select(traces, views, keep)
        self._count(seen, decided, cached_n, late_n)
        return out

    def _encoded(self, policy: str) -> bytes:
        data = self._policy_attr.get(policy)
        if data is None:
            data = self._policy_attr[policy] = attr_str(POLICY_ATTRIBUTE, policy)
        return data

    def _count(
        self,
        seen: Counter[tuple[str, bool]],
        decided: Counter[tuple[str, str]],
        cached_n: Counter[str],
        late_n: Counter[str],
    ) -> None:
        labels = self.labels
        for (policy, sampled), c in seen.items():
            self._m_policy.labels(*labels, policy, "true" if sampled else "false").inc(c)
        for (policy, decision), c in decided.items():
            self._m_decisions.labels(*labels, policy, decision).inc(c)
        for decision, c in cached_n.items():
            self._m_cached.labels(*labels, decision).inc(c)
        for decision, c in late_n.items():
            self._m_late.labels(*labels, decision).inc(c)
        self._m_cache_size[0].set(len(self._sampled))
        self._m_cache_size[1].set(len(self._not_sampled))


factory = ProcessorFactory(
    type="tail_sampling",
    config_type=TailSamplingConfig,
    create=TailSamplingProcessor,
    stability="beta",
    description="keeps or drops whole traces by policy (the OTel Collector's tail_sampling)",
    requires_before=("groupbytrace",),
    requires_reason=(
        "tail_sampling decides on whole traces, and groupbytrace is what holds spans "
        "until their trace is complete"
    ),
)
