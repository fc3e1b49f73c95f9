"""The span index on broken or hostile parent links: loops and very deep nesting must end
(a loop used to make the analyses walk forever; deep nesting overflowed the stack)."""

from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from pipeline.testing import make_span, make_traces
from processors.genai import index_for

TID = b"\x01" * 16
SCOPE = "opentelemetry.instrumentation.openai_v2"


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def call(n: int, parent: int | None, status: int = Status.STATUS_CODE_UNSET) -> Span:
    return make_span(
        "chat gpt-4o",
        TID,
        sid(n),
        b"" if parent is None else sid(parent),
        kind=Span.SPAN_KIND_CLIENT,
        status=status,
        attributes={"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"},
    )


def http(n: int, parent: int, status: int) -> Span:
    return make_span(
        "POST",
        TID,
        sid(n),
        sid(parent),
        kind=Span.SPAN_KIND_CLIENT,
        attributes={"server.address": "api.openai.com", "http.response.status_code": status},
    )


def test_a_span_that_is_its_own_parent_is_a_call_without_parent():
    idx = index_for(make_traces([call(1, 1)], scope=SCOPE))
    (f,) = idx.facts().values()
    (rec,) = f.logical_calls
    assert rec.parent is None and not rec.children
    assert f.providers == {"openai"} and f.models == {"gpt-4o"}


def test_two_calls_each_the_others_parent_are_cut_into_a_tree():
    spans = [call(1, 2), call(2, 1), http(3, 1, 500), http(4, 1, 200)]
    idx = index_for(make_traces(spans, scope=SCOPE))
    (f,) = idx.facts().values()
    a, b = (idx.by_key[TID + sid(n)] for n in (1, 2))
    # exactly one of the two links survives, and the parent/children views agree
    assert (a.parent is b) != (b.parent is a)
    top, below = (a, b) if b.parent is a else (b, a)
    assert top.parent is None and below in (top.children or [])
    assert top not in (below.children or [])
    assert len(f.calls) == 2


def test_a_longer_loop_through_http_spans_ends():
    # call 1 -> http 2 -> call 3 -> http 4 -> back to call 1
    spans = [call(1, 4), http(2, 1, 200), call(3, 2), http(4, 3, 200)]
    idx = index_for(make_traces(spans, scope=SCOPE))
    (f,) = idx.facts().values()
    assert sum(r.parent is None for r in idx.records) == 1
    assert f.providers == {"openai"}


def test_thousands_of_nested_calls_do_not_overflow_the_stack():
    spans = [call(n, n - 1 if n > 1 else None) for n in range(1, 5001)]
    idx = index_for(make_traces(spans, scope=SCOPE))
    (f,) = idx.facts().values()
    assert len(f.calls) == 5000
    assert f.providers == {"openai"} and not f.unrecovered
