"""Wire-level splitting of encoded requests: by trace and by size, nothing lost or changed."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline import wiresplit
from pipeline.pdata import InvalidTracesError
from pipeline.testing import kv, make_span

TRACE_IDS = [bytes([i]) * 16 for i in range(1, 6)]


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    n = 0
    for r in range(draw(st.integers(1, 3))):
        rs = req.resource_spans.add()
        rs.resource.attributes.append(kv("service.name", f"svc-{r}"))
        if draw(st.booleans()):
            rs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
        for s in range(draw(st.integers(0, 3))):
            ss = rs.scope_spans.add()
            ss.scope.name = f"scope-{s}"
            ss.scope.version = "1.0"
            for _ in range(draw(st.integers(0, 8))):
                n += 1
                span = make_span(
                    f"span-{n}",
                    draw(st.sampled_from([*TRACE_IDS, b""])),
                    n.to_bytes(8, "big"),
                    attributes={"payload": "x" * draw(st.integers(0, 3000))},
                )
                ss.spans.append(span)
    return req


def spans(req: ExportTraceServiceRequest) -> list[tuple[str, str, bytes]]:
    """(resource service name, scope name, span bytes) of every span."""
    return [
        (rs.resource.attributes[0].value.string_value, ss.scope.name, s.SerializeToString())
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]


@settings(max_examples=60, deadline=None)
@given(requests())
def test_split_by_trace_keeps_every_span_with_its_resource_and_scope(req):
    raw = req.SerializeToString()
    refs = wiresplit.parse(raw)
    assert len(refs) == len(spans(req))
    assert spans(ExportTraceServiceRequest.FromString(wiresplit.build(refs))) == spans(req)
    out: list[tuple[str, str, bytes]] = []
    for tid, group in wiresplit.by_trace(refs).items():
        part = ExportTraceServiceRequest.FromString(wiresplit.build(group))
        assert {
            s.trace_id for r in part.resource_spans for ss in r.scope_spans for s in ss.spans
        } == {tid}
        for rs in part.resource_spans:  # resource and scope come along intact
            orig = next(r for r in req.resource_spans if r.resource == rs.resource)
            assert rs.schema_url == orig.schema_url
        out += spans(part)
    assert Counter(out) == Counter(spans(req))


@settings(max_examples=60, deadline=None)
@given(requests(), st.integers(300, 20_000))
def test_chunk_respects_the_budget(req, budget):
    refs = wiresplit.parse(req.SerializeToString())
    parts, oversized = wiresplit.chunk(refs, budget)
    out: list[tuple[str, str, bytes]] = []
    for p in parts:
        encoded = wiresplit.build(p)
        assert len(encoded) <= wiresplit.size_bound(p) <= budget
        out += spans(ExportTraceServiceRequest.FromString(encoded))
    for ref in oversized:  # only spans that could not fit on their own are left out
        assert wiresplit.size_bound([ref]) > budget
    expected = Counter(spans(req))
    got = Counter(out)
    assert not got - expected
    assert sum(got.values()) + len(oversized) == sum(expected.values())


def test_trace_id_found_wherever_the_encoder_put_it():
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="late")
    body = span.SerializeToString()
    # move trace_id (field 1) after the other fields
    tid_field = b"\x0a\x10" + b"\x01" * 16
    assert body.startswith(tid_field)
    reordered = body[len(tid_field) :] + tid_field
    assert Span.FromString(reordered) == span
    req = b"\x0a" + bytes([len(reordered) + 4]) + b"\x12" + bytes([len(reordered) + 2])
    req += b"\x12" + bytes([len(reordered)]) + reordered
    refs = wiresplit.parse(req)
    assert [r[2] for r in refs] == [b"\x01" * 16]


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_malformed_framing_is_an_error(cut):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.scope_spans.add().spans.append(make_span("s", b"\x01" * 16, b"\x02" * 8))
    raw = req.SerializeToString()
    with pytest.raises(InvalidTracesError):
        wiresplit.parse(raw[:-cut])
