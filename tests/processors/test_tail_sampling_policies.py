"""tail_sampling's policy types beyond the first ones, each with the OTel Collector's
semantics: span_count, trace_state, trace_flags, bytes_limiting, composite (rate
allocation, the per-second budget, the first sampling sub-policy deciding), ottl_condition
(span and span-event conditions, error modes); drop policies evaluated first; a policy that
fails left out of the decision and counted; and each config error with its path."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.configtypes import decode
from pipeline.telemetry import Telemetry
from pipeline.testing import attrs, make_span
from processors.tail_sampling import (
    Composite,
    CompositeConfig,
    Decision,
    Policy,
    TailSamplingConfig,
    TokenBucket,
    decide,
    parse_trace_state,
)
from tests.processors.test_tail_sampling import kept, metric, processor, sid, tid, trace, whole


def one(n: int, name: str = "op", **kw: Any) -> Span:
    """A one-span trace (a root span)."""
    return make_span(name, tid(n), sid(2 * n), **kw)


# -- span_count ----------------------------------------------------------------------------


def spans(n: int, count: int) -> list[Span]:
    return [one(n)] + [
        make_span(f"c{i}", tid(n), sid(1000 * n + i), sid(2 * n)) for i in range(1, count)
    ]


async def test_span_count_bounds_are_inclusive_and_max_zero_is_no_upper_bound():
    traces = [spans(1, 1), spans(2, 2), spans(3, 5), spans(4, 6)]
    band = [{"name": "sc", "type": "span_count", "span_count": {"min_spans": 2, "max_spans": 5}}]
    assert await kept(band, *traces) == {tid(2), tid(3)}
    open_ended = [{"name": "sc", "type": "span_count", "span_count": {"min_spans": 5}}]
    assert await kept(open_ended, *traces) == {tid(3), tid(4)}


# -- trace_state -------------------------------------------------------------------------------


def test_trace_state_is_parsed_as_w3c_tracestate():
    assert parse_trace_state("vendor=keep,other=1") == {"vendor": "keep", "other": "1"}
    # blanks before a key and after a value are trimmed, empty members skipped (as Go's)
    assert parse_trace_state(" vendor=keep ,,b=2\t") == {"vendor": "keep", "b": "2"}
    assert parse_trace_state("tenant@system=v") == {"tenant@system": "v"}
    assert parse_trace_state("") == {}
    for bad in ("Vendor=x", "a=1,a=2", "novalue", "a=", "a=b=c", "a=x,y", "a=1, ,b=2"):
        assert parse_trace_state(bad) is None, bad
    assert parse_trace_state(",".join(f"k{i}=v" for i in range(33))) is None


async def test_trace_state_matches_a_key_with_one_of_the_values():
    def with_state(n: int, state: str) -> list[Span]:
        s = one(n)
        s.trace_state = state
        return [s]

    traces = [
        with_state(1, "vendor=keep"),
        with_state(2, "other=1,vendor=also"),
        with_state(3, "vendor=drop"),
        with_state(4, "Bad=1,vendor=keep"),  # does not parse: matches nothing
        [one(5)],
    ]
    policy = [
        {
            "name": "ts",
            "type": "trace_state",
            "trace_state": {"key": "vendor", "values": ["keep", "also"]},
        }
    ]
    assert await kept(policy, *traces) == {tid(1), tid(2)}


# -- trace_flags -------------------------------------------------------------------------------


async def test_trace_flags_samples_when_any_span_has_the_sampled_flag():
    child = make_span("c", tid(1), sid(3), sid(2))
    child.flags = 0x301  # sampled, plus the remote-parent bits
    unsampled = one(2)
    unsampled.flags = 0x300
    policy = [{"name": "tf", "type": "trace_flags"}]
    assert await kept(policy, [one(1), child], [unsampled], [one(3)]) == {tid(1)}


# -- bytes_limiting ------------------------------------------------------------------------------


def test_token_bucket_starts_full_refills_at_its_rate_and_never_exceeds_its_burst():
    now = [0.0]
    b = TokenBucket(100, 200, lambda: now[0])
    assert b.allow(150) and not b.allow(60) and b.allow(50)
    now[0] += 0.5  # 50 tokens back
    assert not b.allow(51) and b.allow(50)
    now[0] += 100.0  # refilled, up to the burst only
    assert not b.allow(201) and b.allow(200)


async def test_bytes_limiting_counts_each_traces_encoded_size():
    p, sink = processor(
        [
            {
                "name": "bl",
                "type": "bytes_limiting",
                "bytes_limiting": {"bytes_per_second": 1, "burst_capacity": 1},
            }
        ]
    )
    batch = await whole(*trace(1), *trace(2), *trace(3))
    sizes = [e.byte_end - e.byte_start for e in batch.trace_index.entries]  # type: ignore[union-attr]
    now = [10.0]
    bucket = p.policies[0].bucket  # type: ignore[attr-defined]
    bucket.clock = lambda: now[0]
    bucket.last = now[0]
    bucket.burst = bucket.tokens = sizes[0] + sizes[1]  # room for the first two traces
    await p.consume_traces(batch)
    assert {s.trace_id for s in sink.spans()} == {tid(1), tid(2)}
    # the default burst is twice the rate
    default, _ = processor(
        [{"name": "bl", "type": "bytes_limiting", "bytes_limiting": {"bytes_per_second": 300}}]
    )
    assert default.policies[0].bucket.burst == 600  # type: ignore[attr-defined]


# -- composite ---------------------------------------------------------------------------------


class Fixed(Policy):
    def __init__(self, name: str, d: Decision) -> None:
        self.name = name
        self.d = d
        self.calls = 0

    def evaluate(self, ctx: Any) -> Decision:
        self.calls += 1
        return self.d


class Ctx:
    """What Composite reads of a trace: its span count."""

    def __init__(self, n: int) -> None:
        self.view = type("View", (), {"span_count": n})()


def composite(cfg: dict[str, Any], subs: list[Policy], now: list[float]) -> Composite:
    value, errs = decode(cfg, CompositeConfig, "composite")
    assert value is not None and not errs, errs
    return Composite("c", value, subs, clock=lambda: now[0])


def test_composite_allocates_percentages_and_an_equal_share_to_the_rest():
    subs = [Fixed(n, Decision.SAMPLED) for n in ("a", "b", "c", "d")]
    c = composite(
        {
            "max_total_spans_per_second": 1000,
            "composite_sub_policy": [{"name": n, "type": "always_sample"} for n in "abcd"],
            "rate_allocation": [{"policy": "a", "percent": 50}, {"policy": "b", "percent": 0}],
        },
        subs,  # type: ignore[arg-type]
        [0.0],
    )
    # a: 50%; b (percent 0) and c, d (not listed): an equal share, 1000 / 4
    assert c.allocated == [500, 250, 250, 250]


def test_composite_first_sampling_sub_policy_decides_within_its_share_per_second():
    now = [100.2]
    first = Fixed("first", Decision.NOT_SAMPLED)
    second = Fixed("second", Decision.INVERT_SAMPLED)  # an inverted non-match samples here
    third = Fixed("third", Decision.SAMPLED)
    c = composite(
        {
            "max_total_spans_per_second": 10,
            "composite_sub_policy": [{"name": n, "type": "always_sample"} for n in ("a", "b", "c")],
            "rate_allocation": [{"policy": "a", "percent": 20}, {"policy": "b", "percent": 40}],
        },
        [first, second, third],
        now,
    )
    c.allocated = [2, 4, 4]
    assert c.evaluate(Ctx(3)) == Decision.SAMPLED  # second: 3 of its 4
    assert c.evaluate(Ctx(2)) == Decision.NOT_SAMPLED  # 5 > 4: not sampled...
    assert third.calls == 0  # ...and the next sub-policy is not asked
    assert c.evaluate(Ctx(1)) == Decision.SAMPLED  # a smaller trace still fits
    now[0] = 101.0  # a new second: the counts start again
    assert c.evaluate(Ctx(4)) == Decision.SAMPLED
    second.d = Decision.NOT_SAMPLED
    assert c.evaluate(Ctx(4)) == Decision.SAMPLED and third.calls == 1
    assert c.evaluate(Ctx(1)) == Decision.NOT_SAMPLED  # third's 4 are spent


async def test_composite_policy_in_a_pipeline():
    policy = [
        {
            "name": "budget",
            "type": "composite",
            "composite": {
                "max_total_spans_per_second": 1000,
                "policy_order": ["errors", "gold", "rest"],
                "composite_sub_policy": [
                    {
                        "name": "errors",
                        "type": "status_code",
                        "status_code": {"status_codes": ["ERROR"]},
                    },
                    {
                        "name": "gold",
                        "type": "and",
                        "and": {
                            "and_sub_policy": [
                                {
                                    "name": "tier",
                                    "type": "string_attribute",
                                    "string_attribute": {"key": "tier", "values": ["gold"]},
                                },
                                {"name": "any", "type": "always_sample"},
                            ]
                        },
                    },
                    {"name": "rest", "type": "span_count", "span_count": {"min_spans": 3}},
                ],
                "rate_allocation": [
                    {"policy": "errors", "percent": 50},
                    {"policy": "gold", "percent": 25},
                ],
            },
        }
    ]
    traces = [trace(1, status=2), trace(2, root_attrs={"tier": "gold"}), trace(3)]
    assert await kept(policy, *traces) == {tid(1), tid(2)}


# -- ottl_condition --------------------------------------------------------------------------------


def ottl(**block: Any) -> list[dict[str, Any]]:
    return [{"name": "o", "type": "ottl_condition", "ottl_condition": block}]


async def test_ottl_condition_span_conditions_any_of_them_on_any_span():
    traces = [
        trace(1, child_attrs={"gen_ai.request.model": "gpt-4o"}),
        trace(2, status=2),
        trace(3, duration_ms=900),
        trace(4),
    ]
    policy = ottl(
        span=[
            'attributes["gen_ai.request.model"] == "gpt-4o"',
            "status.code == STATUS_CODE_ERROR and kind == SPAN_KIND_INTERNAL",
            'name == "root" and end_time - start_time > Duration("500ms")',
        ]
    )
    assert await kept(policy, *traces) == {tid(1), tid(2), tid(3)}
    assert await kept(ottl(span=['not (name == "root" or name == "child")']), *traces) == set()


async def test_ottl_condition_span_event_conditions_and_the_resource():
    def with_event(n: int, event: str, **ev_attrs: Any) -> list[Span]:
        s = one(n)
        ev = s.events.add()
        ev.name = event
        for k, v in ev_attrs.items():
            a = ev.attributes.add()
            a.key = k
            a.value.int_value = v
        return [s]

    traces = [with_event(1, "rate_limited"), with_event(2, "retry", retry_count=3), [one(3)]]
    policy = ottl(spanevent=['name == "rate_limited"', 'attributes["retry_count"] >= 2'])
    assert await kept(policy, *traces) == {tid(1), tid(2)}
    by_resource = ottl(span=['resource.attributes["service.name"] == "svc"'])
    assert await kept(by_resource, *traces) == {tid(1), tid(2), tid(3)}


async def test_ottl_condition_error_modes(caplog):
    # arithmetic on a string cannot be evaluated on trace 1; trace 2 has a number
    traces = [trace(1, root_attrs={"n": "x"}), trace(2, root_attrs={"n": 5})]
    cond = 'attributes["n"] + 1 > 3'
    always = {"name": "all", "type": "always_sample"}
    # ignore: false, and a warning; silent: false, quietly
    for mode, warned in (("silent", False), ("ignore", True)):
        caplog.clear()
        assert await kept(ottl(error_mode=mode, span=[cond]), *traces) == {tid(2)}
        logged = [r.getMessage() for r in caplog.records if "ottl_condition" in r.getMessage()]
        assert bool(logged) == warned, logged
    # propagate (the default): the policy fails on trace 1, is left out of its decision
    # (the others decide), and is counted
    tel = Telemetry()
    p, sink = processor([*ottl(span=[cond]), always], tel=tel)
    await p.consume_traces(await whole(*traces[0], *traces[1]))
    by_trace = {s.trace_id: attrs(s) for s in sink.spans() if s.name == "root"}
    assert by_trace[tid(1)]["sieve.sampling.policy"] == "all"
    assert by_trace[tid(2)]["sieve.sampling.policy"] == "o"
    errors = "tracesieve_tail_sampling_policy_evaluation_errors_total"
    assert metric(tel, errors, policy="o") == 1
    assert await kept(ottl(span=[cond]), *traces) == {tid(2)}


# -- the decision rule -------------------------------------------------------------------------


async def test_drop_policies_are_evaluated_first():
    # as the Collector: a drop placed last still wins over sample_on_first_match, and a
    # dropped trace takes no tokens from a rate limit
    drop = {
        "name": "no-health",
        "type": "drop",
        "drop": {
            "drop_sub_policy": [
                {
                    "name": "health",
                    "type": "string_attribute",
                    "string_attribute": {"key": "url.path", "values": ["/health"]},
                }
            ]
        },
    }
    limit = {"name": "rl", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 1}}
    p, sink = processor([limit, drop], sample_on_first_match=True)
    now = [50.0]
    bucket = p.policies[1].bucket  # type: ignore[attr-defined]
    bucket.clock, bucket.last = (lambda: now[0]), now[0]
    assert [q.name for q in p.policies] == ["no-health", "rl"]
    await p.consume_traces(await whole(*trace(1, root_attrs={"url.path": "/health"}), *trace(2)))
    assert {s.trace_id for s in sink.spans()} == {tid(2)}  # the two tokens went to trace 2


def test_a_failing_policy_is_left_out_and_counted():
    from processors.tail_sampling import PolicyError

    class Failing(Policy):
        name = "bad"

        def evaluate(self, ctx: Any) -> Decision:
            raise PolicyError("cannot")

    errors: Counter[str] = Counter()
    seen: Counter[tuple[str, bool]] = Counter()
    got = decide([Failing(), Fixed("n", Decision.NOT_SAMPLED)], None, False, seen, errors)  # type: ignore[arg-type]
    assert got == (Decision.NOT_SAMPLED, "") and errors == {"bad": 1}
    assert decide([Failing(), Fixed("s", Decision.SAMPLED)], None, False, seen, errors) == (  # type: ignore[arg-type]
        Decision.SAMPLED,
        "s",
    )


# -- config errors -------------------------------------------------------------------------------


def errors_of(policies: list[dict[str, Any]]) -> list[str]:
    _, errs = decode({"policies": policies}, TailSamplingConfig, "ts")
    return errs


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            {"name": "a", "type": "span_count", "span_count": {"min_spans": 5, "max_spans": 2}},
            "ts::policies::0::span_count::max_spans: must be 0 (no upper bound) or at least",
        ),
        (
            {"name": "a", "type": "span_count", "span_count": {"min_spans": -1}},
            "ts::policies::0::span_count::min_spans:",
        ),
        ({"name": "a", "type": "trace_state"}, "ts::policies::0::trace_state: required"),
        (
            {"name": "a", "type": "trace_state", "trace_state": {"key": "k", "values": []}},
            "ts::policies::0::trace_state::values: list at least one value",
        ),
        (
            {"name": "a", "type": "bytes_limiting", "bytes_limiting": {"bytes_per_second": 0}},
            "ts::policies::0::bytes_limiting::bytes_per_second:",
        ),
        (
            {"name": "a", "type": "trace_flags", "span_count": {}},
            "ts::policies::0::span_count: given, but the policy's type is trace_flags",
        ),
        (
            {"name": "a", "type": "ottl_condition", "ottl_condition": {}},
            "ts::policies::0::ottl_condition::span: list at least one condition",
        ),
        (
            {
                "name": "a",
                "type": "ottl_condition",
                "ottl_condition": {"span": ["IsRootSpan() == true"], "spanevent": ["name =="]},
            },
            "ts::policies::0::ottl_condition::span::0: unsupported function IsRootSpan",
        ),
        (
            {
                "name": "a",
                "type": "ottl_condition",
                "ottl_condition": {"span": ["x"], "error_mode": "loud"},
            },
            "ts::policies::0::ottl_condition::error_mode:",
        ),
        ({"name": "a", "type": "composite"}, "ts::policies::0::composite: required"),
        (
            {"name": "a", "type": "composite", "composite": {"composite_sub_policy": []}},
            "ts::policies::0::composite: object missing required field 'max_total_spans_per_second'",
        ),
        (
            {
                "name": "a",
                "type": "composite",
                "composite": {"max_total_spans_per_second": 10, "composite_sub_policy": []},
            },
            "ts::policies::0::composite::composite_sub_policy: list at least one sub-policy",
        ),
        (
            {
                "name": "a",
                "type": "composite",
                "composite": {
                    "max_total_spans_per_second": 10,
                    "policy_order": ["x", "nope"],
                    "composite_sub_policy": [{"name": "x", "type": "always_sample"}],
                    "rate_allocation": [
                        {"policy": "x", "percent": 80},
                        {"policy": "ghost", "percent": 30},
                    ],
                },
            },
            "ts::policies::0::composite::policy_order::1: 'nope' is not a composite_sub_policy",
        ),
        (
            {
                "name": "a",
                "type": "composite",
                "composite": {
                    "max_total_spans_per_second": 10,
                    "composite_sub_policy": [
                        {"name": "x", "type": "drop", "drop": {"drop_sub_policy": []}}
                    ],
                },
            },
            "ts::policies::0::composite::composite_sub_policy::0::type: unknown policy type 'drop'",
        ),
        (
            {
                "name": "a",
                "type": "composite",
                "composite": {
                    "max_total_spans_per_second": 10,
                    "composite_sub_policy": [{"name": "x", "type": "composite"}],
                },
            },
            "ts::policies::0::composite::composite_sub_policy::0::type: unknown policy type",
        ),
        (
            {
                "name": "a",
                "type": "composite",
                "composite": {
                    "max_total_spans_per_second": 10,
                    "composite_sub_policy": [
                        {"name": "x", "type": "always_sample"},
                        {"name": "x", "type": "always_sample"},
                    ],
                },
            },
            "ts::policies::0::composite::composite_sub_policy: duplicate policy name 'x'",
        ),
    ],
)
def test_config_errors_name_the_field(policy, expected):
    errs = errors_of([policy])
    assert any(e.startswith(expected) for e in errs), errs


def test_every_problem_is_listed():
    errs = errors_of(
        [
            {
                "name": "a",
                "type": "composite",
                "composite": {
                    "max_total_spans_per_second": 10,
                    "composite_sub_policy": [{"name": "x", "type": "always_sample"}],
                    "rate_allocation": [
                        {"policy": "x", "percent": 80},
                        {"policy": "ghost", "percent": 30},
                    ],
                },
            },
            {"name": "b", "type": "span_count", "span_count": {"min_spans": 3, "max_spans": 1}},
            {
                "name": "c",
                "type": "ottl_condition",
                "ottl_condition": {"span": ["foo.bar == 1"], "spanevent": ["Len(name) > 2"]},
            },
        ]
    )
    assert any(
        e.startswith("ts::policies::0::composite::rate_allocation::1::policy: 'ghost'")
        for e in errs
    )
    assert (
        "ts::policies::0::composite::rate_allocation: the percentages add up to 110, more than 100"
        in errs
    )
    assert any(e.startswith("ts::policies::1::span_count::max_spans:") for e in errs)
    assert any(e.startswith("ts::policies::2::ottl_condition::span::0:") for e in errs)
    assert any(e.startswith("ts::policies::2::ottl_condition::spanevent::0:") for e in errs)
    assert len(errs) == 5, errs
