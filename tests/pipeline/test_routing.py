"""The routing connector: per-trace split by a trace-level attribute, default pipelines,
config checks; and end to end through the CLI: the OTel SDK sends agent traces, clean ones
land in one file, the rest in another, failed ones are sampled out. Then the Collector's
OTTL routes: resource, span and request contexts, match_once, error_mode, the config
errors the Collector gives, and OTTL routing through the CLI."""

from __future__ import annotations

import asyncio
import logging
import random
import urllib.request
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from pipeline import config as config_mod
from pipeline.configtypes import decode
from pipeline.connectors.routing import OTTLRoutingConnector, RoutingConfig, RoutingConnector
from pipeline.errors import ConfigError, PermanentError
from pipeline.graph import Graph
from pipeline.pdata import ClientInfo, Traces
from pipeline.registry import REGISTRY
from pipeline.telemetry import Telemetry
from pipeline.testing import (
    Sink,
    attrs,
    kv,
    make_span,
    make_traces,
    metric,
    read_json_lines,
    settings,
    spans_in,
    until,
    wait_for,
)
from pipeline.wholetraces import TraceIndex
from processors.groupbytrace import GroupByTraceConfig, GroupByTraceProcessor


def tid(n: int) -> bytes:
    return random.Random(n).randbytes(16)


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def trace(n: int, cls: str | None = None, root: bool = True, **root_attrs: Any) -> list[Any]:
    a = dict(root_attrs)
    if cls is not None:
        a["sieve.trace.class"] = cls
    t = tid(n)
    return [
        make_span("root", t, sid(2 * n), b"" if root else sid(999), attributes=a),
        make_span("child", t, sid(2 * n + 1), sid(2 * n)),
    ]


async def whole(*spans: Any, service: str = "svc") -> Traces:
    sink = Sink()
    g = GroupByTraceProcessor(settings(), GroupByTraceConfig(), sink)
    await g.consume_traces(make_traces(spans, service=service))
    await g.shutdown()
    (batch,) = sink.batches
    return batch


PIPES = ("traces/clean", "traces/rest", "traces/other")


def connector(
    table: list[dict[str, Any]], default: list[str] | None = None, tel: Telemetry | None = None
) -> tuple[RoutingConnector, dict[str, Sink]]:
    cfg, errs = decode(
        {"table": table, "default_pipelines": default or []}, RoutingConfig, "routing"
    )
    assert not errs and cfg is not None, errs
    sinks = {p: Sink() for p in PIPES}
    from pipeline.connectors.routing import create

    return create(settings("connector", "routing", tel), cfg, dict(sinks)), sinks  # type: ignore[return-value]


def ids(sink: Sink) -> set[bytes]:
    return {s.trace_id for s in sink.spans()}


BY_CLASS = [{"attribute": "sieve.trace.class", "values": ["clean"], "pipelines": ["traces/clean"]}]


def check_aligned(batch: Traces) -> None:
    idx = batch.trace_index
    assert isinstance(idx, TraceIndex) and idx.raw is batch.raw
    for e in idx.entries:
        part = ExportTraceServiceRequest.FromString(idx.raw[e.byte_start : e.byte_end])
        assert {
            s.trace_id for rs in part.resource_spans for ss in rs.scope_spans for s in ss.spans
        } == {e.trace_id}
        assert sum(len(ss.spans) for rs in part.resource_spans for ss in rs.scope_spans) == (
            e.span_count
        )


@pytest.mark.parametrize("state", ["unchanged", "changed", "no index"])
async def test_each_trace_goes_to_its_route(state):
    spans = [*trace(1, "clean"), *trace(2, "noisy"), *trace(3, "clean"), *trace(4)]
    if state == "no index":
        batch = make_traces([spans[i] for i in (0, 2, 4, 6, 1, 3, 5, 7)], service="svc")
    else:
        batch = await whole(*spans)
        if state == "changed":
            batch.mutable()  # as after a processor that wrote attributes
    c, sinks = connector(BY_CLASS, ["traces/rest"])
    await c.consume_traces(batch)
    assert ids(sinks["traces/clean"]) == {tid(1), tid(3)}
    assert ids(sinks["traces/rest"]) == {tid(2), tid(4)}
    assert sinks["traces/other"].batches == []
    for p in ("traces/clean", "traces/rest"):
        (part,) = sinks[p].batches
        assert part.span_count == 4
        check_aligned(part)
        assert part.request.resource_spans[0].resource.attributes[0].value.string_value == "svc"


