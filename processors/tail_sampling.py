"""`tail_sampling` processor: keeps or drops whole traces by policy, with the OTel
Collector's configuration, policy model and semantics.

Holding. As the Collector's, it holds each trace itself: from its first span for
`decision_wait` (or, once its root span is in, `decision_wait_after_root_received` after
the root arrived when that is earlier), at most `num_traces` traces (a new trace beyond
them has the oldest decided early: counted), then decides on what it holds. The holding
is `groupbytrace`'s machinery (`processors.groupbytrace.TraceHolder`), not a copy. Traces
that arrive already whole, released by a `groupbytrace` earlier in the pipeline (their
`Traces.trace_index` entries say why groupbytrace released them), are decided at once and
not held again; a batch of both kinds is split.

Deciding. Every policy is evaluated on a trace, `drop` policies first (a drop stops the
evaluation, and with `sample_on_first_match` so does the first sample). The decision: any
`drop` -> dropped; else any (deprecated) inverted match that did not sample -> not
sampled; else any sample -> sampled, by the first policy that sampled; else not sampled.
A policy that fails to evaluate (an `ottl_condition` with `error_mode: propagate`) is
counted and left out. The deciding policy's name is written on the root span as
`sieve.sampling.policy` (without a root span in the batch, on every span of the trace).

Late spans. Decisions are cached by trace id (`decision_cache`): later spans of a decided
trace go on (or are dropped) at once by the cached decision, as late fragments. Without a
cached decision they wait as a new trace, for a decision of their own.

Cost: a batch is read from its encoding (`pipeline.wholetraces`), never decoded: status,
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

from pipeline import ottl, wirescan
from pipeline.component import ProcessorFactory, Settings, TracesConsumer
from pipeline.configtypes import Config, Duration, NonNegInt, Percentage, PositiveInt
from pipeline.errors import RefusedError
from pipeline.pdata import Traces
from pipeline.wholetraces import (
    TraceView,
    resource_attributes,
    select,
    trace_attribute,
    trace_values,
    trace_views,
)
from processors.genai.write import attr_str
from processors.groupbytrace import MIB, HoldSettings, TraceHolder

POLICY_ATTRIBUTE = "sieve.sampling.policy"
CLASS_ATTRIBUTE = "sieve.trace.class"
CLASSES = ("clean", "noisy", "corrupted", "failed")
_POLICY_KEY = POLICY_ATTRIBUTE.encode()
_POLICY_DROP = frozenset((POLICY_ATTRIBUTE,))
# held span data is bounded as groupbytrace's default memory_limit_mib bounds it
HOLD_MEMORY_LIMIT = 1024 * MIB

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
    "bytes_limiting",
    "span_count",
    "trace_state",
    "trace_flags",
    "ottl_condition",
    "cleanliness",
]
LEAF_TYPES: tuple[str, ...] = LeafType.__args__  # type: ignore[attr-defined]
COMPOSITE_TYPES = ("and", "drop", "composite")


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
        errs = []
        if self.enabled_regex_matching:
            for i, v in enumerate(self.values):
                try:
                    re.compile(v)
                except re.error as exc:
                    errs.append(f"values::{i}: invalid regular expression {v!r}: {exc}")
        return errs


class BooleanAttributeConfig(Config):
    key: str
    value: bool
    invert_match: bool = False


class RateLimitingConfig(Config):
    spans_per_second: PositiveInt
    burst_capacity: PositiveInt | None = None  # default: 2 x spans_per_second


class BytesLimitingConfig(Config):
    bytes_per_second: PositiveInt
    burst_capacity: PositiveInt | None = None  # default: 2 x bytes_per_second


class SpanCountConfig(Config):
    min_spans: NonNegInt = 0
    max_spans: NonNegInt = 0  # 0: no upper bound

    def validate(self) -> list[str]:
        if self.max_spans and self.max_spans < self.min_spans:
            return ["max_spans: must be 0 (no upper bound) or at least min_spans"]
        return []


class TraceStateConfig(Config):
    key: str
    values: list[str]

    def validate(self) -> list[str]:
        errs = []
        if not self.key:
            errs.append("key: must not be empty")
        if not self.values:
            errs.append("values: list at least one value")
        return errs


class OTTLConditionConfig(Config):
    """OTTL conditions on spans (`span`) and span events (`spanevent`): a trace is sampled
    when any condition holds for any of its spans or events (`pipeline.ottl` is the
    subset understood; anything else is refused, naming it)."""

    error_mode: Literal["propagate", "ignore", "silent"] = "propagate"
    span: list[str] = []
    spanevent: list[str] = []

    def validate(self) -> list[str]:
        if not self.span and not self.spanevent:
            return ["span: list at least one condition (span or spanevent)"]
        errs = []
        for context, conditions in (("span", self.span), ("spanevent", self.spanevent)):
            for i, text in enumerate(conditions):
                try:
                    ottl.parse_condition(text, context)
                except ottl.OTTLError as exc:
                    errs.append(f"{context}::{i}: {exc}")
        return errs


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


# type -> (its block's config type, whether the block is required); types without options
# (always_sample, trace_flags) have no block
_BLOCKS: dict[str, tuple[type[Config], bool]] = {
    "latency": (LatencyConfig, False),
    "numeric_attribute": (NumericAttributeConfig, True),
    "probabilistic": (ProbabilisticConfig, False),
    "status_code": (StatusCodeConfig, True),
    "string_attribute": (StringAttributeConfig, True),
    "boolean_attribute": (BooleanAttributeConfig, True),
    "rate_limiting": (RateLimitingConfig, True),
    "bytes_limiting": (BytesLimitingConfig, True),
    "span_count": (SpanCountConfig, False),
    "trace_state": (TraceStateConfig, True),
    "ottl_condition": (OTTLConditionConfig, True),
    "cleanliness": (CleanlinessPolicyConfig, False),
}


class SubPolicyConfig(Config, omit_defaults=True):
    """A policy: `name`, `type`, and the block of that type's options (only that block is
    shown by print-config). Inside `and` and `drop`: a policy of any type but those that
    combine others."""

    name: str
    type: str
    latency: LatencyConfig | None = None
    numeric_attribute: NumericAttributeConfig | None = None
    probabilistic: ProbabilisticConfig | None = None
    status_code: StatusCodeConfig | None = None
    string_attribute: StringAttributeConfig | None = None
    boolean_attribute: BooleanAttributeConfig | None = None
    rate_limiting: RateLimitingConfig | None = None
    bytes_limiting: BytesLimitingConfig | None = None
    span_count: SpanCountConfig | None = None
    trace_state: TraceStateConfig | None = None
    ottl_condition: OTTLConditionConfig | None = None
    cleanliness: CleanlinessPolicyConfig | None = None

    def allowed_types(self) -> tuple[str, ...]:
        return LEAF_TYPES

    def combinators(self) -> dict[str, tuple[Config | None, str]]:
        """Blocks combining sub-policies this level allows: type -> (block, list field)."""
        return {}

    def validate(self) -> list[str]:
        errs = []
        if not self.name.strip():
            errs.append("name: must not be empty")
        if self.type not in self.allowed_types():
            valid = ", ".join(self.allowed_types())
            errs.append(f"type: unknown policy type {self.type!r} (valid here: {valid})")
            return errs
        for block, (_, required) in _BLOCKS.items():
            given = getattr(self, block) is not None
            if block == self.type and required and not given:
                errs.append(f"{block}: required for a policy of type {block}")
            elif block != self.type and given:
                errs.append(f"{block}: given, but the policy's type is {self.type}")
        for kind, (value, field) in self.combinators().items():
            if kind == self.type:
                if value is None:
                    errs.append(f"{kind}: required for a policy of type {kind}")
                else:
                    subs: list[SubPolicyConfig] = getattr(value, field)
                    if not subs:
                        errs.append(f"{kind}::{field}: list at least one sub-policy")
                    errs += _duplicates(subs, f"{kind}::{field}")
            elif value is not None:
                errs.append(f"{kind}: given, but the policy's type is {self.type}")
        return errs


def _duplicates(policies: list[SubPolicyConfig], path: str) -> list[str]:
    names = [p.name for p in policies]
    return [
        f"{path}: duplicate policy name {n!r}" for n in sorted(set(names)) if names.count(n) > 1
    ]


class AndConfig(Config):
    and_sub_policy: list[SubPolicyConfig]


class DropConfig(Config):
    drop_sub_policy: list[SubPolicyConfig]


class CompositeSubPolicyConfig(SubPolicyConfig):
    """A sub-policy of `composite`: any type that `and` allows, or an `and`."""

    and_: AndConfig | None = msgspec.field(default=None, name="and")

    def allowed_types(self) -> tuple[str, ...]:
        return (*LEAF_TYPES, "and")

    def combinators(self) -> dict[str, tuple[Config | None, str]]:
        return {"and": (self.and_, "and_sub_policy")}


class RateAllocationConfig(Config):
    policy: str
    percent: Annotated[int, Meta(ge=0, le=100)] = 0  # 0: an equal share


class CompositeConfig(Config):
    """Sub-policies in order, each with a share of `max_total_spans_per_second`: a trace
    is sampled by the first sub-policy that samples it if that sub-policy's spans this
    second stay within its share, else not sampled."""

    max_total_spans_per_second: PositiveInt
    policy_order: list[str] = []
    composite_sub_policy: list[CompositeSubPolicyConfig] = []
    rate_allocation: list[RateAllocationConfig] = []

    def validate(self) -> list[str]:
        errs = []
        names = {p.name for p in self.composite_sub_policy}
        for i, n in enumerate(self.policy_order):
            if n not in names:
                errs.append(f"policy_order::{i}: {n!r} is not a composite_sub_policy")
        total = 0
        for i, a in enumerate(self.rate_allocation):
            if a.policy not in names:
                errs.append(
                    f"rate_allocation::{i}::policy: {a.policy!r} is not a composite_sub_policy"
                )
            total += a.percent
        if total > 100:
            errs.append(f"rate_allocation: the percentages add up to {total}, more than 100")
        return errs


class PolicyConfig(SubPolicyConfig):
    and_: AndConfig | None = msgspec.field(default=None, name="and")
    drop: DropConfig | None = None
    composite: CompositeConfig | None = None

    def allowed_types(self) -> tuple[str, ...]:
        return (*LEAF_TYPES, *COMPOSITE_TYPES)

    def combinators(self) -> dict[str, tuple[Config | None, str]]:
        return {
            "and": (self.and_, "and_sub_policy"),
            "drop": (self.drop, "drop_sub_policy"),
            "composite": (self.composite, "composite_sub_policy"),
        }


class DecisionCacheConfig(Config):
    sampled_cache_size: NonNegInt = 100_000
    non_sampled_cache_size: NonNegInt = 100_000


class TailSamplingConfig(Config, omit_defaults=True):
    """(print-config leaves out options at their defaults.)"""

    policies: list[PolicyConfig] = []
    decision_wait: Duration = msgspec.field(default_factory=lambda: Duration(30.0))
    decision_wait_after_root_received: Duration = msgspec.field(
        default_factory=lambda: Duration(0.0)
    )
    num_traces: PositiveInt = 50_000
    expected_new_traces_per_sec: NonNegInt = 0  # a sizing hint in the Collector; no effect
    block_on_overflow: bool = False
    decision_cache: DecisionCacheConfig = msgspec.field(default_factory=DecisionCacheConfig)
    sample_on_first_match: bool = False
    drop_pending_traces_on_shutdown: bool = False

    def validate(self) -> list[str]:
        errs = []
        if self.decision_wait.seconds < 0:
            errs.append("decision_wait: must not be negative")
        if self.decision_wait_after_root_received.seconds < 0:
            errs.append("decision_wait_after_root_received: must not be negative (0s: off)")
        if not self.policies:
            errs.append("policies: list at least one policy")
        errs += _duplicates(list(self.policies), "policies")
        return errs


# -- decisions and policies -------------------------------------------------------------------


class Decision(IntEnum):
    NOT_SAMPLED = 0
    SAMPLED = 1
    INVERT_SAMPLED = 2  # deprecated invert_match: no match anywhere
    INVERT_NOT_SAMPLED = 3  # deprecated invert_match: a match -> vetoes sampling
    DROPPED = 4


_SAMPLED = (Decision.SAMPLED, Decision.INVERT_SAMPLED)


class PolicyError(Exception):
    """A policy could not evaluate a trace (the Collector's `Error` decision): it is left
    out of the decision, and counted."""


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

    __slots__ = ("_duration", "_resources", "_values", "keys", "view")

    def __init__(self, view: TraceView, keys: frozenset[str]) -> None:
        self.view = view
        self.keys = keys
        self._values: dict[str, list[Any]] | None = None
        self._duration: int | None = None
        self._resources: dict[bytes, dict[str, Any]] | None = None

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

    def size(self) -> int:
        """The trace's encoded size in bytes (its `resource_spans` fields, as the
        Collector's `ProtoMarshaler.TracesSize` counts a trace)."""
        e = self.view.entry
        return e.byte_end - e.byte_start

    def resource(self, pos: int) -> dict[str, Any]:
        """The attributes of the resource of the span at byte offset `pos`."""
        head = self.view.resource_of(pos)
        got = self._resources
        if got is None:
            got = self._resources = {}
        attrs = got.get(head)
        if attrs is None:
            attrs = got[head] = resource_attributes(head) if head else {}
        return attrs


class Policy:
    name: str
    keys: frozenset[str] = frozenset()  # attributes read through `_Ctx.values`
    settle: bool = False  # reads spans' attributes itself: what earlier processors wrote

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


class TokenBucket:
    """Go's `rate.Limiter` as the Collector uses it: `rate` tokens a second up to `burst`,
    starting full; `allow(n)` takes n tokens if there are that many (never more than
    `burst` at once)."""

    __slots__ = ("burst", "clock", "last", "rate", "tokens")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.clock = clock
        self.last = clock()

    def allow(self, n: int) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + max(now - self.last, 0.0) * self.rate)
        self.last = now
        if n <= self.tokens:
            self.tokens -= n
            return True
        return False


