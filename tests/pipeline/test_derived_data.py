"""Derived data a batch carries (`pipeline.pdata`: the span scan, the trace index with each
trace's release, trace facts, the GenAI index) is dropped only by the changes that make it
wrong. End to end through the CLI: a processor that edits attributes, placed between
`groupbytrace` and `cleanliness` (and between `cleanliness` and `tail_sampling`), or a
`batch` that merges batches there, changes neither the classes nor the sampling decisions,
late fragments included."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Span, Tracer

from pipeline.testing import attrs, metric, read_json_lines, scrape, spans_in, wait_for
from tests.sdk_spans import llm

PIPELINES = {
    "traces/plain": ["groupbytrace", "cleanliness", "tail_sampling"],
    "traces/edited": [
        "groupbytrace",
        "attributes",
        "cleanliness",
        "attributes/after",
        "tail_sampling",
    ],
    # late fragments that come together are merged into one batch
    "traces/batched": ["groupbytrace", "batch", "cleanliness", "tail_sampling"],
}


def config(files: dict[str, str]) -> dict[str, Any]:
    by_class = {"clean": 0, "noisy": "keep", "corrupted": "keep", "failed": "keep"}
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {
            "groupbytrace": {"wait_duration": "5s", "wait_duration_after_root": "50ms"},
            "attributes": {
                "actions": [{"key": "deployment.environment", "value": "test", "action": "upsert"}]
            },
            "attributes/after": {
                "actions": [{"key": "cloud.region", "value": "eu-west-1", "action": "insert"}]
            },
            "batch": {"timeout": "200ms"},
            "cleanliness": {},
            "tail_sampling": {
                "policies": [
                    {"name": "not-clean", "type": "cleanliness", "cleanliness": by_class},
                    {"name": "clean", "type": "cleanliness", "cleanliness": {"clean": "keep"}},
                ]
            },
        },
        "exporters": {
            f"file/{p.split('/')[1]}": {"path": path, "flush_interval": 0}
            for p, path in files.items()
        },
        "service": {
            "pipelines": {
                p: {
                    "receivers": ["otlp"],
                    "processors": procs,
                    "exporters": [f"file/{p.split('/')[1]}"],
                }
                for p, procs in PIPELINES.items()
            },
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


def tool(tracer: Tracer, name: str) -> None:
    with tracer.start_as_current_span(
        f"execute_tool {name}",
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.result": '{"results": []}',
        },
    ):
        pass


def agent(tracer: Tracer, name: str, body: Any) -> Span:
    with tracer.start_as_current_span(
        f"invoke_workflow {name}", attributes={"gen_ai.operation.name": "invoke_workflow"}
    ) as root:
        body()
    return root


def sieve(span: Any) -> dict[str, Any]:
    return {k: v for k, v in attrs(span).items() if k.startswith("sieve.")}


def test_an_edit_or_a_merge_before_cleanliness_changes_no_class_or_decision(
    tmp_path, collector_factory
):
    files = {p: str(tmp_path / f"{p.split('/')[1]}.jsonl") for p in PIPELINES}
    c = collector_factory(config(files))
    provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=c.endpoints["receivers::otlp/grpc"], insecure=True)
        )
    )
    tracer = provider.get_tracer("derived-data")

    def exported(path: str) -> list[Any]:
        return spans_in(read_json_lines(path))

    # a noisy trace (a retried LLM call) and a clean one, each released once its root is in
    noisy = agent(tracer, "noisy", lambda: (llm(tracer, fail=True), llm(tracer)))
    clean = agent(tracer, "clean", lambda: (llm(tracer), tool(tracer, "web_search")))
    assert wait_for(lambda: all(len(exported(f)) == 6 for f in files.values()))
    # late fragments: spans of each trace that end after it was released; alone, the
    # noisy trace's would be clean and the clean trace's noisy
    with trace.use_span(noisy, end_on_exit=False):
        tool(tracer, "calculator")
    with trace.use_span(clean, end_on_exit=False):
        llm(tracer, fail=True)
        llm(tracer)
    provider.shutdown()
    assert wait_for(lambda: all(len(exported(f)) == 9 for f in files.values()))

    noisy_id = noisy.get_span_context().trace_id.to_bytes(16, "big")
    got = {}
    for p, path in files.items():
        # what cleanliness and tail_sampling wrote: on the root of each trace, and on
        # every span of each late fragment (it has no root)
        written = {(s.name, s.span_id.hex()): sieve(s) for s in exported(path) if sieve(s)}
        assert len(written) == 2 + 3, (p, written)
        for (name, _), a in written.items():
            cls = "noisy" if name.endswith("noisy") or name.endswith("calculator") else "clean"
            assert a["sieve.trace.class"] == cls, (p, name, a)
            assert a["sieve.sampling.policy"] == ("not-clean" if cls == "noisy" else "clean")
        got[p] = written
    assert got["traces/edited"] == got["traces/plain"] == got["traces/batched"]
    assert {s.trace_id for s in exported(files["traces/plain"])} == {
        noisy_id,
        clean.get_span_context().trace_id.to_bytes(16, "big"),
    }
    m = scrape(c.endpoints["telemetry/http"])
    for p in PIPELINES:
        # the fragments (two or three: spans that come together are one) were taken as
        # late, and given their trace's result
        late = "tracesieve_cleanliness_late_fragments_total"
        assert metric(m, late, pipeline=p, cached="true") >= 2
        assert metric(m, late, pipeline=p, cached="false") == 0
        assert metric(m, "tracesieve_tail_sampling_late_spans_total", pipeline=p) == 3
