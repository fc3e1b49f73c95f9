"""tail_sampling: every policy, the OTel Collector's combination semantics, the deciding
policy written on the root span, the decision cache for late spans; holding traces itself
(decision_wait, num_traces, the root shortcut, shutdown) when no groupbytrace comes before
it, and not holding again the whole traces a groupbytrace released; the config's errors."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline import config as config_mod
from pipeline.configtypes import decode
from pipeline.errors import ConfigError
from pipeline.pdata import Traces
from pipeline.registry import REGISTRY
from pipeline.telemetry import Telemetry
from pipeline.testing import FakeHost, Sink, attrs, make_span, make_traces, settings
from pipeline.wholetraces import TraceIndex, aligned, trace_views
from processors.groupbytrace import GroupByTraceConfig, GroupByTraceProcessor
from processors.tail_sampling import (
    Decision,
    TailSamplingConfig,
    TailSamplingProcessor,
    TraceHash,
    decide,
    fnv1a_64,
    threshold,
)

NS = 1_000_000  # ns per ms


def tid(n: int) -> bytes:
    """Random-looking, as real trace ids are (FNV-1a spreads sequential ids badly)."""
    return random.Random(n).randbytes(16)


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def trace(
    n: int,
    *,
    root_attrs: dict[str, Any] | None = None,
    child_attrs: dict[str, Any] | None = None,
    status: int = 0,
    duration_ms: int = 10,
    root: bool = True,
) -> list[Span]:
    """A two-span trace: a root (or, with root=False, a span with a remote parent) and a child."""
    t = tid(n)
    first = make_span(
        "root",
        t,
        sid(2 * n),
        b"" if root else sid(999),
        duration_ns=duration_ms * NS,
        attributes=root_attrs,
    )
    child = make_span(
        "child",
        t,
        sid(2 * n + 1),
        sid(2 * n),
        start=first.start_time_unix_nano + NS,
        duration_ns=NS,
        status=status,
        attributes=child_attrs,
    )
    return [first, child]


def processor(
    policies: list[dict[str, Any]],
    tel: Telemetry | None = None,
    sink: Sink | None = None,
    **cfg: Any,
) -> tuple[TailSamplingProcessor, Sink]:
    value, errs = decode({"policies": policies, **cfg}, TailSamplingConfig, "tail_sampling")
    assert not errs and value is not None, errs
    sink = sink or Sink()
    return TailSamplingProcessor(settings(telemetry=tel or Telemetry()), value, sink), sink


async def whole(*spans: Span, service: str = "svc") -> Traces:
    """A batch of whole traces as groupbytrace releases them (trace-aligned, indexed)."""
    sink = Sink()
    g = GroupByTraceProcessor(settings(), GroupByTraceConfig(), sink)
    await g.consume_traces(make_traces(spans, service=service))
    await g.shutdown()
    (batch,) = sink.batches
    return batch


async def received(sink: Sink, n_batches: int = 1) -> None:
    """Wait (at most 10 s) until the sink has `n_batches` batches."""
    async with asyncio.timeout(10):
        while len(sink.batches) < n_batches:
            sink.received.clear()
            await sink.received.wait()


def metric(tel: Telemetry, name: str, **labels: str) -> float:
    value = tel.registry.get_sample_value(
        name, {"processor": "test", "pipeline": "traces", **labels}
    )
    return value or 0.0


async def kept(policies: list[dict[str, Any]], *traces: list[Span], **cfg: Any) -> set[bytes]:
    p, sink = processor(policies, **cfg)
    await p.consume_traces(await whole(*(s for t in traces for s in t)))
    return {s.trace_id for s in sink.spans()}


# -- hashing, as the OTel Collector does it (vectors from Go's hash/fnv and math/big) ------------

GO_THRESHOLDS = {
    0: 0,
    0.001: 184467440737095,
    1: 184467440737095519,
    12.5: 2305843009213693951,
    33: 6087425544324152319,
    33.33: 6148299799767393279,
    50: 9223372036854775807,
    66.6: 12285531553090559999,
    99.9: 18428297329635844095,
    99.99999: 18446742229035143167,
    100: 18446744073709551615,
}
GO_HASHES = [  # trace id, FNV-1a 64 with the default salt, with "test-salt"
    ("000b16212c37424d58636e79848f9aa5", 12324247188555036733, 15213753684159712976),
    ("25303b46515c67727d88939ea9b4bfca", 4799138078681959293, 16027821602739289408),
    ("b9c4cfdae5f0fb06111c27323d48535e", 7260481651072654397, 4058878491805545344),
]


@pytest.mark.parametrize(("percentage", "expected"), GO_THRESHOLDS.items())
def test_threshold_matches_the_otel_collector(percentage, expected):
    assert threshold(percentage) == expected


def test_hash_matches_the_otel_collector():
    assert fnv1a_64(b"") == 0xCBF29CE484222325 and fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    for hex_id, default, salted in GO_HASHES:
        t = bytes.fromhex(hex_id)
        assert fnv1a_64(t, fnv1a_64(b"default-hash-seed")) == default
        assert fnv1a_64(t, fnv1a_64(b"test-salt")) == salted


async def test_probabilistic_agrees_across_instances_and_follows_the_hash():
    traces = [trace(n) for n in range(1, 201)]
    policy = [{"name": "p", "type": "probabilistic", "probabilistic": {"sampling_percentage": 30}}]
    first = await kept(policy, *traces)
    second = await kept(policy, *traces)
    expected = {tid(n) for n in range(1, 201) if TraceHash("").sampled(tid(n), threshold(30))}
    assert first == second == expected
    assert 20 < len(first) < 100  # a real fraction, not all or nothing
    salted = [
        {
            "name": "p",
            "type": "probabilistic",
            "probabilistic": {"sampling_percentage": 30, "hash_salt": "other"},
        }
    ]
    assert await kept(salted, *traces) != first


# -- each policy ---------------------------------------------------------------------------------


async def test_always_sample():
    assert await kept([{"name": "all", "type": "always_sample"}], trace(1), trace(2)) == {
        tid(1),
        tid(2),
    }


async def test_status_code():
    policy = [{"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}]
    assert await kept(policy, trace(1, status=2), trace(2, status=1), trace(3)) == {tid(1)}


async def test_latency_threshold_and_upper_threshold():
    traces = [trace(1, duration_ms=50), trace(2, duration_ms=150), trace(3, duration_ms=250)]
    policy = [{"name": "slow", "type": "latency", "latency": {"threshold_ms": 100}}]
    assert await kept(policy, *traces) == {tid(2), tid(3)}
    banded = [
        {
            "name": "band",
            "type": "latency",
            "latency": {"threshold_ms": 100, "upper_threshold_ms": 200},
        }
    ]
    assert await kept(banded, *traces) == {tid(2)}


async def test_string_attribute_values_regex_and_resources():
    traces = [
        trace(1, child_attrs={"tenant": "acme"}),
        trace(2, root_attrs={"tenant": "globex"}),
        trace(3, root_attrs={"tenant": 7}),  # not a string: never matches
        trace(4),
    ]
    exact = [
        {
            "name": "s",
            "type": "string_attribute",
            "string_attribute": {"key": "tenant", "values": ["acme", "initech"]},
        }
    ]
    assert await kept(exact, *traces) == {tid(1)}
    regex = [
        {
            "name": "s",
            "type": "string_attribute",
            "string_attribute": {
                "key": "tenant",
                "values": ["^glo", "cme$"],
                "enabled_regex_matching": True,
            },
        }
    ]
    assert await kept(regex, *traces) == {tid(1), tid(2)}
    by_resource = [
        {
            "name": "s",
            "type": "string_attribute",
            "string_attribute": {"key": "service.name", "values": ["svc"]},
        }
    ]
    assert await kept(by_resource, *traces) == {tid(n) for n in range(1, 5)}


async def test_string_attribute_invert_match_vetoes():
    traces = [
        trace(1, child_attrs={"tenant": "acme"}),
        trace(2, root_attrs={"tenant": "other"}),
        trace(3),
    ]
    invert = {
        "name": "not-acme",
        "type": "string_attribute",
        "string_attribute": {"key": "tenant", "values": ["acme"], "invert_match": True},
    }
    assert await kept([invert], *traces) == {tid(2), tid(3)}
    # an inverted match is a veto: not even always_sample keeps trace 1
    assert await kept([invert, {"name": "all", "type": "always_sample"}], *traces) == {
        tid(2),
        tid(3),
    }


async def test_numeric_attribute_ints_doubles_and_invert():
    traces = [
        trace(1, child_attrs={"http.status": 503}),
        trace(2, root_attrs={"http.status": 404.0}),
        trace(3, root_attrs={"http.status": "503"}),
        trace(4, root_attrs={"http.status": 200}),
    ]
    policy = [
        {
            "name": "n",
            "type": "numeric_attribute",
            "numeric_attribute": {"key": "http.status", "min_value": 400, "max_value": 599},
        }
    ]
    assert await kept(policy, *traces) == {tid(1), tid(2)}
    open_ended = [
        {
            "name": "n",
            "type": "numeric_attribute",
            "numeric_attribute": {"key": "http.status", "min_value": 500},
        }
    ]
    assert await kept(open_ended, *traces) == {tid(1)}
    inverted = [
        {
            "name": "n",
            "type": "numeric_attribute",
            "numeric_attribute": {
                "key": "http.status",
                "min_value": 400,
                "max_value": 599,
                "invert_match": True,
            },
        }
    ]
    assert await kept(inverted, *traces) == {tid(3), tid(4)}


async def test_boolean_attribute():
    traces = [
        trace(1, child_attrs={"cache.hit": True}),
        trace(2, root_attrs={"cache.hit": False}),
        trace(3, root_attrs={"cache.hit": "true"}),
    ]
    policy = [
        {
            "name": "b",
            "type": "boolean_attribute",
            "boolean_attribute": {"key": "cache.hit", "value": True},
        }
    ]
    assert await kept(policy, *traces) == {tid(1)}
    falsy = [
        {
            "name": "b",
            "type": "boolean_attribute",
            "boolean_attribute": {"key": "cache.hit", "value": False},
        }
    ]
    assert await kept(falsy, *traces) == {tid(2)}


async def test_rate_limiting_is_a_token_bucket_of_spans():
    p, sink = processor(
        [{"name": "rl", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 2}}]
    )
    now = [100.0]
    bucket = p.policies[0].bucket  # type: ignore[attr-defined]
    bucket.clock = lambda: now[0]
    bucket.last = now[0]
    # burst 4 spans: the first two-span trace and the second fit, the third does not
    await p.consume_traces(await whole(*trace(1), *trace(2), *trace(3)))
    assert {s.trace_id for s in sink.spans()} == {tid(1), tid(2)}
    now[0] += 1.0  # two more spans' worth
    await p.consume_traces(await whole(*trace(4), *trace(5)))
    assert {s.trace_id for s in sink.spans()} == {tid(1), tid(2), tid(4)}


async def test_and_needs_every_sub_policy():
    traces = [
        trace(1, status=2, root_attrs={"tier": "gold"}),
        trace(2, status=2),
        trace(3, root_attrs={"tier": "gold"}),
    ]
    policy = [
        {
            "name": "gold-errors",
            "type": "and",
            "and": {
                "and_sub_policy": [
                    {
                        "name": "e",
                        "type": "status_code",
                        "status_code": {"status_codes": ["ERROR"]},
                    },
                    {
                        "name": "g",
                        "type": "string_attribute",
                        "string_attribute": {"key": "tier", "values": ["gold"]},
                    },
                ]
            },
        }
    ]
    assert await kept(policy, *traces) == {tid(1)}


async def test_drop_vetoes_any_sample():
    traces = [trace(1, root_attrs={"synthetic": True}), trace(2)]
    policies = [
        {"name": "all", "type": "always_sample"},
        {
            "name": "no-synthetic",
            "type": "drop",
            "drop": {
                "drop_sub_policy": [
                    {
                        "name": "syn",
                        "type": "boolean_attribute",
                        "boolean_attribute": {"key": "synthetic", "value": True},
                    },
                ]
            },
        },
    ]
    assert await kept(policies, *traces) == {tid(2)}


async def test_cleanliness_policy_by_class():
    traces = [
        trace(n, root_attrs={"sieve.trace.class": c})
        for n, c in enumerate(["clean", "noisy", "corrupted", "failed"], start=1)
    ]
    traces += [trace(5), trace(6, root_attrs={"sieve.trace.class": "clean"}, root=False)]
    policy = [
        {
            "name": "by-class",
            "type": "cleanliness",
            "cleanliness": {"clean": "keep", "corrupted": 100, "failed": 0},
        }
    ]
    # no root in trace 6: the class is read from its first span that carries it
    assert await kept(policy, *traces) == {tid(1), tid(3), tid(6)}
    default = [{"name": "by-class", "type": "cleanliness"}]  # keeps clean only
    assert await kept(default, *traces) == {tid(1), tid(6)}
    unclassified = [
        {"name": "by-class", "type": "cleanliness", "cleanliness": {"unclassified": "keep"}}
    ]
    assert await kept(unclassified, *traces) == {tid(1), tid(5), tid(6)}


async def test_cleanliness_percentage_follows_the_trace_id_hash():
    traces = [trace(n, root_attrs={"sieve.trace.class": "noisy"}) for n in range(1, 101)]
    policy = [{"name": "c", "type": "cleanliness", "cleanliness": {"noisy": 25, "hash_salt": "s"}}]
    expected = {tid(n) for n in range(1, 101) if TraceHash("s").sampled(tid(n), threshold(25))}
    got = await kept(policy, *traces)
    assert got == expected and 5 < len(got) < 60


async def test_cleanliness_reads_facts_left_by_an_earlier_processor():
    batch = await whole(*trace(1), *trace(2))
    idx = batch.trace_index
    assert isinstance(idx, TraceIndex)
    idx.entries[1].facts["sieve.trace.class"] = "clean"  # as the cleanliness processor would
    p, sink = processor([{"name": "c", "type": "cleanliness"}])
    await p.consume_traces(batch)
    assert {s.trace_id for s in sink.spans()} == {tid(2)}


async def test_attribute_policies_see_what_earlier_processors_patched_in():
    from processors.genai.write import attr_bool, attr_str

    batch = await whole(*trace(1), *trace(2), *trace(3))
    views = trace_views(batch, settle=False)
    # as cache_tagging and an earlier tail_sampling write: patches pending, not yet spliced
    batch.patch(batch.base, views[1].spans[-1][9], attr_bool("sieve.cache.hit", True))
    batch.patch(batch.base, views[1].root[9], attr_str("sieve.sampling.policy", "old"))
    assert batch.pending
    p, sink = processor(
        [
            {
                "name": "hits",
                "type": "boolean_attribute",
                "boolean_attribute": {"key": "sieve.cache.hit", "value": True},
            }
        ]
    )
    await p.consume_traces(batch)
    assert {s.trace_id for s in sink.spans()} == {tid(2)}
    root = next(s for s in sink.spans() if not s.parent_span_id)
    assert [a.value.string_value for a in root.attributes if a.key == "sieve.sampling.policy"] == [
        "hits"
    ]


# -- combination -------------------------------------------------------------------------------


class Fixed:
    def __init__(self, name: str, d: Decision) -> None:
        self.name = name
        self.d = d
        self.keys: frozenset[str] = frozenset()
        self.calls = 0

    def evaluate(self, ctx: Any) -> Decision:
        self.calls += 1
        return self.d


S, N, IS, INS, D = (
    Decision.SAMPLED,
    Decision.NOT_SAMPLED,
    Decision.INVERT_SAMPLED,
    Decision.INVERT_NOT_SAMPLED,
    Decision.DROPPED,
)


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        ([N, N], (N, "")),
        ([N, S, S], (S, "p1")),
        ([S, D, S], (D, "p1")),  # any drop wins, and stops the evaluation
        ([S, INS], (N, "p1")),  # an inverted match vetoes
        ([IS, N], (N, "")),  # an inverted non-match samples only if nothing said no
        ([IS, IS], (S, "p0")),
        ([N, IS, S], (S, "p2")),
    ],
)
def test_decision_combination(decisions, expected):
    from collections import Counter

    policies = [Fixed(f"p{i}", d) for i, d in enumerate(decisions)]
    assert decide(policies, None, False, Counter()) == expected  # type: ignore[arg-type]
    if D in decisions:
        assert policies[-1].calls == 0


def test_sample_on_first_match_stops_at_the_first_sample():
    from collections import Counter

    policies = [Fixed("a", N), Fixed("b", S), Fixed("c", D)]
    assert decide(policies, None, True, Counter()) == (S, "b")  # type: ignore[arg-type]
    assert policies[2].calls == 0
    assert decide(policies, None, False, Counter()) == (D, "c")  # type: ignore[arg-type]


# -- what is written, cached, counted ---------------------------------------------------------------


async def test_deciding_policy_written_on_the_root_span_only():
    p, sink = processor(
        [
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "all", "type": "always_sample"},
        ]
    )
    await p.consume_traces(await whole(*trace(1, status=2), *trace(2)))
    by_trace = {(s.trace_id, s.name): attrs(s) for s in sink.spans()}
    assert by_trace[(tid(1), "root")]["sieve.sampling.policy"] == "errors"
    assert by_trace[(tid(2), "root")]["sieve.sampling.policy"] == "all"
    assert "sieve.sampling.policy" not in by_trace[(tid(1), "child")]


async def test_without_a_root_the_policy_goes_on_every_span_and_is_replaced_not_repeated():
    p, sink = processor([{"name": "all", "type": "always_sample"}])
    spans = trace(1, root=False, root_attrs={"sieve.sampling.policy": "upstream"})
    await p.consume_traces(await whole(*spans))
    for s in sink.spans():
        keys = [kv.key for kv in s.attributes]
        assert keys.count("sieve.sampling.policy") == 1
        assert attrs(s)["sieve.sampling.policy"] == "all"


async def test_late_spans_follow_the_cached_decision():
    sink = Sink()
    p, _ = processor(
        [
            {
                "name": "keepers",
                "type": "string_attribute",
                "string_attribute": {"key": "keep", "values": ["yes"]},
            }
        ],
        sink=sink,
    )
    g = GroupByTraceProcessor(settings(), GroupByTraceConfig(), p)
    await g.consume_traces(make_traces([*trace(1, root_attrs={"keep": "yes"}), *trace(2)]))
    await g.shutdown()
    assert {s.trace_id for s in sink.spans()} == {tid(1)}
    # late spans: for trace 1 without the attribute, for trace 2 with it, in a batch from
    # elsewhere (no index): both decided traces' spans go on at once by the cached
    # decision (not after decision_wait, 30s)
    await p.start(FakeHost())
    late = make_traces(
        [
            make_span("late1", tid(1), sid(50), sid(2)),
            make_span("late2", tid(2), sid(51), sid(4), attributes={"keep": "yes"}),
        ]
    )
    await p.consume_traces(late)
    await received(sink, 2)
    assert p.held_traces == 0
    await p.shutdown()
    names = [s.name for s in sink.spans()]
    assert names.count("late1") == 1 and "late2" not in names
    late1 = next(s for s in sink.spans() if s.name == "late1")
    assert attrs(late1)["sieve.sampling.policy"] == "keepers"


async def test_late_fragments_from_groupbytrace_are_counted_by_decision():
    tel = Telemetry()
    sink = Sink()
    p, _ = processor([{"name": "all", "type": "always_sample"}], tel=tel, sink=sink)
    g = GroupByTraceProcessor(settings(), GroupByTraceConfig(), p)
    await g.start(FakeHost())
    await g.consume_traces(make_traces(trace(1)))
    await g.shutdown()
    g2_sink = Sink()
    g2 = GroupByTraceProcessor(settings(), GroupByTraceConfig(), g2_sink)
    g2._released.add(tid(1))  # as if it had released trace 1 before
    await g2.consume_traces(make_traces([make_span("late", tid(1), sid(70), sid(2))]))
    await g2.shutdown()
    (frag,) = g2_sink.batches
    await p.consume_traces(frag)
    labels = {"processor": "test", "pipeline": "traces"}
    assert (
        tel.registry.get_sample_value(
            "tracesieve_tail_sampling_late_spans_total", {**labels, "decision": "sampled"}
        )
        == 1
    )
    assert (
        tel.registry.get_sample_value(
            "tracesieve_tail_sampling_cached_decisions_total", {**labels, "decision": "sampled"}
        )
        == 1
    )


async def test_without_a_decision_cache_late_spans_get_a_fresh_decision():
    p, sink = processor(
        [
            {
                "name": "keepers",
                "type": "string_attribute",
                "string_attribute": {"key": "keep", "values": ["yes"]},
            }
        ],
        decision_cache={"sampled_cache_size": 0, "non_sampled_cache_size": 0},
    )
    await p.consume_traces(await whole(*trace(2)))
    await p.consume_traces(
        await whole(make_span("late2", tid(2), sid(51), sid(4), attributes={"keep": "yes"}))
    )
    assert [s.name for s in sink.spans()] == ["late2"]


async def test_a_batch_without_index_is_held_then_decided_trace_by_trace():
    p, sink = processor(
        [{"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}],
        decision_wait="50ms",
    )
    await p.start(FakeHost())
    a, b = trace(1, status=2), trace(2)
    mixed = make_traces([a[0], b[0], a[1], b[1]], scope="mixed")  # interleaved, one scope
    await p.consume_traces(mixed)
    assert p.held_traces == 2 and not sink.batches
    await received(sink)
    await p.shutdown()
    (out,) = sink.batches
    assert [s.name for s in sink.spans()] == ["root", "child"]
    assert {s.trace_id for s in sink.spans()} == {tid(1)}
    assert out.span_count == 2
    assert out.request.resource_spans[0].scope_spans[0].scope.name == "mixed"


async def test_dropped_traces_leave_an_aligned_index():
    p, sink = processor(
        [{"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}]
    )
    await p.consume_traces(
        await whole(*trace(1), *trace(2, status=2), *trace(3), *trace(4, status=2))
    )
    (out,) = sink.batches
    idx = out.trace_index
    assert isinstance(idx, TraceIndex)
    assert [e.trace_id for e in idx.entries] == [tid(2), tid(4)]
    raw = out.to_bytes()  # the policy attribute spliced in: the ranges move with it
    assert aligned(out) is idx and idx.raw is raw and idx.entries[-1].byte_end == len(raw)
    for e in idx.entries:
        part = ExportTraceServiceRequest.FromString(raw[e.byte_start : e.byte_end])
        assert {
            s.trace_id for r in part.resource_spans for ss in r.scope_spans for s in ss.spans
        } == {e.trace_id}


async def test_decisions_counted_by_policy():
    tel = Telemetry()
    p, _ = processor(
        [
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        ],
        tel=tel,
    )
    await p.consume_traces(await whole(*trace(1, status=2), *trace(2), *trace(3)))
    labels = {"processor": "test", "pipeline": "traces"}
    value = tel.registry.get_sample_value
    assert (
        value(
            "tracesieve_tail_sampling_decisions_total",
            {**labels, "policy": "errors", "decision": "sampled"},
        )
        == 1
    )
    assert (
        value(
            "tracesieve_tail_sampling_decisions_total",
            {**labels, "policy": "", "decision": "not_sampled"},
        )
        == 2
    )
    assert (
        value(
            "tracesieve_tail_sampling_count_traces_sampled_total",
            {**labels, "policy": "errors", "sampled": "false"},
        )
        == 2
    )
    assert value("otelcol_processor_dropped_spans_total", {**labels, "otel_signal": "traces"}) == 4


# -- config ------------------------------------------------------------------------------------


def pipeline_config(processors: list[str]) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {
            "groupbytrace": {},
            "batch": {},
            "tail_sampling": {"policies": [{"name": "all", "type": "always_sample"}]},
            "cleanliness": {},
        },
        "exporters": {"debug": {}},
        "service": {
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": processors, "exporters": ["debug"]}
            }
        },
    }


@pytest.mark.parametrize(
    "processors",
    [
        ["tail_sampling"],
        ["batch", "tail_sampling"],
        ["tail_sampling", "groupbytrace"],
        ["tail_sampling", "cleanliness"],  # whole traces come out of tail_sampling
    ],
)
def test_tail_sampling_alone_is_accepted(processors):
    cfg = config_mod.from_raw(pipeline_config(processors), REGISTRY)
    assert [p.type for p in cfg.pipelines["traces"].processors] == processors


@pytest.mark.parametrize("processors", [["cleanliness", "tail_sampling"], ["cleanliness"]])
def test_cleanliness_without_whole_traces_before_it_is_refused(processors):
    with pytest.raises(ConfigError) as exc:
        config_mod.from_raw(pipeline_config(processors), REGISTRY)
    (err,) = exc.value.errors
    assert err.startswith(
        'service::pipelines::traces: processor "cleanliness" needs "groupbytrace" or '
        '"tail_sampling" before it'
    )
    assert "holds spans until their trace is complete" in err
    assert "with groupbytrace before cleanliness" in err


def test_pipeline_with_groupbytrace_before_tail_sampling_is_accepted():
    cfg = config_mod.from_raw(pipeline_config(["batch", "groupbytrace", "tail_sampling"]), REGISTRY)
    assert [p.type for p in cfg.pipelines["traces"].processors][-2:] == [
        "groupbytrace",
        "tail_sampling",
    ]


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"policies": []}, "ts::policies: list at least one policy"),
        (
            {"policies": [{"name": "a", "type": "nope"}]},
            "ts::policies::0::type: unknown policy type 'nope'",
        ),
        (
            {"policies": [{"name": "a", "type": "string_attribute"}]},
            "ts::policies::0::string_attribute: required for a policy of type string_attribute",
        ),
        (
            {"policies": [{"name": "a", "type": "always_sample", "latency": {"threshold_ms": 5}}]},
            "ts::policies::0::latency: given, but the policy's type is always_sample",
        ),
        (
            {
                "policies": [
                    {"name": "a", "type": "always_sample"},
                    {"name": "a", "type": "always_sample"},
                ]
            },
            "ts::policies: duplicate policy name 'a'",
        ),
        (
            {
                "policies": [
                    {
                        "name": "a",
                        "type": "and",
                        "and": {"and_sub_policy": [{"name": "b", "type": "and"}]},
                    }
                ]
            },
            "ts::policies::0::and::and_sub_policy::0::type: unknown policy type 'and'",
        ),
        (
            {
                "policies": [
                    {
                        "name": "a",
                        "type": "string_attribute",
                        "string_attribute": {
                            "key": "k",
                            "values": ["("],
                            "enabled_regex_matching": True,
                        },
                    }
                ]
            },
            "ts::policies::0::string_attribute::values::0: invalid regular expression",
        ),
        (
            {"policies": [{"name": "a", "type": "cleanliness", "cleanliness": {"noisy": 150}}]},
            "ts::policies::0::cleanliness::noisy:",
        ),
        (
            {
                "policies": [
                    {
                        "name": "a",
                        "type": "probabilistic",
                        "probabilistic": {"sampling_percentage": 101},
                    }
                ]
            },
            "ts::policies::0::probabilistic::sampling_percentage:",
        ),
    ],
)
def test_config_errors_name_the_field(block, expected):
    _, errs = decode(block, TailSamplingConfig, "ts")
    assert any(e.startswith(expected) for e in errs), errs