async def test_one_route_for_the_whole_batch_passes_it_as_is():
    batch = await whole(*trace(1, "clean"), *trace(2, "clean"))
    c, sinks = connector(BY_CLASS, ["traces/rest"])
    await c.consume_traces(batch)
    assert sinks["traces/clean"].batches == [batch]


async def test_first_match_wins_regex_resources_and_trace_without_root():
    table = [
        {"attribute": "tier", "values": [True], "pipelines": ["traces/other"]},
        {"attribute": "service.name", "regex": "^check", "pipelines": ["traces/clean"]},
        {"attribute": "sieve.trace.class", "values": ["noisy"], "pipelines": ["traces/rest"]},
    ]
    c, sinks = connector(table)
    await c.consume_traces(
        await whole(*trace(1, "noisy", tier=True), *trace(2, "noisy", tier=1), service="checkout")
    )
    await c.consume_traces(
        await whole(*trace(3, "noisy", root=False), *trace(4, "clean"), service="search")
    )
    assert ids(sinks["traces/other"]) == {tid(1)}  # True matches True, not 1
    assert ids(sinks["traces/clean"]) == {tid(2)}  # by the resource's service.name
    assert ids(sinks["traces/rest"]) == {tid(3)}  # no root: its first span carrying the key


async def test_unmatched_traces_without_default_are_dropped_and_counted():
    tel = Telemetry()
    c, sinks = connector(BY_CLASS, tel=tel)
    await c.consume_traces(await whole(*trace(1, "clean"), *trace(2, "failed")))
    assert ids(sinks["traces/clean"]) == {tid(1)}
    assert (
        tel.registry.get_sample_value(
            "tracesieve_routing_dropped_spans_total", {"connector": "routing"}
        )
        == 2
    )
    assert (
        tel.registry.get_sample_value(
            "tracesieve_routing_traces_total", {"connector": "routing", "route": "none"}
        )
        == 1
    )


async def test_late_spans_follow_their_trace_s_route():
    c, sinks = connector(BY_CLASS, ["traces/rest"])
    await c.consume_traces(await whole(*trace(1, "clean"), *trace(2, "noisy")))
    late = await whole(
        make_span("late", tid(1), sid(77), sid(2)), make_span("late", tid(2), sid(78), sid(4))
    )
    await c.consume_traces(late)
    assert [s.name for s in sinks["traces/clean"].spans()].count("late") == 1
    assert [s.name for s in sinks["traces/rest"].spans()].count("late") == 1
    assert ids(sinks["traces/clean"]) == {tid(1)}


def routing_config(table: list[dict[str, Any]], default: list[str]) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"debug": {}},
        "connectors": {"routing": {"table": table, "default_pipelines": default}},
        "service": {
            "pipelines": {
                "traces": {"receivers": ["otlp"], "exporters": ["routing"]},
                "traces/clean": {"receivers": ["routing"], "exporters": ["debug"]},
            }
        },
    }


def test_routes_must_name_pipelines_the_connector_feeds():
    cfg = config_mod.from_raw(routing_config(BY_CLASS, ["traces/elsewhere"]), REGISTRY)
    with pytest.raises(ConfigError) as exc:
        Graph(cfg, REGISTRY, Telemetry())
    assert exc.value.errors == [
        'connectors::routing: default_pipelines: pipeline "traces/elsewhere" does not list '
        "this connector as a receiver"
    ]


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ({"attribute": "a", "pipelines": ["traces/clean"]}, "values: give either values or regex"),
        (
            {"attribute": "a", "values": ["x"], "regex": "y", "pipelines": ["traces/clean"]},
            "values: give either values or regex",
        ),
        (
            {"attribute": "a", "regex": "(", "pipelines": ["traces/clean"]},
            "regex: invalid regular expression",
        ),
        (
            {"attribute": "a", "values": ["x"], "pipelines": []},
            "pipelines: invalid route: no pipelines defined",
        ),
    ],
)
def test_route_config_errors(route, expected):
    with pytest.raises(ConfigError) as exc:
        config_mod.from_raw(routing_config([route], []), REGISTRY)
    assert any(
        e.startswith(f"connectors::routing::table::0::{expected}") for e in exc.value.errors
    ), exc.value.errors