class RateLimiting(Policy):
    """A token bucket of spans: refills at `spans_per_second` up to `burst_capacity`
    (default twice that), starting full; a trace is sampled if its spans fit."""

    def __init__(
        self, name: str, cfg: RateLimitingConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        rate = cfg.spans_per_second
        self.bucket = TokenBucket(rate, cfg.burst_capacity or 2 * rate, clock)

    def evaluate(self, ctx: _Ctx) -> Decision:
        return Decision.SAMPLED if self.bucket.allow(ctx.view.span_count) else Decision.NOT_SAMPLED


class BytesLimiting(Policy):
    """A token bucket of bytes: refills at `bytes_per_second` up to `burst_capacity`
    (default twice that), starting full; a trace is sampled if its encoded size fits."""

    settle = True  # the size counts what earlier processors added

    def __init__(
        self, name: str, cfg: BytesLimitingConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        rate = cfg.bytes_per_second
        self.bucket = TokenBucket(rate, cfg.burst_capacity or 2 * rate, clock)

    def evaluate(self, ctx: _Ctx) -> Decision:
        return Decision.SAMPLED if self.bucket.allow(ctx.size()) else Decision.NOT_SAMPLED


class SpanCount(Policy):
    """The trace has at least `min_spans` and (unless `max_spans` is 0) at most
    `max_spans` spans."""

    def __init__(self, name: str, cfg: SpanCountConfig) -> None:
        self.name = name
        self.lo = cfg.min_spans
        self.hi = cfg.max_spans

    def evaluate(self, ctx: _Ctx) -> Decision:
        n = ctx.view.span_count
        ok = n >= self.lo if self.hi == 0 else self.lo <= n <= self.hi
        return Decision.SAMPLED if ok else Decision.NOT_SAMPLED


_TRACE_STATE = 0x1A  # Span.trace_state = 3, LEN
_FLAGS = 0x85  # Span.flags = 16, fixed32 (the key's varint is 0x85 0x01)
_FLAGS_KEY = b"\x85\x01"
_TS_KEY = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})\Z"
)
_TS_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]\Z")
_TS_MAX_MEMBERS = 32


