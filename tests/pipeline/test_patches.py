"""Several processors patching one span: their patches add up in order, drops unite."""

from __future__ import annotations

from pipeline.testing import attrs, make_span, make_traces
from processors.genai.write import attr_str

TID, SID = b"\x01" * 16, b"\x02" * 8


def test_patches_of_one_span_append_in_order_and_their_drops_add_up():
    t = make_traces(
        [
            make_span("chat", TID, SID, attributes={"k1": "a", "k2": "b", "k3": "c"}),
            make_span("other", TID, b"\x03" * 8, attributes={"k1": "kept"}),
        ]
    )
    base = t.base
    start = [s[9] for s in t.scan()]
    t.patch_all(base, [(start[0], attr_str("sieve.a", "1"), frozenset({"k1"}))])
    t.patch_all(base, [(start[0], attr_str("sieve.b", "2"), None)])
    t.patch_all(
        base,
        [
            (start[0], attr_str("sieve.c", "3"), frozenset({"k2"})),
            (start[1], attr_str("sieve.d", "4"), None),
        ],
    )
    first, second = t.request.resource_spans[0].scope_spans[0].spans
    assert list(attrs(first).items()) == [
        ("k3", "c"),
        ("sieve.a", "1"),
        ("sieve.b", "2"),
        ("sieve.c", "3"),
    ]
    assert attrs(second) == {"k1": "kept", "sieve.d": "4"}
