"""The official OpenTelemetry SDK exporters send to a collector (in the test's event loop:
no process boundary is under test here); every span arrives in the file exporter intact.

Transports: the OTLP gRPC exporter, the OTLP/HTTP protobuf exporter, and the official
OTLP/HTTP JSON exporter (`opentelemetry-exporter-otlp-json-http`). What arrives is
compared, span by span, with the SDK's own OTLP encoding of the same spans.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from pipeline.testing import read_json_lines, spans_in, until


def collector_config(out: str) -> dict[str, Any]:
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


def make_exporter(kind: str, c: Any) -> SpanExporter:
    if kind == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=c.endpoints["receivers::otlp/grpc"], insecure=True)
    url = f"http://{c.endpoints['receivers::otlp/http']}/v1/traces"
    if kind == "http-proto":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as H

        return H(endpoint=url, compression=Compression.Gzip)
    from opentelemetry.exporter.otlp.common.http import Compression as JC
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as J

    return J(
        endpoint=url,
        compression={"http-json": JC.NONE, "http-json-gzip": JC.GZIP}.get(kind, JC.DEFLATE),
    )


class Recorder(SpanExporter):
    """Keeps what the SDK finished, to compare with what arrives."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def emit(tracer: Any) -> None:
    """Spans exercising every field: kinds, statuses, events, links, typed attributes."""
    attrs = {
        "a.str": "x",
        "a.int": 7,
        "a.neg": -(2**62),
        "a.float": 0.25,
        "a.bool": True,
        "a.strs": ["p", "q"],
        "a.ints": [1, 2],
        "a.floats": [1.5, -2.0],
        "a.bools": [True, False],
        "unicode.ключ": "значение ✓",
    }
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes=attrs) as root:
        root.add_event("started", {"ev.key": "v", "ev.n": 3}, timestamp=1_700_000_000_123_456_789)
        root.add_event("no-attrs")
        ctx = root.get_span_context()
        with tracer.start_as_current_span(
            "child",
            kind=SpanKind.CLIENT,
            links=[Link(ctx, {"link.attr": True})],
        ) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
            child.record_exception(ValueError("bad value"))
        with tracer.start_as_current_span("ok", kind=SpanKind.PRODUCER) as ok:
            ok.set_status(Status(StatusCode.OK))
        for kind in (SpanKind.CONSUMER, SpanKind.INTERNAL):
            with tracer.start_as_current_span(f"k-{kind.name}", kind=kind):
                pass
    # a second trace, continuing a remote parent that carries a trace state
    remote = SpanContext(
        ctx.trace_id ^ 1, 0x1234, True, TraceFlags(1), trace_state=TraceState([("vendor", "v1")])
    )
    parent = set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span("second", context=parent, links=[Link(remote)]):
        pass


@pytest.mark.parametrize(
    "kind", ["grpc", "http-proto", "http-json", "http-json-gzip", "http-json-deflate"]
)
async def test_sdk_spans_arrive_intact(tmp_path, service_factory, kind):
    out = str(tmp_path / "out.jsonl")
    c = await service_factory(collector_config(out))
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"svc-{kind}", "deployment.environment": "t"})
    )
    recorder = Recorder()
    provider.add_span_processor(SimpleSpanProcessor(make_exporter(kind, c)))
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    tracer = provider.get_tracer("e2e", "1.2.3", schema_url="https://opentelemetry.io/schemas/1")

    def run_app() -> None:  # the SDK exports synchronously: off the collector's loop
        emit(tracer)
        provider.shutdown()

    await asyncio.to_thread(run_app)
    n = len(recorder.spans)
    assert n == 6

    assert await until(lambda: len(spans_in(read_json_lines(out))) >= n)
    got_reqs = read_json_lines(out)
    want = encode_spans(recorder.spans)  # the SDK's own OTLP encoding
    assert_same_spans(want, got_reqs)


def key(s: PbSpan) -> bytes:
    return s.trace_id + s.span_id


def assert_same_spans(
    want: ExportTraceServiceRequest, got_reqs: list[ExportTraceServiceRequest]
) -> None:
    """Every span, its resource and scope arrive unchanged, and nothing else."""
    want_by = {
        key(s): (rs.resource, ss.scope, rs.schema_url, ss.schema_url, s)
        for rs in want.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    }
    got_by = {
        key(s): (rs.resource, ss.scope, rs.schema_url, ss.schema_url, s)
        for r in got_reqs
        for rs in r.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    }
    assert sum(1 for _ in spans_in(got_reqs)) == len(got_by), "a span arrived twice"
    assert set(got_by) == set(want_by)
    for k, (w_res, w_scope, w_rurl, w_surl, w_span) in want_by.items():
        g_res, g_scope, g_rurl, g_surl, g_span = got_by[k]
        assert g_span == w_span, f"span {w_span.name} differs:\n{g_span}\nvs\n{w_span}"
        assert g_res == w_res and g_scope == w_scope
        assert (g_rurl, g_surl) == (w_rurl, w_surl)
    # a few facts spelled out, so a broken comparison cannot pass silently
    spans = {s.name: s for s in spans_in(got_reqs)}
    root, child = spans["root"], spans["child"]
    assert child.parent_span_id == root.span_id and len(root.trace_id) == 16
    assert child.status.code == 2 and child.status.message == "boom"
    assert child.events[0].name == "exception"
    assert root.events[0].time_unix_nano == 1_700_000_000_123_456_789
    assert child.links[0].span_id == root.span_id
    second = spans["second"]
    assert second.trace_state == "vendor=v1" and second.parent_span_id == (0x1234).to_bytes(
        8, "big"
    )
    assert second.flags & 0x300 == 0x300  # parent is remote