def parse_trace_state(text: str) -> dict[str, str] | None:
    """A W3C `tracestate` as Go's `trace.ParseTraceState` reads it (key -> value), or
    None if it is invalid (a bad member, a repeated key, more than 32 members)."""
    out: dict[str, str] = {}
    for member in text.split(","):
        if not member:
            continue
        key, eq, value = member.partition("=")
        if not eq:
            return None
        key = key.lstrip(" \t")
        value = value.rstrip(" \t")
        if not _TS_KEY.match(key) or not _TS_VALUE.match(value) or key in out:
            return None
        out[key] = value
        if len(out) > _TS_MAX_MEMBERS:
            return None
    return out


class TraceState(Policy):
    """A span's W3C trace state has `key` with one of `values` (a trace state that does
    not parse matches nothing)."""

    def __init__(self, name: str, cfg: TraceStateConfig) -> None:
        self.name = name
        self.key = cfg.key
        # as the Collector: empty values, and key=value members over 256 bytes, never match
        self.values = frozenset(v for v in cfg.values if v and len(cfg.key) + len(v) < 256)
        self.needle = cfg.key.encode() + b"="

    def evaluate(self, ctx: _Ctx) -> Decision:
        view = ctx.view
        if not self.values or not view.has(self.needle):
            return Decision.NOT_SAMPLED
        raw, needle = view.raw, self.needle
        for s in view.spans:
            b0, b1 = s[9], s[10]
            if raw.find(needle, b0, b1) < 0:
                continue
            state = ""
            for key, _, v0, v1 in wirescan._fields(raw, b0, b1):
                if key == _TRACE_STATE:
                    state = raw[v0:v1].decode(errors="replace")  # the last one wins
            members = parse_trace_state(state)
            if members is not None and members.get(self.key) in self.values:
                return Decision.SAMPLED
        return Decision.NOT_SAMPLED