# -- end to end -------------------------------------------------------------------------------


async def test_clean_traces_to_one_file_the_rest_to_another(tmp_path, service_factory):
    clean, rest = str(tmp_path / "clean.jsonl"), str(tmp_path / "rest.jsonl")
    c = await service_factory(
        {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
            "processors": {
                "groupbytrace": {"wait_duration": "5s", "wait_duration_after_root": "50ms"},
                "tail_sampling": {
                    "policies": [
                        {
                            "name": "by-class",
                            "type": "cleanliness",
                            "cleanliness": {
                                "clean": "keep",
                                "noisy": "keep",
                                "failed": 0,
                                "unclassified": "keep",
                            },
                        }
                    ]
                },
            },
            "exporters": {
                "file/clean": {"path": clean, "flush_interval": 0},
                "file/rest": {"path": rest, "flush_interval": 0},
            },
            "connectors": {
                "routing": {
                    "default_pipelines": ["traces/rest"],
                    "table": [
                        {
                            "attribute": "sieve.trace.class",
                            "values": ["clean"],
                            "pipelines": ["traces/clean"],
                        }
                    ],
                }
            },
            "service": {
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["groupbytrace", "tail_sampling"],
                        "exporters": ["routing"],
                    },
                    "traces/clean": {"receivers": ["routing"], "exporters": ["file/clean"]},
                    "traces/rest": {"receivers": ["routing"], "exporters": ["file/rest"]},
                },
                "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
            },
        }
    )
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=c.endpoints["receivers::otlp/grpc"], insecure=True)
        )
    )
    tracer = provider.get_tracer("e2e")
    sent: dict[str, int] = {}

    def run_app() -> None:  # the SDK exports synchronously: off the collector's loop
        for name, cls in (("A", "clean"), ("B", "noisy"), ("C", "failed"), ("D", None)):
            with tracer.start_as_current_span(f"run-{name}") as root:
                if cls is not None:
                    root.set_attribute("sieve.trace.class", cls)
                with tracer.start_as_current_span(f"llm-{name}"):
                    pass
                sent[name] = root.get_span_context().trace_id
        provider.shutdown()

    await asyncio.to_thread(run_app)

    metrics_url = f"http://{c.endpoints['telemetry/http']}/metrics"

    def released() -> float:
        return metric(c.metrics(), "tracesieve_groupbytrace_traces_released_total")

    assert await until(lambda: released() >= 4)
    clean_spans = spans_in(read_json_lines(clean))
    rest_spans = spans_in(read_json_lines(rest))
    assert sorted(s.name for s in clean_spans) == ["llm-A", "run-A"]
    assert sorted(s.name for s in rest_spans) == ["llm-B", "llm-D", "run-B", "run-D"]
    assert {s.trace_id for s in clean_spans} == {sent["A"].to_bytes(16, "big")}
    for s in clean_spans + rest_spans:
        if s.name.startswith("run-"):
            assert attrs(s)["sieve.sampling.policy"] == "by-class"
        else:
            assert "sieve.sampling.policy" not in attrs(s)
    text = await asyncio.to_thread(
        lambda: urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    )
    assert (
        'tracesieve_tail_sampling_decisions_total{decision="not_sampled",pipeline="traces",policy="",processor="tail_sampling"} 1.0'
        in text
    )
    assert 'release="root"' in text


# -- OTTL routes (the Collector's routing connector) ------------------------------------------


def multi_resource(*resources: tuple[dict[str, Any], list[Any]]) -> Traces:
    req = ExportTraceServiceRequest()
    for rattrs, spans in resources:
        rs = req.resource_spans.add()
        for k, v in rattrs.items():
            rs.resource.attributes.append(kv(k, v))
        ss = rs.scope_spans.add()
        ss.scope.name = "s"
        ss.spans.extend(spans)
    return Traces(raw=req.SerializeToString(), span_count=sum(len(s) for _, s in resources))


