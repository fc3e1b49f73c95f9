"""pipeline.wirescan's `ranges` and `unflatten` (where a span's content is, and its
flattened attributes grouped by index), in C and in Python: on generator spans that carry
conversations in every convention, with protobuf's decoding as the truth; on hand-built
keys at the edges of the `<prefix><N>.<rest>` form; and on malformed or truncated bytes,
which both refuse with WireError (never a crash), the same way."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from benchmarks.generator import FaultRates, Generator, batches
from pipeline import wirescan as w
from pipeline.wholetraces import plain
from tests.pipeline.wirescan_truth import ld, pb_spans

needs_c = pytest.mark.skipif(
    not w.NATIVE, reason="pipeline._wirescan was not built: nothing to compare with"
)
RANGES = [w._py_ranges] + ([w.ranges] if w.NATIVE else [])
UNFLATTEN = [w._py_unflatten] + ([w.unflatten] if w.NATIVE else [])
IDS = ["python", "c"][: len(RANGES)]

ATTR_PREFIXES = (
    b"gen_ai.input.messages",
    b"gen_ai.output.messages",
    b"llm.input_messages.",
    b"llm.output_messages.",
    b"gen_ai.prompt.",
    b"gen_ai.completion.",
    b"",
)
EVENT_PREFIXES = (b"gen_ai.choice", b"gen_ai.user.message", b"gen_ai.client.", b"")
FLAT_PREFIXES = (
    b"llm.input_messages.",
    b"llm.output_messages.",
    b"llm.tools.",
    b"gen_ai.prompt.",
    b"gen_ai.completion.",
    b"llm.request.functions.",
    b"",
)
UNSET = object()


def _outcome(f: Any, *args: Any) -> Any:
    try:
        return ("ok", f(*args))
    except (w.WireError, IndexError, TypeError) as exc:
        return (type(exc).__name__,)


@pytest.fixture(scope="module")
def spans() -> list[tuple[bytes, int, int, Span]]:
    """(request bytes, span body start, end, the span as protobuf decodes it)."""
    gen = Generator(5, rates=FaultRates(), content=True)
    out = []
    for req, _ in batches(gen.traces(40), 8):
        raw = req.SerializeToString()
        infos = w.spans(raw)
        pbs = [s for _, s in pb_spans(req)]
        assert len(infos) == len(pbs)
        out += [(raw, i[9], i[10], s) for i, s in zip(infos, pbs, strict=True)]
    return out


def _truth_unflatten(span: Span, prefixes: tuple[bytes, ...], unset: Any) -> list[Any]:
    """`unflatten` from protobuf's decoding: each attribute with a non-empty key, in
    order, through `put_flat`."""
    out: list[Any] = [{} for _ in prefixes]
    for kv in span.attributes:
        key = kv.key.encode()
        value = plain(kv.value) if kv.value.WhichOneof("value") else unset
        for i, p in enumerate(prefixes):
            if key and key.startswith(p):
                w.put_flat(out[i], key[len(p) :], value)
    return out


@pytest.mark.parametrize("unflatten", UNFLATTEN, ids=IDS)
def test_unflatten_of_generator_spans_is_protobufs(unflatten: Any, spans: Any) -> None:
    grouped = 0
    for raw, b0, b1, span in spans:
        got = unflatten(raw, b0, b1, FLAT_PREFIXES, UNSET)
        assert got == _truth_unflatten(span, FLAT_PREFIXES, UNSET)
        grouped += sum(1 for d in got[:6] for rec in d.values() if rec[1])
    assert grouped, "no span had tool calls or content parts: the groups went untested"


@pytest.mark.parametrize("ranges", RANGES, ids=IDS)
def test_ranges_of_generator_spans_hold_exactly_the_first_to_the_last(
    ranges: Any, spans: Any
) -> None:
    """Per prefix: None when no attribute (event) has it; else the bytes from the first
    such field to the end of the last, which parse as whole fields."""
    found = [0] * (len(ATTR_PREFIXES) + len(EVENT_PREFIXES))
    for raw, b0, b1, span in spans:
        got = ranges(raw, b0, b1, ATTR_PREFIXES, EVENT_PREFIXES)
        assert len(got) == len(found)
        keys = [kv.key.encode() for kv in span.attributes]
        names = [ev.name.encode() for ev in span.events]
        for i, r in enumerate(got):
            attrs = i < len(ATTR_PREFIXES)
            p = ATTR_PREFIXES[i] if attrs else EVENT_PREFIXES[i - len(ATTR_PREFIXES)]
            field = 9 if attrs else 11
            matching = [k for k in (keys if attrs else names) if k.startswith(p)]
            if not matching:
                assert r is None
                continue
            found[i] += 1
            assert r is not None and b0 <= r[0] < r[1] <= b1
            inside = [(k, v0, v1) for k, _, v0, v1 in w._fields(raw, r[0], r[1])]
            wanted = [(v0, v1) for k, v0, v1 in inside if k == (field << 3 | 2)]
            first, last = wanted[0], wanted[-1]
            name_tag = 0x0A if attrs else 0x12
            for v0, v1 in (first, last):
                assert w._last_str_bytes(raw, v0, v1, name_tag).startswith(p)
            assert last[1] == r[1]
            n_in = sum(
                1 for v0, v1 in wanted if w._last_str_bytes(raw, v0, v1, name_tag).startswith(p)
            )
            assert n_in == len(matching)  # every match is inside
    assert all(found), f"some prefix never matched a generator span: {found}"


@needs_c
def test_c_and_python_agree_on_generator_spans(spans: Any) -> None:
    for raw, b0, b1, _ in spans:
        assert w.ranges(raw, b0, b1, ATTR_PREFIXES, EVENT_PREFIXES) == w._py_ranges(
            raw, b0, b1, ATTR_PREFIXES, EVENT_PREFIXES
        )
        assert w.unflatten(raw, b0, b1, FLAT_PREFIXES, None) == w._py_unflatten(
            raw, b0, b1, FLAT_PREFIXES, None
        )


# -- hand-built keys --------------------------------------------------------------------


def _attr(key: bytes | None, value: bytes | None = None) -> bytes:
    """An attribute field: a KeyValue with `key` (None: no key field) and a string value
    (None: no value field)."""
    body = (ld(1, key) if key is not None else b"") + (
        ld(2, ld(1, value)) if value is not None else b""
    )
    return ld(9, body)


def _event(name: bytes) -> bytes:
    return ld(11, ld(2, name))


EDGE = [
    (b"llm.input_messages.message.role", b"no index"),
    (b"llm.input_messages.x1.message.role", b"not digits"),
    (b"llm.input_messages.1x.message.role", b"digits then text"),
    (b"llm.input_messages.0", b"no dot after the index"),
    (b"llm.input_messages.0.", b"empty rest"),
    (b"llm.input_messages.1234567890123456789.message.role", b"19 digits"),
    (b"llm.input_messages.123456789012345678.message.role", b"18 digits"),
    (b"", b"empty key"),
    (None, b"no key field"),
    (b"llm.input_messages.0.message.role", b"user"),
    (b"llm.input_messages.0.message.role", b"user again"),  # repeated: the last stays
    (b"llm.input_messages.1.message.tool_calls.0.tool_call.id", b"call_1"),
    (b"llm.input_messages.1.message.tool_calls.0.tool_call.function.name", b"f"),
    (b"llm.input_messages.1.message.tool_calls.1.tool_call.function.arguments", b"{}"),
    (b"llm.input_messages.1.message.tool_calls.2.", b"group, empty rest"),
    (b"llm.input_messages.1.message.tool_calls.3", b"group, nothing after"),
    (b"llm.input_messages.1..5.x", b"empty segment before the group index"),
    (b"llm.input_messages.2.5.x", b"index right after N: a field"),
    (b"llm.input_messages.2.a.05.b.7.c", b"first all-digit segment wins"),
    (b"llm.input_messages.3.m\xc3\xa9ssage.role", b"non-ASCII"),
    (b"llm.input_messages.02.message.role", b"leading zero"),
    (b"llm.output_messages.0.message.content", b"hi"),
]


def _edge_span() -> bytes:
    body = b"".join(_attr(k, v) for k, v in EDGE)
    body += _attr(b"llm.input_messages.4.message.role")  # no value: unset
    body += _event(b"gen_ai.choice") + _event(b"other") + _event(b"gen_ai.choice")
    return body


@pytest.mark.parametrize("unflatten", UNFLATTEN, ids=IDS)
def test_unflatten_edge_keys(unflatten: Any) -> None:
    raw = b"pad" + _edge_span()
    ins, outs, everything = unflatten(
        raw, 3, len(raw), (b"llm.input_messages.", b"llm.output_messages.", b""), UNSET
    )
    assert ins == {
        0: ({"message.role": "user again", "": "empty rest"}, {}),
        1: (
            {
                # nothing after the group's index, or no text before it: fields
                "message.tool_calls.2.": "group, empty rest",
                "message.tool_calls.3": "group, nothing after",
                ".5.x": "empty segment before the group index",
            },
            {
                "message.tool_calls": {
                    0: {"tool_call.id": "call_1", "tool_call.function.name": "f"},
                    1: {"tool_call.function.arguments": "{}"},
                },
            },
        ),
        2: (
            {"5.x": "index right after N: a field", "message.role": "leading zero"},
            {"a": {5: {"b.7.c": "first all-digit segment wins"}}},
        ),
        123456789012345678: ({"message.role": "18 digits"}, {}),
        3: ({"m\u00e9ssage.role": "non-ASCII"}, {}),
        4: ({"message.role": UNSET}, {}),
    }
    assert outs == {0: ({"message.content": "hi"}, {})}
    assert everything == {}  # no key is all digits before its first dot


@pytest.mark.parametrize("ranges", RANGES, ids=IDS)
def test_ranges_edge_keys(ranges: Any) -> None:
    raw = b"pad" + _edge_span()
    got = ranges(
        raw,
        3,
        len(raw),
        (b"llm.input_messages.", b"llm.output_messages.", b"", b"nope"),
        (b"gen_ai.choice", b"", b"nope"),
    )
    fields = w._fields(raw, 3, len(raw))
    attrs = [f for f in fields if f[0] == 0x4A]
    events = [f for f in fields if f[0] == 0x5A]
    assert got == [
        (attrs[0][1], attrs[-1][3]),  # the first attribute has the prefix, and the last
        (attrs[21][1], attrs[21][3]),  # the output message alone
        (attrs[0][1], attrs[-1][3]),  # "" : every attribute, the keyless one too
        None,
        (events[0][1], events[-1][3]),  # the choices, "other" between them
        (events[0][1], events[-1][3]),
        None,
    ]


@needs_c
def test_c_and_python_agree_on_every_prefix_of_the_edge_keys() -> None:
    raw = _edge_span()
    for k, _ in EDGE:
        if not k:
            continue
        for cut in range(len(k) + 1):
            p = (k[:cut],)
            assert w.unflatten(raw, 0, len(raw), p, None) == w._py_unflatten(
                raw, 0, len(raw), p, None
            )
            assert w.ranges(raw, 0, len(raw), p, p) == w._py_ranges(raw, 0, len(raw), p, p)


# -- malformed input --------------------------------------------------------------------


def _both(name: str, *args: Any) -> list[Any]:
    fs = [getattr(w, f"_py_{name}")] + ([getattr(w, name)] if w.NATIVE else [])
    return [_outcome(f, *args) for f in fs]


def test_truncated_or_changed_bytes_are_refused_alike() -> None:
    """Every cut of a span body, and every byte set to a few values: each function returns
    or raises WireError, C and Python alike."""
    body = _edge_span() + _attr(b"llm.input_messages.5.message.content", b"x" * 200)
    refused = 0
    variants = [body[:n] for n in range(len(body) + 1)]
    variants += [body[:i] + bytes([v]) + body[i + 1 :] for i in range(len(body)) for v in (0xFF, 0)]
    for raw in variants:
        for name, extra in (
            ("ranges", ((b"llm.input_messages.", b""), (b"gen_ai.choice",))),
            ("unflatten", ((b"llm.input_messages.", b""), None)),
        ):
            got = _both(name, raw, 0, len(raw), *extra)
            assert got[0][0] in ("ok", "WireError"), got
            assert all(g == got[0] for g in got), (name, raw, got)
            refused += got[0][0] == "WireError"
    assert refused > len(body)  # most cuts fall inside a field


def test_invalid_utf8_in_a_wanted_key_is_refused_and_ignored_elsewhere() -> None:
    raw = _attr(b"llm.input_messages.0.message.r\xffle", b"x") + _attr(b"other.\xff", b"y")
    for got in _both("unflatten", raw, 0, len(raw), (b"llm.input_messages.",), None):
        assert got == ("WireError",)
    for got in _both("unflatten", raw, 0, len(raw), (b"other",), None):
        assert got == ("WireError",)
    for got in _both("unflatten", raw, 0, len(raw), (b"nope",), None):
        assert got == ("ok", [{}])
    for got in _both("ranges", raw, 0, len(raw), (b"llm.",), ()):
        assert got == ("ok", [(0, len(_attr(b"llm.input_messages.0.message.r\xffle", b"x")))])


def test_bad_arguments() -> None:
    raw = _edge_span()
    for args in (
        (raw, -1, len(raw)),
        (raw, 5, 4),
        (raw, 0, len(raw) + 1),
    ):
        assert _both("ranges", *args, (b"a",), ()) == [("IndexError",)] * len(RANGES)
        assert _both("unflatten", *args, (b"a",), None) == [("IndexError",)] * len(RANGES)
    for bad in ([b"a"], (b"a", "b"), tuple(b"x%d" % i for i in range(33))):
        assert _both("ranges", raw, 0, len(raw), bad, ()) == [("TypeError",)] * len(RANGES)
        assert _both("ranges", raw, 0, len(raw), (), bad) == [("TypeError",)] * len(RANGES)
        assert _both("unflatten", raw, 0, len(raw), bad, None) == [("TypeError",)] * len(RANGES)