def span_flags(raw: bytes, span: Any) -> int:
    """A span's `flags` field (0 if absent; the last one wins)."""
    b0, b1 = span[9], span[10]
    if raw.find(_FLAGS_KEY, b0, b1) < 0:
        return 0
    flags = 0
    for key, _, v0, _ in wirescan._fields(raw, b0, b1):
        if key == 133:  # (16 << 3) | 5
            flags = int.from_bytes(raw[v0 : v0 + 4], "little")
    return flags


class TraceFlags(Policy):
    """Any span has the W3C sampled flag (bit 0 of its trace flags) set."""

    def __init__(self, name: str) -> None:
        self.name = name

    def evaluate(self, ctx: _Ctx) -> Decision:
        raw = ctx.view.raw
        for s in ctx.view.spans:
            if span_flags(raw, s) & 0x01:
                return Decision.SAMPLED
        return Decision.NOT_SAMPLED


class OTTLCondition(Policy):
    """Any span matches any `span` condition, or any span event any `spanevent` one
    (spans in order, each span's events after it). A condition that cannot be evaluated:
    with `error_mode: propagate` the policy fails (`PolicyError`), with `ignore` it is
    false and logged, with `silent` false."""

    settle = True

    def __init__(self, name: str, cfg: OTTLConditionConfig) -> None:
        self.name = name
        self.span_conditions = [ottl.parse_condition(c, "span") for c in cfg.span]
        self.event_conditions = [ottl.parse_condition(c, "spanevent") for c in cfg.spanevent]
        self.mode = cfg.error_mode
        self.span_keys = frozenset().union(
            *(c.span_keys for c in (*self.span_conditions, *self.event_conditions))
        )
        self.on_error: Callable[[str], None] | None = None  # the processor's warning

    def _holds(self, cond: ottl.Condition, data: ottl.SpanData) -> bool:
        try:
            return cond.matches(data)
        except ottl.OTTLEvalError as exc:
            if self.mode == "propagate":
                raise PolicyError(f"{cond.text}: {exc}") from None
            if self.mode == "ignore" and self.on_error is not None:
                self.on_error(f"policy {self.name!r}: {cond.text}: {exc}")
            return False

    def evaluate(self, ctx: _Ctx) -> Decision:
        raw = ctx.view.raw
        keys = self.span_keys
        for s in ctx.view.spans:
            resource = ctx.resource(s[9])
            if self.span_conditions:
                data = ottl.SpanData(raw, s, resource, keys)
                for c in self.span_conditions:
                    if self._holds(c, data):
                        return Decision.SAMPLED
            if self.event_conditions:
                for ev in ottl.events(raw, s):
                    data = ottl.SpanData(raw, s, resource, keys, ev)
                    for c in self.event_conditions:
                        if self._holds(c, data):
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


