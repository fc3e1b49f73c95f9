"""cleanliness through the real CLI: spans from the OTel SDK's OTLP/gRPC exporter ->
otlp receiver -> groupbytrace -> cleanliness -> routing (clean / rest) -> file exporters,
with tool schemas from a directory, classes read back from the files and counted on
/metrics."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode, Tracer

from pipeline.testing import attrs, metric, read_json_lines, scrape, spans_in, wait_for
from tests.sdk_spans import llm

WEB_SEARCH = {
    "type": "object",
    "required": ["results"],
    "properties": {"results": {"type": "array"}},
}


def config(clean: str, rest: str, schemas: str) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {
            "groupbytrace": {"wait_duration": "2s", "wait_duration_after_root": "100ms"},
            "cleanliness": {"tool_schemas": schemas},
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
                    "processors": ["groupbytrace", "cleanliness"],
                    "exporters": ["routing"],
                },
                "traces/clean": {"receivers": ["routing"], "exporters": ["file/clean"]},
                "traces/rest": {"receivers": ["routing"], "exporters": ["file/rest"]},
            },
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


def tool(tracer: Tracer, result: Any = None, *, fail: bool = False) -> None:
    with tracer.start_as_current_span(
        "execute_tool web_search",
        attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "web_search"},
    ) as span:
        if fail:
            span.set_status(Status(StatusCode.ERROR, "tool failed"))
        else:
            span.set_attribute("gen_ai.tool.call.result", json.dumps(result or {"results": []}))


def test_sdk_traces_classified_and_routed_through_the_cli(tmp_path, collector_factory):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "web_search.json").write_text(json.dumps(WEB_SEARCH))
    clean, rest = str(tmp_path / "clean.jsonl"), str(tmp_path / "rest.jsonl")
    c = collector_factory(config(clean, rest, str(schemas)))

    provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=c.endpoints["receivers::otlp/grpc"], insecure=True)
        )
    )
    tracer = provider.get_tracer("agent-app")
    sent: dict[str, int] = {}

    def task(name: str) -> Any:
        return tracer.start_as_current_span(
            f"invoke_workflow {name}", attributes={"task.class": "research"}
        )

    with task("clean") as root:
        llm(tracer)
        tool(tracer, {"results": [{"title": "a"}]})
        llm(tracer)
        sent["clean"] = root.get_span_context().trace_id
    with task("retried") as root:
        llm(tracer, fail=True)
        llm(tracer)
        sent["retried"] = root.get_span_context().trace_id
    with task("bad_result") as root:
        llm(tracer)
        tool(tracer, {"hits": 3})
        sent["bad_result"] = root.get_span_context().trace_id
    with task("swallowed") as root:
        llm(tracer)
        tool(tracer, fail=True)
        llm(tracer)
        sent["swallowed"] = root.get_span_context().trace_id
    with task("failed") as root:
        llm(tracer)
        root.set_status(Status(StatusCode.ERROR, "task failed"))
        sent["failed"] = root.get_span_context().trace_id
    provider.shutdown()

    def roots() -> dict[int, dict[str, Any]]:
        out = {}
        for path in (clean, rest):
            for s in spans_in(read_json_lines(path)):
                if not s.parent_span_id:
                    out[int.from_bytes(s.trace_id, "big")] = {**attrs(s), "_file": path}
        return out

    assert wait_for(lambda: len(roots()) == len(sent), timeout=30), c.output
    got = roots()
    expected = {
        "clean": ("clean", [], clean),
        "retried": ("noisy", ["llm_retry"], rest),
        "bad_result": ("corrupted", ["tool_schema_invalid"], rest),
        "swallowed": ("corrupted", ["swallowed_error"], rest),
        "failed": ("failed", [], rest),
    }
    for name, (cls, reasons, path) in expected.items():
        a = got[sent[name]]
        assert (a["sieve.trace.class"], a["sieve.trace.reasons"], a["_file"]) == (
            cls,
            reasons,
            path,
        ), name
        assert a["sieve.trace.providers"] == ["openai"]
        assert a["sieve.trace.models"] == ["gpt-4o"]
        assert a["task.class"] == "research"  # source attributes stay
    # the clean trace went whole to the clean file, nothing else did
    clean_spans = spans_in(read_json_lines(clean))
    assert {s.trace_id for s in clean_spans} == {sent["clean"].to_bytes(16, "big")}
    assert len(clean_spans) == 4

    m = scrape(c.endpoints["telemetry/http"])
    assert metric(m, "tracesieve_cleanliness_traces_total", **{"class": "corrupted"}) == 2
    assert metric(m, "tracesieve_cleanliness_traces_total", **{"class": "clean"}) == 1
    assert metric(m, "tracesieve_cleanliness_reasons_total", reason="llm_retry") == 1


def test_traces_pending_at_shutdown_are_classified_on_what_arrived(tmp_path, collector_factory):
    """A trace still held by groupbytrace when the collector stops is released and
    classified; without its root span, every span that arrived carries the verdict."""
    out = str(tmp_path / "out.jsonl")
    c = collector_factory(
        {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
            "processors": {"groupbytrace": {"wait_duration": "10m"}, "cleanliness": {}},
            "exporters": {"file": {"path": out, "flush_interval": 0}},
            "service": {
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["groupbytrace", "cleanliness"],
                        "exporters": ["file"],
                    }
                },
                "telemetry": {"metrics": {"level": "none"}},
            },
        }
    )
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=c.endpoints["receivers::otlp/grpc"], insecure=True)
        )
    )
    tracer = provider.get_tracer("agent-app")
    # the root span lives in another process and has not been exported
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span(
        "step", context=set_span_in_context(NonRecordingSpan(remote))
    ):
        llm(tracer, fail=True)
        llm(tracer)
        tool(tracer, fail=True)
    provider.shutdown()
    assert not spans_in(read_json_lines(out))  # held: the trace is not complete
    assert c.stop() == 0
    spans = spans_in(read_json_lines(out))
    assert len(spans) == 4
    for s in spans:
        a = attrs(s)
        assert a["sieve.trace.class"] == "corrupted"
        assert a["sieve.trace.reasons"] == ["llm_retry", "swallowed_error"]