def names(sink: Sink) -> list[str]:
    return sorted(s.name for s in sink.spans())


async def test_resource_routes_split_resource_spans_first_match_wins():
    table = [
        {
            "statement": 'route() where attributes["tenant"] == "acme"',
            "pipelines": ["traces/clean"],
        },
        {"condition": 'resource.attributes["tenant"] != nil', "pipelines": ["traces/other"]},
    ]
    c, sinks = connector(table, ["traces/rest"])
    assert isinstance(c, OTTLRoutingConnector)
    batch = multi_resource(
        ({"tenant": "acme"}, [make_span("a1", tid(1), sid(1)), make_span("a2", tid(2), sid(2))]),
        ({"tenant": "globex"}, [make_span("g1", tid(1), sid(3))]),
        ({"service.name": "x"}, [make_span("n1", tid(3), sid(4))]),
        ({"tenant": "acme"}, [make_span("a3", tid(4), sid(5))]),
    )
    await c.consume_traces(batch)
    assert names(sinks["traces/clean"]) == ["a1", "a2", "a3"]
    assert names(sinks["traces/other"]) == ["g1"]
    assert names(sinks["traces/rest"]) == ["n1"]
    (acme,) = sinks["traces/clean"].batches
    assert acme.span_count == 3 and len(acme.request.resource_spans) == 2


async def test_one_resource_route_for_everything_passes_the_batch_as_is():
    c, sinks = connector(
        [{"condition": 'attributes["tenant"] == "acme"', "pipelines": ["traces/clean"]}]
    )
    batch = multi_resource(({"tenant": "acme"}, [make_span("a", tid(1), sid(1))]))
    await c.consume_traces(batch)
    assert sinks["traces/clean"].batches == [batch]


async def test_span_routes_split_spans_and_keep_their_resource():
    table = [
        {
            "context": "span",
            "condition": 'kind == SPAN_KIND_CLIENT and attributes["gen_ai.system"] != nil',
            "pipelines": ["traces/clean"],
        },
        {
            "statement": 'route() where span.end_time - span.start_time > Duration("2s")',
            "pipelines": ["traces/other"],
        },
        {"condition": 'attributes["tenant"] == "acme"', "pipelines": ["traces/other"]},
    ]
    c, sinks = connector(table, ["traces/rest"])
    llm = make_span("llm", tid(1), sid(1), sid(9), kind=3, attributes={"gen_ai.system": "openai"})
    slow = make_span("slow", tid(1), sid(2), duration_ns=3_000_000_000)
    fast = make_span("fast", tid(1), sid(3), kind=3)
    acme = make_span("acme-span", tid(2), sid(4))
    batch = multi_resource(
        ({"service.name": "agent"}, [llm, slow, fast]), ({"tenant": "acme"}, [acme])
    )
    await c.consume_traces(batch)
    assert names(sinks["traces/clean"]) == ["llm"]
    assert names(sinks["traces/other"]) == ["acme-span", "slow"]
    assert names(sinks["traces/rest"]) == ["fast"]
    (llm_batch,) = sinks["traces/clean"].batches
    rs = llm_batch.request.resource_spans[0]
    assert rs.resource.attributes[0].value.string_value == "agent"
    assert rs.scope_spans[0].scope.name == "s"


async def test_request_routes_use_client_metadata():
    table = [
        {
            "context": "request",
            "condition": 'request["X-Tenant"] == "acme"',
            "pipelines": ["traces/clean"],
        },
        {
            "context": "request",
            "condition": 'request["x-tenant"] != "acme"',
            "pipelines": ["traces/other"],
        },
    ]
    c, sinks = connector(table, ["traces/rest"])
    for tenant in ("acme", "globex", None):
        batch = multi_resource(({}, [make_span(f"s-{tenant}", tid(1), sid(1))]))
        batch.client = ClientInfo("10.0.0.1", {"x-tenant": (tenant,)} if tenant else {})
        await c.consume_traces(batch)
    assert names(sinks["traces/clean"]) == ["s-acme"]
    assert names(sinks["traces/other"]) == ["s-globex"]
    assert names(sinks["traces/rest"]) == ["s-None"]


