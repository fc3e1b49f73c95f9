"""The OTLP decode path under hostile input: protobuf (arbitrary and mutated bytes) and OTLP
JSON. Each body is either rejected with `InvalidTracesError` (a clear message) or
decoded into a batch that every later stage can handle: counted, re-encoded, merged,
split, and written as OTLP JSON."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import otlpjson
from pipeline.otlpwire import frame
from pipeline.pdata import InvalidTracesError, Traces, count_spans
from pipeline.receivers.otlp import decode_protobuf
from tests.fuzz.budget import examples
from tests.fuzz.strategies import json_bodies, protobuf_bodies, requests


def check_usable(t: Traces) -> None:
    n = t.span_count
    assert n == sum(1 for _ in t.spans())
    again = Traces.decode(t.to_bytes())
    assert again.span_count == n
    # the file exporter's JSON and back: nothing is lost or invented (link ids are not
    # checked by the receiver, see id_problem; a wrong-length one cannot be read back)
    try:
        assert count_spans(otlpjson.decode(otlpjson.encode(t.request))) == n
    except InvalidTracesError as exc:
        assert ".links[" in str(exc), exc
    merged = Traces.merge([t, again])
    assert merged.span_count == 2 * n == count_spans(merged.request)
    parts = merged.split(3)
    assert sum(p.span_count for p in parts) == 2 * n
    for p in parts:
        assert Traces.decode(p.to_bytes()).span_count == p.span_count


@settings(max_examples=examples(100))
@given(protobuf_bodies)
def test_protobuf_bodies(body: bytes) -> None:
    try:
        t = decode_protobuf(body)
    except InvalidTracesError as exc:
        assert str(exc).startswith(("cannot decode", "invalid ExportTraceServiceRequest"))
        return
    check_usable(t)


@settings(max_examples=examples(80))
@given(json_bodies)
def test_otlp_json_bodies(body: bytes) -> None:
    try:
        msg = otlpjson.decode(body)
    except InvalidTracesError as exc:
        assert str(exc)  # says what is wrong
        return
    check_usable(Traces(msg))


@settings(max_examples=examples(40))
@given(requests())
def test_hostile_but_wellformed_requests_round_trip(req) -> None:  # type: ignore[no-untyped-def]
    raw = req.SerializeToString()
    try:
        t = decode_protobuf(raw)
    except InvalidTracesError as exc:
        assert "must be" in str(exc)  # an id of the wrong length, and which one
        return
    assert t.request == req
    check_usable(t)


@given(st.integers(1, 3000), st.sampled_from([b"\x0a", b"\x12", b"\x2a"]))
@settings(max_examples=examples(20))
def test_deep_wire_nesting_is_refused(depth: int, tag: bytes) -> None:
    """Length-delimited fields nested `depth` deep (deeper than any real span)."""
    body = b"x"
    for _ in range(depth):
        body = frame(tag, body)
    try:
        t = decode_protobuf(body)
    except InvalidTracesError:
        return
    check_usable(t)


def test_json_nesting_bombs_are_refused() -> None:
    for body in (b"[" * 100_000, b'{"resourceSpans":' + b"[" * 5000 + b"]" * 5000 + b"}"):
        try:
            otlpjson.decode(body)
        except InvalidTracesError as exc:
            assert "nested too deeply" in str(exc) or "invalid" in str(exc)
        else:
            raise AssertionError("decoded a nesting bomb")