class _Combined(Policy):
    def __init__(self, name: str, subs: list[Policy]) -> None:
        self.name = name
        self.subs = subs
        self.keys = frozenset().union(*(s.keys for s in subs))
        self.settle = any(s.settle for s in subs)


class And(_Combined):
    """Every sub-policy samples (an inverted non-match counts as sampling)."""

    def evaluate(self, ctx: _Ctx) -> Decision:
        for sub in self.subs:
            if sub.evaluate(ctx) in (Decision.NOT_SAMPLED, Decision.INVERT_NOT_SAMPLED):
                return Decision.NOT_SAMPLED
        return Decision.SAMPLED


class Drop(And):
    """Dropped when every sub-policy samples."""

    def evaluate(self, ctx: _Ctx) -> Decision:
        if super().evaluate(ctx) == Decision.SAMPLED:
            return Decision.DROPPED
        return Decision.NOT_SAMPLED


class Composite(_Combined):
    """The Collector's composite: sub-policies in order, each allowed its share of
    `max_total_spans_per_second` (its `rate_allocation` percent, or an equal share) in
    each second of wall-clock time. The first sub-policy that samples decides: sampled if
    its spans this second, this trace's included, stay within its share (and the total),
    else not sampled; later sub-policies are not asked."""

    def __init__(
        self,
        name: str,
        cfg: CompositeConfig,
        subs: list[Policy],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name, subs)
        total = cfg.max_total_spans_per_second
        equal = total / len(subs)
        percent = {a.policy: a.percent for a in cfg.rate_allocation}
        self.max_total = total
        self.allocated = [
            int(percent[s.name] / 100 * total) if percent.get(s.name, 0) > 0 else int(equal)
            for s in subs
        ]
        self.spent = [0] * len(subs)
        self.second = -1
        self.clock = clock

    def evaluate(self, ctx: _Ctx) -> Decision:
        second = int(self.clock())
        if second != self.second:
            self.second = second
            self.spent = [0] * len(self.subs)
        for i, sub in enumerate(self.subs):
            if sub.evaluate(ctx) in _SAMPLED:
                spans = self.spent[i] + ctx.view.span_count
                if spans <= self.allocated[i] and spans <= self.max_total:
                    self.spent[i] = spans
                    return Decision.SAMPLED
                return Decision.NOT_SAMPLED
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
    if t == "bytes_limiting":
        assert cfg.bytes_limiting is not None
        return BytesLimiting(cfg.name, cfg.bytes_limiting)
    if t == "span_count":
        return SpanCount(cfg.name, cfg.span_count or SpanCountConfig())
    if t == "trace_state":
        assert cfg.trace_state is not None
        return TraceState(cfg.name, cfg.trace_state)
    if t == "trace_flags":
        return TraceFlags(cfg.name)
    if t == "ottl_condition":
        assert cfg.ottl_condition is not None
        return OTTLCondition(cfg.name, cfg.ottl_condition)
    if t == "cleanliness":
        return Cleanliness(cfg.name, cfg.cleanliness or CleanlinessPolicyConfig())
    if isinstance(cfg, PolicyConfig | CompositeSubPolicyConfig) and t == "and" and cfg.and_:
        return And(cfg.name, [build_policy(s) for s in cfg.and_.and_sub_policy])
    if isinstance(cfg, PolicyConfig) and t == "drop" and cfg.drop is not None:
        return Drop(cfg.name, [build_policy(s) for s in cfg.drop.drop_sub_policy])
    if isinstance(cfg, PolicyConfig) and t == "composite" and cfg.composite is not None:
        subs = [build_policy(s) for s in cfg.composite.composite_sub_policy]
        return Composite(cfg.name, cfg.composite, subs)
    raise ValueError(f"policy {cfg.name!r}: unknown type {t!r}")