async def test_match_once_false_sends_to_every_matching_route():
    table = [
        {"condition": 'attributes["env"] == "prod"', "pipelines": ["traces/clean"]},
        {"condition": 'attributes["region"] == "east"', "pipelines": ["traces/other"]},
    ]
    cfg, errs = decode(
        {"table": table, "default_pipelines": ["traces/rest"], "match_once": False},
        RoutingConfig,
        "routing",
    )
    assert cfg is not None and not errs
    sinks = {p: Sink() for p in PIPES}
    c = OTTLRoutingConnector(settings("connector", "routing"), cfg, dict(sinks))
    await c.consume_traces(
        multi_resource(
            ({"env": "prod", "region": "east"}, [make_span("both", tid(1), sid(1))]),
            ({"env": "dev"}, [make_span("none", tid(2), sid(2))]),
        )
    )
    assert names(sinks["traces/clean"]) == ["both"]
    assert names(sinks["traces/other"]) == ["both"]
    assert names(sinks["traces/rest"]) == ["none"]


@pytest.mark.parametrize("mode", ["propagate", "ignore", "silent"])
async def test_error_mode(mode, caplog):
    cfg, errs = decode(
        {
            "table": [
                {
                    "context": "span",
                    "condition": 'attributes["n"] - 1 > 0',
                    "pipelines": ["traces/clean"],
                }
            ],
            "default_pipelines": ["traces/rest"],
            "error_mode": mode,
        },
        RoutingConfig,
        "routing",
    )
    assert cfg is not None and not errs
    sinks = {p: Sink() for p in PIPES}
    c = OTTLRoutingConnector(settings("connector", "routing"), cfg, dict(sinks))
    batch = multi_resource(
        (
            {},
            [
                make_span("num", tid(1), sid(1), attributes={"n": 5}),
                make_span("str", tid(1), sid(2), attributes={"n": "five"}),
            ],
        )
    )
    if mode == "propagate":
        with pytest.raises(PermanentError, match="cannot apply '-' to string and number"):
            await c.consume_traces(batch)
        return
    with caplog.at_level(logging.WARNING):
        await c.consume_traces(batch)
        await c.consume_traces(batch)  # the second warning is held back (one a second)
    assert names(sinks["traces/clean"]) == ["num", "num"]
    assert names(sinks["traces/rest"]) == ["str", "str"]
    warned = [r for r in caplog.records if "taken as no match" in r.getMessage()]
    assert len(warned) == (1 if mode == "ignore" else 0)


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (
            {
                "statement": 'route() where attributes["x"] == "a"',
                "condition": "true",
                "pipelines": ["traces/clean"],
            },
            "statement: invalid route: both condition and statement provided",
        ),
        (
            {"pipelines": ["traces/clean"]},
            "statement: invalid route: no condition or statement provided",
        ),
        ({"condition": "true", "pipelines": []}, "pipelines: invalid route: no pipelines defined"),
        (
            {"context": "invalid", "condition": "true", "pipelines": ["traces/clean"]},
            "context: invalid context: invalid",
        ),
        (
            {"context": "request", "statement": "route()", "pipelines": ["traces/clean"]},
            """statement: "request" context requires a 'condition'""",
        ),
        (
            {
                "context": "request",
                "condition": 'attributes["attr"] == "acme"',
                "pipelines": ["traces/clean"],
            },
            """condition: condition must have format 'request["<name>"] <comparator> <value>'""",
        ),
        (
            {
                "statement": 'delete_key(attributes, "X-Tenant") where attributes["X-Tenant"] == "acme"',
                "pipelines": ["traces/clean"],
            },
            "statement: unsupported function delete_key() at column 1: a statement here may only be route()",
        ),
        (
            {
                "context": "span",
                "condition": 'status.message == "x"',
                "pipelines": ["traces/clean"],
            },
            "condition: unsupported path status.message at column 1 in the span context",
        ),
        (
            {"condition": 'name == "x"', "pipelines": ["traces/clean"]},
            "condition: unsupported path name at column 1 in the resource context",
        ),
        (
            {"attribute": "a", "values": ["x"], "condition": "true", "pipelines": ["traces/clean"]},
            "attribute: give either attribute/values/regex (a trace-level route) or statement/condition",
        ),
    ],
)
def test_ottl_route_config_errors(route, expected):
    with pytest.raises(ConfigError) as exc:
        config_mod.from_raw(routing_config([route], []), REGISTRY)
    assert any(
        e.startswith(f"connectors::routing::table::0::{expected}") for e in exc.value.errors
    ), exc.value.errors


