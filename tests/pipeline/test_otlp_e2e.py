"""The official OpenTelemetry SDK exporters (gRPC, HTTP) send to a collector started
through the CLI; every span arrives in the file exporter intact."""

from __future__ import annotations

import os

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from pipeline.testing import read_json_lines, spans_in, wait_for


def collector_config(out: str) -> dict:
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0"},
                    "http": {"endpoint": "127.0.0.1:0"},
                }
            }
        },
        "processors": {"batch": {"timeout": "50ms"}},
        "exporters": {"file": {"path": out, "flush_interval": 0}},
        "service": {
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["file"]}
            },
            "telemetry": {"metrics": {"level": "none"}},
        },
    }


def make_exporter(kind: str, c) -> object:
    if kind == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=c.endpoints["receivers::otlp/grpc"], insecure=True)
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as H

    return H(
        endpoint=f"http://{c.endpoints['receivers::otlp/http']}/v1/traces",
        compression=Compression.Gzip,
    )


@pytest.mark.parametrize("kind", ["grpc", "http"])
def test_sdk_spans_arrive_intact(tmp_path, collector_factory, kind):
    out = str(tmp_path / "out.jsonl")
    c = collector_factory(collector_config(out))
    provider = TracerProvider(resource=Resource.create({"service.name": f"svc-{kind}"}))
    provider.add_span_processor(SimpleSpanProcessor(make_exporter(kind, c)))
    tracer = provider.get_tracer("e2e", "1.2.3")
    sent = {}
    with tracer.start_as_current_span(
        "root", kind=SpanKind.SERVER, attributes={"a.str": "x", "a.int": 7, "a.list": [1, 2]}
    ) as root:
        root.add_event("started", {"ev.key": "v"})
        ctx = root.get_span_context()
        with tracer.start_as_current_span("child", links=[Link(ctx, {"link.attr": True})]) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
            sent["child"] = child
        sent["root"] = root
    provider.shutdown()

    assert wait_for(lambda: len(spans_in(read_json_lines(out))) >= 2)
    reqs = read_json_lines(out)
    spans = {s.name: s for s in spans_in(reqs)}
    assert set(spans) == {"root", "child"}
    res_attrs = {
        kv.key: kv.value.string_value for kv in reqs[0].resource_spans[0].resource.attributes
    }
    assert res_attrs["service.name"] == f"svc-{kind}"
    assert reqs[0].resource_spans[0].scope_spans[0].scope.version == "1.2.3"
    for name, sdk_span in sent.items():
        got = spans[name]
        sc = sdk_span.get_span_context()
        assert got.trace_id == sc.trace_id.to_bytes(16, "big")
        assert got.span_id == sc.span_id.to_bytes(8, "big")
        assert got.start_time_unix_nano == sdk_span.start_time
        assert got.end_time_unix_nano == sdk_span.end_time
    root, child = spans["root"], spans["child"]
    assert child.parent_span_id == root.span_id
    assert root.kind == 2  # SERVER
    attrs = {kv.key: kv.value for kv in root.attributes}
    assert attrs["a.str"].string_value == "x" and attrs["a.int"].int_value == 7
    assert [v.int_value for v in attrs["a.list"].array_value.values] == [1, 2]
    assert root.events[0].name == "started" and root.events[0].attributes[0].key == "ev.key"
    assert child.status.code == 2 and child.status.message == "boom"
    assert (
        child.links[0].span_id == root.span_id and child.links[0].attributes[0].key == "link.attr"
    )
    assert os.path.getsize(out) > 0