def decide(
    policies: list[Policy],
    ctx: _Ctx,
    first_match: bool,
    seen: Counter[tuple[str, bool]],
    errors: Counter[str] | None = None,
) -> tuple[Decision, str]:
    """The final decision on a trace and the deciding policy's name ('' if none). A
    policy that raises `PolicyError` is counted in `errors` and left out."""
    first: dict[Decision, str] = {}
    for p in policies:
        try:
            d = p.evaluate(ctx)
        except PolicyError:
            if errors is not None:
                errors[p.name] += 1
            continue
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


class _LruCache:
    """trace id -> policy name, forgetting the least recently used entry beyond `size`
    (the Collector's LRU decision cache)."""

    __slots__ = ("_d", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[bytes, str] = OrderedDict()

    def get(self, tid: bytes) -> str | None:
        got = self._d.get(tid)
        if got is not None:
            self._d.move_to_end(tid)
        return got

    def __contains__(self, tid: bytes) -> bool:
        return tid in self._d

    def put(self, tid: bytes, policy: str) -> None:
        if self.size == 0:
            return
        self._d[tid] = policy
        self._d.move_to_end(tid)
        if len(self._d) > self.size:
            self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


_LABEL = {
    Decision.SAMPLED: "sampled",
    Decision.NOT_SAMPLED: "not_sampled",
    Decision.DROPPED: "dropped",
}


def _whole(traces: Traces) -> bool | None:
    """Whether the batch's traces were each released whole by a holder before (True),
    none was (False), or some were (None)."""
    idx = traces.trace_index
    if idx is None or not idx.entries:
        return False
    released = [bool(e.release) for e in idx.entries]
    if all(released):
        return True
    return None if any(released) else False


class TailSamplingProcessor(TraceHolder):
    """Stateful: holds traces (groupbytrace's machinery) until decided, unless they come
    whole from a groupbytrace before it; decision caches between batches."""

    def __init__(
        self, settings: Settings, cfg: TailSamplingConfig, next_consumer: TracesConsumer
    ) -> None:
        hold = HoldSettings(
            wait=cfg.decision_wait.seconds,
            root_wait=cfg.decision_wait_after_root_received.seconds or None,
            num_traces=cfg.num_traces,
            memory_limit=HOLD_MEMORY_LIMIT,
            released_cache_size=0,  # the decision caches say which traces were decided
            from_first=True,
            metrics="tracesieve_tail_sampling",
            late_metric=False,  # counted by decision below
        )
        # writes sieve.sampling.policy, removes traces
        super().__init__(settings, next_consumer, hold, mutates_data=True)
        self.cfg = cfg
        built = [build_policy(p) for p in cfg.policies]
        # drop policies first: a drop wins whatever else says, and stops the evaluation
        self.policies = [p for p in built if isinstance(p, Drop)] + [
            p for p in built if not isinstance(p, Drop)
        ]
        for p in _walk(self.policies):
            if isinstance(p, OTTLCondition):
                p.on_error = self._ottl_error
        self._keys = frozenset().union(*(p.keys for p in self.policies))
        self._settle = bool(self._keys) or any(p.settle for p in self.policies)
        self._first_match = cfg.sample_on_first_match
        self._drop_pending = cfg.drop_pending_traces_on_shutdown
        self._sampled = _LruCache(cfg.decision_cache.sampled_cache_size)
        self._not_sampled = _LruCache(cfg.decision_cache.non_sampled_cache_size)
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
        self._m_errors = self.counter_family(
            "tracesieve_tail_sampling_policy_evaluation_errors",
            "Traces a policy could not evaluate (left out of their decision)",
            "policy",
        )
        self._m_cached = self.counter_family(
            "tracesieve_tail_sampling_cached_decisions",
            "Traces (or late fragments) decided from the decision cache",
            "decision",
        )
        self._m_late_spans = self.counter_family(
            "tracesieve_tail_sampling_late_spans",
            "Spans of traces already decided (late fragments), by the decision applied",
            "decision",
        )
        self._m_pending_dropped = self.counter(
            "tracesieve_tail_sampling_traces_dropped_on_shutdown",
            "Traces pending at shutdown dropped undecided (drop_pending_traces_on_shutdown)",
        )
        cache = self.gauges(
            "tracesieve_tail_sampling_decision_cache_size",
            "Trace ids in the decision cache",
            "decision",
            ("sampled", "not_sampled"),
        )
        self._m_cache_size = (cache["sampled"], cache["not_sampled"])

    def _ottl_error(self, message: str) -> None:
        self.warn.warning("ottl_condition: %s (error_mode: ignore)", message, key="ottl")

    # -- ingest: whole traces are decided now, the rest held ------------------------------
    async def consume_traces(self, traces: Traces) -> None:
        whole = _whole(traces)
        if whole is True:
            if self.closing:
                raise RefusedError(f"{self.settings.id} is shutting down")
            await self._decide_now(traces)
            return
        if whole is None:  # some traces whole, some not: the first decided, the rest held
            views = trace_views(traces, settle=False)
            released = [bool(v.entry.release) for v in views]
            rest = select(traces, views, [not r for r in released])
            done = select(traces, views, released)
            if rest is not None:
                await super().consume_traces(rest)
            if done is not None:
                await self._decide_now(done)
            return
        await super().consume_traces(traces)

    def _check_room(self) -> None:
        super()._check_room()
        if self.cfg.block_on_overflow and len(self._traces) >= self.cfg.num_traces:
            raise RefusedError(
                f"{self.settings.id}: num_traces ({self.cfg.num_traces}) traces are waiting "
                "for their decision (block_on_overflow)",
                retry_after=1.0,
            )

    def _is_released(self, tid: bytes) -> bool:
        # a decided trace's later spans go on at once, by the cached decision
        return tid in self._sampled or tid in self._not_sampled

    async def _decide_now(self, traces: Traces) -> None:
        await self.process_and_forward(traces, self.process)

    async def _handoff(self, out: Traces) -> int:
        """Traces this processor held, now due: decided, the kept ones handed on."""
        kept = self.process(out)
        if kept is None:
            return 0
        await self._next.consume_traces(kept)
        return kept.span_count

    # -- deciding ---------------------------------------------------------------------------
    def _cached(self, tid: bytes) -> tuple[bool, str] | None:
        p = self._sampled.get(tid)
        if p is not None:
            return True, p
        if self._not_sampled.get(tid) is not None:
            return False, ""
        return None

    def process(self, traces: Traces) -> Traces | None:
        """Decide on each (whole) trace of the batch: the batch with the kept ones, the
        deciding policy written on each; None if none is kept."""
        # attribute policies read what earlier processors wrote: their patches are
        # spliced in first; the other policies read spans' ids, times and status only
        views = trace_views(traces, settle=self._settle)
        keep: list[bool] = []
        seen: Counter[tuple[str, bool]] = Counter()
        errors: Counter[str] = Counter()
        decided: Counter[tuple[str, str]] = Counter()
        cached_n: Counter[str] = Counter()
        late_n: Counter[str] = Counter()
        pending_dropped = 0
        for v in views:
            tid = v.trace_id
            hit = self._cached(tid)
            if hit is not None:
                sampled, policy = hit
                cached_n["sampled" if sampled else "not_sampled"] += 1
            elif self._drop_pending and v.entry.release == "shutdown":
                keep.append(False)  # pending at shutdown: dropped undecided, as asked
                pending_dropped += 1
                continue
            else:
                decision, policy = decide(
                    self.policies, _Ctx(v, self._keys), self._first_match, seen, errors
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
        self._count(seen, errors, decided, cached_n, late_n, pending_dropped)
        return out

    def _encoded(self, policy: str) -> bytes:
        data = self._policy_attr.get(policy)
        if data is None:
            data = self._policy_attr[policy] = attr_str(POLICY_ATTRIBUTE, policy)
        return data

    def _count(
        self,
        seen: Counter[tuple[str, bool]],
        errors: Counter[str],
        decided: Counter[tuple[str, str]],
        cached_n: Counter[str],
        late_n: Counter[str],
        pending_dropped: int,
    ) -> None:
        labels = self.labels
        for (policy, sampled), c in seen.items():
            self._m_policy.labels(*labels, policy, "true" if sampled else "false").inc(c)
        for policy, c in errors.items():
            self._m_errors.labels(*labels, policy).inc(c)
        for (policy, decision), c in decided.items():
            self._m_decisions.labels(*labels, policy, decision).inc(c)
        for decision, c in cached_n.items():
            self._m_cached.labels(*labels, decision).inc(c)
        for decision, c in late_n.items():
            self._m_late_spans.labels(*labels, decision).inc(c)
        if pending_dropped:
            self._m_pending_dropped.inc(pending_dropped)
        self._m_cache_size[0].set(len(self._sampled))
        self._m_cache_size[1].set(len(self._not_sampled))


def _walk(policies: list[Policy]) -> list[Policy]:
    """The policies and every sub-policy inside them."""
    out: list[Policy] = []
    for p in policies:
        out.append(p)
        if isinstance(p, _Combined):
            out += _walk(p.subs)
    return out


factory = ProcessorFactory(
    type="tail_sampling",
    config_type=TailSamplingConfig,
    create=TailSamplingProcessor,
    stability="beta",
    description="keeps or drops whole traces by policy (the OTel Collector's tail_sampling)",
)