def test_a_table_mixing_kinds_and_an_empty_table_are_errors():
    mixed = [*BY_CLASS, {"condition": "true", "pipelines": ["traces/clean"]}]
    with pytest.raises(ConfigError) as exc:
        config_mod.from_raw(routing_config(mixed, []), REGISTRY)
    assert "connectors::routing::table: mixes trace-level routes" in exc.value.errors[0]
    with pytest.raises(ConfigError) as exc:
        config_mod.from_raw(routing_config([], []), REGISTRY)
    assert exc.value.errors == [
        "connectors::routing::table: invalid routing table: the routing table is empty"
    ]


def test_routes_of_other_signals_are_accepted_with_a_warning():
    table = [
        {"context": "log", "condition": "severity_number < 9", "pipelines": ["traces/clean"]},
        {"condition": 'attributes["a"] == "b"', "pipelines": ["traces/clean"]},
    ]
    cfg = config_mod.from_raw(routing_config(table, []), REGISTRY)
    assert any("connectors::routing::table::0::context" in w for w in cfg.warnings)


def test_routing_by_ottl_through_the_cli(tmp_path, collector_factory):
    """The Collector's own routing connector config shape, from the CLI: the OTel SDK
    sends spans of two tenants (as resources) and LLM client spans; resource routes split
    by tenant, a span route takes the LLM calls, the rest goes to the default."""
    out = {n: str(tmp_path / f"{n}.jsonl") for n in ("acme", "llm", "other")}
    c = collector_factory(
        {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
            "exporters": {f"file/{n}": {"path": p, "flush_interval": 0} for n, p in out.items()},
            "connectors": {
                "routing": {
                    "default_pipelines": ["traces/other"],
                    "table": [
                        {
                            "context": "span",
                            "condition": 'kind == SPAN_KIND_CLIENT and IsMatch(name, "^chat ")',
                            "pipelines": ["traces/llm"],
                        },
                        {
                            "statement": 'route() where attributes["tenant"] == "acme"',
                            "pipelines": ["traces/acme"],
                        },
                    ],
                }
            },
            "service": {
                "pipelines": {
                    "traces/in": {"receivers": ["otlp"], "exporters": ["routing"]},
                    **{
                        f"traces/{n}": {"receivers": ["routing"], "exporters": [f"file/{n}"]}
                        for n in out
                    },
                },
                "telemetry": {"metrics": {"level": "none"}},
            },
        }
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.trace import SpanKind

    endpoint = f"http://{c.endpoints['receivers::otlp/http']}/v1/traces"
    for tenant in ("acme", "globex"):
        provider = TracerProvider(
            resource=Resource.create({"service.name": "agent", "tenant": tenant})
        )
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        tracer = provider.get_tracer("e2e")
        with tracer.start_as_current_span(f"run-{tenant}"):
            with tracer.start_as_current_span(f"chat gpt-4o {tenant}", kind=SpanKind.CLIENT):
                pass
            with tracer.start_as_current_span(f"tool-{tenant}"):
                pass
        provider.shutdown()

    def got(name: str) -> list[str]:
        try:
            return sorted(s.name for s in spans_in(read_json_lines(out[name])))
        except FileNotFoundError:
            return []

    assert wait_for(lambda: len(got("acme")) + len(got("llm")) + len(got("other")) == 6)
    assert got("llm") == ["chat gpt-4o acme", "chat gpt-4o globex"]
    assert got("acme") == ["run-acme", "tool-acme"]
    assert got("other") == ["run-globex", "tool-globex"]
