"""tail_sampling through the real CLI, alone in its pipeline as a Collector user configures
it: the Collector's own tail_sampling configs (its README example and its testdata) load
with `tracesieve validate` and run; spans of a trace sent in several OTLP/gRPC requests
are held and decided together; every policy type the Collector documents decides what
it should on traces sent over the wire, read back from the file exporter and /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.testing import (
    attrs,
    export_grpc,
    make_span,
    make_traces,
    metric,
    read_json_lines,
    scrape,
    spans_in,
    wait_for,
)

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(HERE, "testdata", "tail_sampling")
DECIDED = "tracesieve_tail_sampling_decisions_total"


def base(out: str) -> dict[str, Any]:
    """Everything but the tail_sampling block: OTLP in, a file out, metrics on."""
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"file": {"path": out, "flush_interval": 0}},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["tail_sampling"],
                    "exporters": ["file"],
                }
            },
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


def tid(n: int) -> bytes:
    return bytes([n]) * 16


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def request(*spans: Span, service: str = "agent") -> ExportTraceServiceRequest:
    return make_traces(spans, service=service).request


@pytest.mark.parametrize("block", ["collector_readme.yaml", "collector_testdata.yaml"])
def test_the_collectors_own_configs_validate(tmp_path, block):
    import yaml

    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(base(str(tmp_path / "out.jsonl"))))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "validate",
            "--config",
            str(path),
            "--config",
            os.path.join(TESTDATA, block),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "configuration is valid" in res.stdout


def test_the_readme_example_holds_and_decides_traces_sent_in_pieces(tmp_path, collector_factory):
    out = str(tmp_path / "out.jsonl")
    c = collector_factory(
        base(out),
        extra_args=[
            "--config",
            os.path.join(TESTDATA, "collector_readme.yaml"),
            # the README waits 10s: shorter here, the rest as written
            "--config",
            "yaml:processors::tail_sampling::decision_wait: 1s",
        ],
    )
    grpc = c.endpoints["receivers::otlp/grpc"]
    root = make_span("GET /orders", tid(1), sid(1), attributes={"url.path": "/orders"})
    child = make_span("SELECT orders", tid(1), sid(2), sid(1))
    health = make_span("GET /health", tid(2), sid(3), attributes={"url.path": "/health"})
    # trace 1 in two requests from two services, trace 2 between them
    export_grpc(grpc, request(child, service="db"))
    export_grpc(grpc, request(health))
    export_grpc(grpc, request(root))

    def decided() -> float:
        return metric(scrape(c.endpoints["telemetry/http"]), DECIDED)

    assert wait_for(lambda: decided() == 2, timeout=30), c.output
    assert wait_for(lambda: len(spans_in(read_json_lines(out))) == 2, timeout=10), c.output
    (exported,) = read_json_lines(out)  # trace 1 decided whole: one batch, both spans
    got = {s.name: attrs(s) for s in spans_in([exported])}
    assert set(got) == {"GET /orders", "SELECT orders"}
    # drop policies first, then in order: always_sample is the first to sample
    assert got["GET /orders"]["sieve.sampling.policy"] == "test-policy-1"
    assert "sieve.sampling.policy" not in got["SELECT orders"]
    m = scrape(c.endpoints["telemetry/http"])
    assert metric(m, DECIDED, policy="drop-policy-1", decision="dropped") == 1
    assert metric(m, DECIDED, policy="test-policy-1", decision="sampled") == 1
    assert metric(m, "otelcol_processor_dropped_spans_total", processor="tail_sampling") == 1


POLICIES: list[dict[str, Any]] = [
    {"name": "big", "type": "span_count", "span_count": {"min_spans": 3}},
    {
        "name": "by-tracestate",
        "type": "trace_state",
        "trace_state": {"key": "vendor", "values": ["keep"]},
    },
    {"name": "upstream-sampled", "type": "trace_flags"},
    {
        "name": "gpt",
        "type": "ottl_condition",
        "ottl_condition": {"span": ['attributes["gen_ai.request.model"] == "gpt-4o"']},
    },
    {
        "name": "rate-limited",
        "type": "ottl_condition",
        "ottl_condition": {"spanevent": ['name == "rate_limited"']},
    },
    {
        "name": "gold",
        "type": "composite",
        "composite": {
            "max_total_spans_per_second": 100,
            "policy_order": ["tier"],
            "composite_sub_policy": [
                {
                    "name": "tier",
                    "type": "string_attribute",
                    "string_attribute": {"key": "tier", "values": ["gold"]},
                }
            ],
            "rate_allocation": [{"policy": "tier", "percent": 100}],
        },
    },
    {  # no trace fits one byte: it never samples
        "name": "tiny-budget",
        "type": "bytes_limiting",
        "bytes_limiting": {"bytes_per_second": 1, "burst_capacity": 1},
    },
    {  # last in the list, first to be evaluated
        "name": "no-healthchecks",
        "type": "drop",
        "drop": {
            "drop_sub_policy": [
                {
                    "name": "healthcheck",
                    "type": "ottl_condition",
                    "ottl_condition": {"span": ['name == "healthcheck"']},
                }
            ]
        },
    },
]


def test_each_policy_type_decides_traces_sent_over_the_wire(tmp_path, collector_factory):
    out = str(tmp_path / "out.jsonl")
    cfg = base(out)
    cfg["processors"] = {
        "tail_sampling": {
            "decision_wait": "500ms",
            "decision_wait_after_root_received": "100ms",
            "policies": POLICIES,
        }
    }
    c = collector_factory(cfg)

    spans: list[Span] = [make_span(f"s{i}", tid(1), sid(10 + i), sid(10)) for i in (1, 2)]
    spans.append(make_span("big", tid(1), sid(10)))  # 3 spans
    by_state = make_span("op", tid(2), sid(20))
    by_state.trace_state = "other=1,vendor=keep"
    flagged = make_span("op", tid(3), sid(30))
    flagged.flags = 0x301  # the W3C sampled flag
    gpt = make_span("chat", tid(4), sid(40), attributes={"gen_ai.request.model": "gpt-4o"})
    limited = make_span("chat", tid(5), sid(50))
    limited.events.add(name="rate_limited", time_unix_nano=limited.start_time_unix_nano)
    gold = make_span("op", tid(6), sid(60), attributes={"tier": "gold"})
    health = make_span("healthcheck", tid(7), sid(70))
    health.flags = 0x301  # would be sampled by trace_flags: the drop wins
    plain = make_span("op", tid(8), sid(80))
    grpc = c.endpoints["receivers::otlp/grpc"]
    export_grpc(grpc, request(*spans[:2], by_state, flagged, gpt))
    export_grpc(grpc, request(spans[2], limited, gold, health, plain))

    assert wait_for(
        lambda: metric(scrape(c.endpoints["telemetry/http"]), DECIDED) == 8, timeout=30
    ), c.output
    assert wait_for(lambda: len(spans_in(read_json_lines(out))) == 8, timeout=10), c.output
    roots = {
        s.trace_id[0]: attrs(s)["sieve.sampling.policy"]
        for s in spans_in(read_json_lines(out))
        if not s.parent_span_id
    }
    assert roots == {
        1: "big",
        2: "by-tracestate",
        3: "upstream-sampled",
        4: "gpt",
        5: "rate-limited",
        6: "gold",
    }
    m = scrape(c.endpoints["telemetry/http"])
    assert metric(m, DECIDED, policy="no-healthchecks", decision="dropped") == 1
    assert metric(m, DECIDED, policy="", decision="not_sampled") == 1
    sampled = "tracesieve_tail_sampling_count_traces_sampled_total"
    assert metric(m, sampled, policy="tiny-budget", sampled="true") == 0
    # every policy sees every trace (no sample_on_first_match), but for the one dropped
    assert metric(m, sampled, policy="tiny-budget", sampled="false") == 7


def test_bad_policies_are_each_named_with_their_path_and_exit_2(tmp_path):
    import yaml

    cfg = base(str(tmp_path / "out.jsonl"))
    cfg["processors"] = {
        "tail_sampling": {
            "decision_wait": "-1s",
            "num_traces": 0,
            "policies": [
                {"name": "a", "type": "span_count", "span_count": {"min_spans": 9, "max_spans": 2}},
                {"name": "b", "type": "trace_state", "trace_state": {"key": "k", "values": []}},
                {"name": "c", "type": "ottl_condition", "ottl_condition": {"span": ["IsRoot()"]}},
                {
                    "name": "d",
                    "type": "composite",
                    "composite": {
                        "max_total_spans_per_second": 10,
                        "composite_sub_policy": [{"name": "x", "type": "always_sample"}],
                        "rate_allocation": [{"policy": "y", "percent": 10}],
                    },
                },
                {"name": "e", "type": "bytes_limiting", "bytes_limiting": {}},
                {"name": "f", "type": "nope"},
            ],
        }
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    where = "processors::tail_sampling"
    for expected in (
        f"{where}::decision_wait: must not be negative",
        f"{where}::num_traces:",
        f"{where}::policies::0::span_count::max_spans:",
        f"{where}::policies::1::trace_state::values: list at least one value",
        f"{where}::policies::2::ottl_condition::span::0: unsupported function IsRoot",
        f"{where}::policies::3::composite::rate_allocation::0::policy: 'y' is not",
        f"{where}::policies::4::bytes_limiting: object missing required field 'bytes_per_second'",
        f"{where}::policies::5::type: unknown policy type 'nope'",
    ):
        assert expected in res.stderr, (expected, res.stderr)
