"""pipeline.wirescan against protobuf: `spans`, `attributes` and `splice`, in C and in
Python, on generator traces, every AnyValue kind, hand-built wire bytes that exercise
protobuf's merge rules, and malformed input. protobuf (upb) decoding the same bytes is the
truth throughout; the C and Python functions must agree with it and with each other."""

from __future__ import annotations

import contextlib
import gc
import random
import struct
import sys
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from benchmarks.generator import FaultRates, Generator, batches
from pipeline import wirescan as w
from pipeline.otlpwire import varint
from processors.genai.write import attr_bool, attr_str, attr_strs
from tests.pipeline.wirescan_truth import (
    BOTH,
    PY,
    C,
    Impl,
    agree,
    canon,
    check_against_protobuf,
    double,
    fixed64,
    group,
    ld,
    pb_spans,
    plain_with,
    tag,
    truth_attrs,
    varint_field,
    vi,
)

IMPLS = [
    pytest.param(
        C,
        id="c",
        marks=pytest.mark.skipif(
            not w.NATIVE, reason="pipeline._wirescan was not built (no C compiler)"
        ),
    ),
    pytest.param(PY, id="python"),
]
needs_c = pytest.mark.skipif(
    not w.NATIVE, reason="pipeline._wirescan was not built: nothing to compare with"
)


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Impl:
    i: Impl = request.param
    return i


# unknown fields of every wire type, a group with a nested group among them
UNKNOWN = (
    varint_field(100, 300)
    + fixed64(101, 7)
    + tag(102, 5)
    + b"\x01\x02\x03\x04"
    + ld(103, b"\x0a\x01x")
    + group(104, varint_field(1, 1) + ld(2, b"zz") + group(3, fixed64(4, 9)) + tag(5, 5) + b"abcd")
)


def kv(key: str, value: bytes) -> bytes:
    """A KeyValue body; `value` is the AnyValue body."""
    return ld(1, key.encode()) + ld(2, value)


def attr(key: str, value: bytes) -> bytes:
    return ld(9, kv(key, value))


def request(*scopes: bytes) -> bytes:
    """A request with one resource holding the given ScopeSpans bodies."""
    return ld(1, b"".join(ld(2, s) for s in scopes))


def scope_spans(*spans: bytes, scope: bytes = b"") -> bytes:
    return (ld(1, scope) if scope else b"") + b"".join(ld(2, s) for s in spans)


TID, SID, PID = bytes(range(1, 17)), b"\xaa" * 8, b"\xbb" * 8


# -- 1. generator traces ---------------------------------------------------------------

KEYS = frozenset(
    {"gen_ai.operation.name", "gen_ai.request.model", "gen_ai.usage.input_tokens", "nope"}
)


@pytest.fixture(scope="module")
def generated() -> list[bytes]:
    gen = Generator(11, rates=FaultRates())
    return [req.SerializeToString() for req, _ in batches(gen.traces(30), 6)]


@pytest.mark.parametrize("unset", ["", None])
def test_generator_traces(impl: Impl, generated: list[bytes], unset: Any) -> None:
    total = 0
    for raw in generated:
        infos = check_against_protobuf(impl, raw, KEYS, unset)
        total += len(infos)
    assert total > 1000  # the generator made real batches


def test_generator_traces_keys_in_wire_order(impl: Impl, generated: list[bytes]) -> None:
    raw = generated[0]
    req = ExportTraceServiceRequest.FromString(raw)
    keys = frozenset({"server.port", "gen_ai.operation.name", "server.address"})
    found = 0
    for info, (_, span) in zip(impl.spans(raw), pb_spans(req), strict=True):
        got = impl.attributes(raw, info[9], info[10], keys, "")
        want = [(kv.key, plain_with(kv.value, "")) for kv in span.attributes if kv.key in keys]
        assert got == want
        found += len(got) >= 2
    assert found  # some spans carry several of the keys


# -- 2. every AnyValue kind ------------------------------------------------------------


def _av(**kw: Any) -> AnyValue:
    return AnyValue(**kw)


def _arr(*vals: AnyValue) -> AnyValue:
    v = AnyValue()
    v.array_value.values.extend(vals)
    return v


def _kvl(**vals: AnyValue) -> AnyValue:
    v = AnyValue()
    v.kvlist_value.values.extend(KeyValue(key=k, value=x) for k, x in vals.items())
    return v


UNSET = object()

ANY_VALUES: list[tuple[str, AnyValue, Any]] = [
    ("string", _av(string_value="héllo ✓"), "héllo ✓"),
    ("empty string", _av(string_value=""), ""),
    ("true", _av(bool_value=True), True),
    ("false", _av(bool_value=False), False),
    ("int", _av(int_value=42), 42),
    ("zero", _av(int_value=0), 0),
    ("negative", _av(int_value=-5), -5),
    ("int64 min", _av(int_value=-(1 << 63)), -(1 << 63)),
    ("int64 max", _av(int_value=(1 << 63) - 1), (1 << 63) - 1),
    ("double", _av(double_value=1.5), 1.5),
    ("negative zero", _av(double_value=-0.0), -0.0),
    ("infinity", _av(double_value=float("inf")), float("inf")),
    ("nan", _av(double_value=float("nan")), float("nan")),
    ("bytes", _av(bytes_value=b"\x00\xff\x80"), b"\x00\xff\x80"),
    ("empty bytes", _av(bytes_value=b""), b""),
    (
        "array",
        _arr(_av(int_value=1), _av(string_value="x"), _av(bool_value=False)),
        [1, "x", False],
    ),
    ("empty array", _arr(), []),
    (
        "nested arrays",
        _arr(_arr(_arr(_av(double_value=2.5)), _arr()), _av(bytes_value=b"b")),
        [[[2.5], []], b"b"],
    ),
    (
        "kvlist",
        _kvl(a=_av(int_value=1), b=_kvl(c=_av(string_value="d")), e=_arr(_av(int_value=2))),
        {"a": 1, "b": {"c": "d"}, "e": [2]},
    ),
    ("empty kvlist", _kvl(), {}),
    ("kvlist in array", _arr(_kvl(x=_av(int_value=1)), _kvl()), [{"x": 1}, {}]),
    ("unset", AnyValue(), UNSET),
    ("unset in array", _arr(AnyValue(), _av(int_value=3)), [UNSET, 3]),
    ("unset in kvlist", _kvl(u=AnyValue()), {"u": UNSET}),
]


def _with_unset(v: Any, unset: Any) -> Any:
    if v is UNSET:
        return unset
    if isinstance(v, list):
        return [_with_unset(x, unset) for x in v]
    if isinstance(v, dict):
        return {k: _with_unset(x, unset) for k, x in v.items()}
    return v


def _any_value_request() -> tuple[ExportTraceServiceRequest, bytes]:
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add(name="s")
    for key, value, _ in ANY_VALUES:
        span.attributes.add(key=key).value.CopyFrom(value)
    span.attributes.add(key="no value")  # a KeyValue without its value field
    return req, req.SerializeToString()


@pytest.mark.parametrize("unset", ["", None, UNSET, 0])
def test_every_any_value_kind(impl: Impl, unset: Any) -> None:
    req, raw = _any_value_request()
    [info] = impl.spans(raw)
    got = impl.attributes(raw, info[9], info[10], None, unset)
    want = [(key, _with_unset(v, unset)) for key, _, v in ANY_VALUES] + [("no value", unset)]
    assert canon(got) == canon(want)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    assert canon(got) == canon(truth_attrs(span, None, unset))
    if unset == "" or unset is None:
        check_against_protobuf(impl, raw, frozenset({"nan", "kvlist", "unset"}), unset)
    # the unset object itself, not a copy
    if unset is UNSET:
        assert dict(got)["unset"] is UNSET
        assert dict(got)["unset in kvlist"]["u"] is UNSET


def test_keys_filter(impl: Impl) -> None:
    _, raw = _any_value_request()
    [info] = impl.spans(raw)
    keys = frozenset({"int64 max", "string", "kvlist in array", "absent"})
    got = impl.attributes(raw, info[9], info[10], keys, None)
    assert got == [
        ("string", "héllo ✓"),
        ("int64 max", (1 << 63) - 1),
        ("kvlist in array", [{"x": 1}, {}]),
    ]
    assert impl.attributes(raw, info[9], info[10], frozenset(), None) == []
    assert impl.attributes(raw, info[9], info[10], {"string"}, None) == [("string", "héllo ✓")]


def test_deep_nesting(impl: Impl) -> None:
    """An AnyValue in 100 nested arrays is read; one more level is refused."""
    for depth, ok in ((100, True), (101, False)):
        v = b"\x0a\x04leaf"  # string_value
        for _ in range(depth):
            v = ld(5, ld(1, v))  # array_value { values: v }
        raw = request(scope_spans(attr("deep", v)))
        [info] = impl.spans(raw)
        if ok:
            [(_, got)] = impl.attributes(raw, info[9], info[10], None, None)
            for _ in range(depth):
                assert isinstance(got, list) and len(got) == 1
                got = got[0]
            assert got == "leaf"
        else:
            with pytest.raises(w.WireError):
                impl.attributes(raw, info[9], info[10], None, None)


# -- 3. protobuf merge semantics on hand-built bytes -----------------------------------


def _span(*fields: bytes) -> bytes:
    return ld(1, TID) + ld(2, SID) + b"".join(fields)


MERGE_CASES: dict[str, tuple[bytes, tuple[Any, ...] | None, list[tuple[str, Any]] | None]] = {
    # name: (request bytes, expected spans(raw)[0][:9], expected attributes(None, None))
    "scalar fields repeated: last wins": (
        request(
            scope_spans(
                ld(1, b"\x01" * 16)
                + ld(5, b"first")
                + varint_field(6, 2)
                + fixed64(7, 1)
                + _span(
                    ld(5, b"second"),
                    varint_field(6, 3),
                    fixed64(7, 5),
                    fixed64(8, 1),
                    fixed64(8, 9),
                    ld(4, b"\x01" * 8),
                    ld(4, PID),
                )
            )
        ),
        ("", "second", 3, TID, TID + SID, TID + PID, 5, 9, 0),
        [],
    ),
    "status given twice: merged": (
        request(
            scope_spans(
                _span(ld(15, varint_field(3, 2) + ld(2, b"boom")), ld(15, ld(2, b"later"))),
                _span(ld(15, varint_field(3, 2)), ld(15, varint_field(3, 1))),
                _span(ld(15, varint_field(3, 2)), ld(15, varint_field(3, 0))),  # explicit 0
            )
        ),
        ("", "", 0, TID, TID + SID, b"", 0, 0, 2),
        [],
    ),
    "scope given twice: merged": (
        request(
            scope_spans(_span(), scope=ld(1, b"first") + ld(2, b"v1")) + ld(1, ld(2, b"v2")),
            ld(1, ld(1, b"a")) + ld(2, _span()) + ld(1, ld(1, b"b")),  # name after the spans
        ),
        ("first", "", 0, TID, TID + SID, b"", 0, 0, 0),
        [],
    ),
    "AnyValue with two oneof members: last wins": (
        request(
            scope_spans(
                _span(
                    attr("s-then-i", ld(1, b"s") + varint_field(3, 7)),
                    attr("i-then-s", varint_field(3, 7) + ld(1, b"s")),
                    attr("b-then-d", varint_field(2, 1) + double(4, 0.5)),
                    attr("arr-s-arr", ld(5, ld(1, varint_field(3, 1))) + ld(1, b"x") + ld(5, b"")),
                    attr("kv-bytes", ld(6, ld(1, kv("k", varint_field(3, 1)))) + ld(7, b"\x00")),
                    attr("bytes-kv", ld(7, b"\x00") + ld(6, ld(1, kv("k", varint_field(3, 1))))),
                    attr("arr-kv", ld(5, ld(1, b"")) + ld(6, b"")),
                )
            )
        ),
        None,
        [
            ("s-then-i", 7),
            ("i-then-s", "s"),
            ("b-then-d", 0.5),
            ("arr-s-arr", []),
            ("kv-bytes", b"\x00"),
            ("bytes-kv", {"k": 1}),
            ("arr-kv", {}),
        ],
    ),
    "array_value and kvlist_value repeated: merged": (
        request(
            scope_spans(
                _span(
                    attr("arr", ld(5, ld(1, varint_field(3, 1))) + ld(5, ld(1, ld(1, b"two")))),
                    attr(
                        "kvl",
                        ld(6, ld(1, kv("a", varint_field(3, 1))))
                        + ld(6, ld(1, kv("b", varint_field(3, 2))) + ld(1, kv("a", ld(1, b"A")))),
                    ),
                    # repeated inside the array's values: a nested AnyValue merged too
                    attr(
                        "nested", ld(5, ld(1, ld(5, ld(1, b"")) + ld(5, ld(1, varint_field(2, 1)))))
                    ),
                )
            )
        ),
        None,
        [("arr", [1, "two"]), ("kvl", {"a": "A", "b": 2}), ("nested", [[None, True]])],
    ),
    "KeyValue value given twice: merged": (
        request(
            scope_spans(
                _span(
                    ld(
                        9,
                        kv("k1", ld(5, ld(1, varint_field(3, 1))))
                        + ld(2, ld(5, ld(1, varint_field(3, 2)))),
                    ),
                    ld(9, kv("k2", ld(1, b"str")) + ld(2, varint_field(3, 5))),
                    ld(9, kv("k3", varint_field(3, 5)) + ld(2, b"")),  # an empty second: no change
                    ld(9, ld(2, ld(1, b"v")) + ld(1, b"key-after-value")),
                    ld(9, ld(1, b"dup-key") + ld(1, b"k5") + ld(2, varint_field(2, 1))),
                    ld(
                        9,
                        kv("k6", ld(6, ld(1, kv("x", b""))))
                        + ld(2, ld(6, ld(1, kv("y", double(4, 2.0))))),
                    ),
                )
            )
        ),
        None,
        [
            ("k1", [1, 2]),
            ("k2", 5),
            ("k3", 5),
            ("key-after-value", "v"),
            ("k5", True),
            ("k6", {"x": None, "y": 2.0}),
        ],
    ),
    "unknown fields and groups skipped everywhere": (
        UNKNOWN
        + ld(
            1,
            UNKNOWN
            + ld(1, UNKNOWN + ld(1, kv("service.name", ld(1, b"svc"))))  # resource
            + ld(
                2,
                UNKNOWN
                + ld(1, UNKNOWN + ld(1, b"sc") + UNKNOWN)
                + ld(
                    2,
                    UNKNOWN
                    + _span(
                        UNKNOWN,
                        ld(5, b"n"),
                        ld(15, UNKNOWN + varint_field(3, 1) + UNKNOWN),
                        ld(9, UNKNOWN + kv("a", UNKNOWN + ld(1, b"v") + UNKNOWN) + UNKNOWN),
                        ld(
                            9,
                            kv(
                                "arr",
                                ld(5, UNKNOWN + ld(1, varint_field(3, 4)) + UNKNOWN)
                                + ld(6, UNKNOWN + ld(1, kv("q", UNKNOWN)) + UNKNOWN),
                            ),
                        ),
                        UNKNOWN,
                    ),
                )
                + ld(3, b"schema")
                + UNKNOWN,
            ),
        )
        + UNKNOWN,
        ("sc", "n", 0, TID, TID + SID, b"", 0, 0, 1),
        [("a", "v"), ("arr", {"q": None})],
    ),
    "known fields with the wrong wire type are unknown fields": (
        request(
            scope_spans(
                _span(
                    varint_field(5, 3),  # name as a varint
                    ld(6, b"\x05"),  # kind as LEN
                    varint_field(7, 5),  # start as a varint
                    group(1, b""),  # trace_id as a group
                    ld(
                        9,
                        kv("a", varint_field(1, 1) + ld(3, b"x") + tag(4, 5) + b"\x00\x00\x00\x00"),
                    ),
                    varint_field(9, 1),  # attributes as a varint
                ),
                scope=varint_field(1, 4),
            )
        ),
        ("", "", 0, TID, TID + SID, b"", 0, 0, 0),
        [("a", None)],
    ),
    "padded (non-canonical) varint tags, lengths and values": (
        ld(
            1,
            ld(
                2,
                ld(1, ld(1, b"sc", pad=4, lpad=4), pad=1, lpad=2)
                + ld(
                    2,
                    ld(1, TID, pad=3)
                    + ld(2, SID, lpad=3)
                    + tag(5, 2, 4)
                    + vi(1, 4)
                    + b"n"
                    + tag(6, 0, 2)
                    + vi(2, 5)
                    + tag(7, 1, 1)
                    + struct.pack("<Q", 3)
                    + ld(9, ld(1, b"k", 2, 2) + ld(2, tag(3, 0, 3) + vi(12, 7), 1, 1), 3, 4)
                    + ld(15, tag(3, 0, 4) + vi(2, 3), 4, 4),
                    pad=2,
                    lpad=4,
                ),
                pad=4,
                lpad=1,
            ),
            pad=1,
            lpad=3,
        ),
        ("sc", "n", 2, TID, TID + SID, b"", 3, 0, 2),
        [("k", 12)],
    ),
    "empty messages and empty spans": (
        ld(1, b"") + request(b"", scope_spans(b"", _span(), b"")) + ld(1, ld(2, b"")),
        ("", "", 0, b"", b"", b"", 0, 0, 0),
        [],
    ),
    "many resources and scopes": (
        request(
            scope_spans(_span(ld(5, b"a")), scope=ld(1, b"s1")),
            scope_spans(),
            scope_spans(_span(ld(5, b"b")), _span(ld(5, b"c")), scope=ld(1, b"s2")),
        )
        + ld(1, ld(1, b"") + ld(3, b"url"))
        + request(scope_spans(_span(ld(5, b"d")), scope=ld(2, b"version only"))),
        ("s1", "a", 0, TID, TID + SID, b"", 0, 0, 0),
        [],
    ),
}


@pytest.mark.parametrize("case", list(MERGE_CASES), ids=list(MERGE_CASES))
def test_merge_semantics(impl: Impl, case: str) -> None:
    raw, first, attrs = MERGE_CASES[case]
    infos = check_against_protobuf(impl, raw, frozenset({"a", "k1", "arr", "s-then-i"}), None)
    check_against_protobuf(impl, raw, None, "")
    assert infos
    if first is not None:
        assert infos[0][:9] == first
    if attrs is not None:
        info = infos[0]
        assert canon(impl.attributes(raw, info[9], info[10], None, None)) == canon(attrs)


def test_many_resources_and_scopes_order(impl: Impl) -> None:
    raw = MERGE_CASES["many resources and scopes"][0]
    assert [(i[0], i[1]) for i in impl.spans(raw)] == [
        ("s1", "a"),
        ("s2", "b"),
        ("s2", "c"),
        ("", "d"),
    ]


def test_invalid_utf8_is_refused_like_protobuf(impl: Impl) -> None:
    """Every string protobuf validates and these functions read: the span and scope
    names, trace_state, the status message, attribute keys and string values; also an
    occurrence a later one overrides."""
    bad = b"\xff\xfe"
    span_cases = [
        _span(ld(5, bad)),
        _span(ld(5, bad), ld(5, b"ok")),
        _span(ld(3, bad)),
        _span(ld(15, ld(2, bad))),
    ]
    for body in span_cases:
        raw = request(scope_spans(body))
        with pytest.raises(Exception, match="UTF-8"):
            ExportTraceServiceRequest.FromString(raw)
        with pytest.raises(w.WireError):
            impl.spans(raw)
    for scope in (ld(1, bad), ld(1, bad) + ld(1, b"ok")):
        with pytest.raises(w.WireError):
            impl.spans(request(scope_spans(_span(), scope=scope)))
    for a in (
        ld(9, kv("k", ld(1, bad))),
        ld(9, ld(1, bad) + ld(2, b"")),
        ld(9, ld(1, bad) + ld(1, b"k") + ld(2, b"")),
        ld(9, kv("k", ld(1, bad) + varint_field(3, 1))),
        ld(9, kv("k", ld(5, ld(1, ld(1, bad))))),
        ld(9, kv("k", ld(6, ld(1, kv("x", ld(1, bad)))))),
        ld(9, kv("k", ld(6, ld(1, ld(1, bad))))),
    ):
        raw = request(scope_spans(_span(a)))
        [info] = impl.spans(raw)  # attributes are not read here
        for keys in (None, frozenset({"k"})):
            with pytest.raises(w.WireError):
                impl.attributes(raw, info[9], info[10], keys, None)
    # an attribute that is not wanted is not read past its key
    raw = request(scope_spans(_span(ld(9, kv("k", ld(1, bad))))))
    [info] = impl.spans(raw)
    assert impl.attributes(raw, info[9], info[10], frozenset({"other"}), None) == []


# -- 4. splice --------------------------------------------------------------------------


def _append_kvs(span: Span, data: bytes) -> None:
    """What the appended bytes mean (the expected result, decoded by protobuf)."""
    extra = Span.FromString(data)
    assert not extra.ListFields() or [f.name for f, _ in extra.ListFields()] == ["attributes"]
    span.attributes.extend(extra.attributes)


APPENDS = [
    attr_str("sieve.a", "x"),
    attr_bool("sieve.b", True) + attr_str("sieve.c", ""),
    attr_strs("sieve.d", ["p", "q", "ü"]),
    b"",
    attr_str("x" * 200, "y" * 300),  # a body whose length varint grows
]


def _check_splice(
    impl: Impl, raw: bytes, chosen: dict[int, tuple[bytes, frozenset[str] | None]]
) -> bytes:
    """Splice `chosen` (span index -> (append, drop)) into `raw` and compare with the
    request edited through protobuf."""
    infos = impl.spans(raw)
    patches = [(infos[i][9], add, drop) for i, (add, drop) in sorted(chosen.items())]
    out = impl.splice(raw, patches)
    want = ExportTraceServiceRequest.FromString(raw)
    spans = [s for _, s in pb_spans(want)]
    for i, (add, drop) in chosen.items():
        if drop:
            kept = [kv for kv in spans[i].attributes if kv.key not in drop]
            del spans[i].attributes[:]
            spans[i].attributes.extend(kept)
        _append_kvs(spans[i], add)
    assert ExportTraceServiceRequest.FromString(out) == want
    # the same spans, and the unpatched ones byte for byte
    after = impl.spans(out)
    assert [a[:9] for a in after] == [b[:9] for b in infos]
    for i, (a, b) in enumerate(zip(after, infos, strict=True)):
        if i not in chosen:
            assert out[a[9] : a[10]] == raw[b[9] : b[10]]
        else:
            add, drop = chosen[i]
            assert out[a[9] : a[10]].endswith(add)
            got = impl.attributes(out, a[9], a[10], None, None)
            assert canon(got) == canon(truth_attrs(spans[i], None, None))
    return out


def test_splice_generator_traces(impl: Impl, generated: list[bytes]) -> None:
    rng = random.Random(5)
    for raw in generated[:3]:
        n = len(impl.spans(raw))
        chosen = {i: (rng.choice(APPENDS), None) for i in sorted(rng.sample(range(n), n // 3))}
        chosen[0] = (APPENDS[0], None)
        chosen[n - 1] = (APPENDS[2], None)  # the very last span of the request
        _check_splice(impl, raw, chosen)


def test_splice_drop(impl: Impl, generated: list[bytes]) -> None:
    raw = generated[0]
    req = ExportTraceServiceRequest.FromString(raw)
    spans = [s for _, s in pb_spans(req)]
    chosen: dict[int, tuple[bytes, frozenset[str] | None]] = {}
    for i, s in enumerate(spans):
        if i % 4 == 0 and len(s.attributes) >= 2:
            drop = frozenset({s.attributes[0].key, s.attributes[-1].key, "absent"})
            chosen[i] = (APPENDS[i % len(APPENDS)], drop)
        elif i % 4 == 1:
            chosen[i] = (APPENDS[1], frozenset())  # an empty drop: nothing dropped
        elif i % 4 == 2 and s.attributes:
            chosen[i] = (b"", frozenset(kv.key for kv in s.attributes))  # all of them
    assert len(chosen) > 100
    out = _check_splice(impl, raw, chosen)
    infos = impl.spans(out)
    for i, (add, drop) in chosen.items():
        got = {k for k, _ in impl.attributes(out, infos[i][9], infos[i][10], None, None)}
        assert got & (drop or set()) <= {kv.key for kv in Span.FromString(add).attributes}


def test_splice_overwrites_a_written_attribute(impl: Impl) -> None:
    """The processors' pattern: drop the attribute written before and write it again."""
    raw = request(scope_spans(_span(attr("keep", ld(1, b"1")), attr("sieve.a", ld(1, b"old")))))
    [info] = impl.spans(raw)
    out = impl.splice(raw, [(info[9], attr_str("sieve.a", "new"), frozenset({"sieve.a"}))])
    [info] = impl.spans(out)
    assert impl.attributes(out, info[9], info[10], None, None) == [
        ("keep", "1"),
        ("sieve.a", "new"),
    ]


def test_splice_hand_built(impl: Impl) -> None:
    """Spans in later scopes and resources, unknown fields and padded varints around
    them, an empty span at the end of its scope, resource and request."""
    for raw in [MERGE_CASES[c][0] for c in MERGE_CASES]:
        n = len(impl.spans(raw))
        for i in range(n):
            _check_splice(impl, raw, {i: (APPENDS[0], frozenset({"a", "k1"}))})
        _check_splice(impl, raw, {i: (APPENDS[i % len(APPENDS)], None) for i in range(n)})
    empty_last = request(scope_spans(_span(), b"")) + request(scope_spans(b"", b""))
    _check_splice(impl, empty_last, {1: (APPENDS[0], None)})
    _check_splice(impl, empty_last, {0: (APPENDS[0], None), 2: (APPENDS[1], None), 3: (b"", None)})


def test_splice_noop(impl: Impl, generated: list[bytes]) -> None:
    raw = generated[1]
    assert impl.splice(raw, []) is raw
    # appending nothing to every span changes nothing (the encoding is canonical)
    assert impl.splice(raw, [(i[9], b"", None) for i in impl.spans(raw)]) == raw


def test_splice_bad_patches(impl: Impl) -> None:
    raw = MERGE_CASES["many resources and scopes"][0]
    infos = impl.spans(raw)
    a, b = infos[0][9], infos[2][9]
    add = attr_str("k", "v")
    # a start inside a span, at a span's tag, at a scope's body, past the end...
    starts = {i[9] for i in infos}
    near = {a + 1, a - 1, b + 2, 0, 1, 2, infos[1][10], len(raw), len(raw) + 5, -1}
    inside = sorted(p for p in near | {1 << 70, -(1 << 70)} if p not in starts)
    for p in inside:
        with pytest.raises(w.WireError):
            impl.splice(raw, [(p, add, None)])
        with pytest.raises(w.WireError):
            impl.splice(raw, sorted([(a, add, None), (p, add, None)]))
    with pytest.raises(w.WireError):
        impl.splice(raw, [(b, add, None), (a, add, None)])  # not sorted
    with pytest.raises(w.WireError):
        impl.splice(raw, [(a, add, None), (b, add, None), (a, add, None)])  # a's not in a row
    for bad in (
        [(a, "text", None)],
        [(a, add, ["k"])],
        [(str(a), add, None)],
        [(float(a), add, None)],
        [[a, add, None]],
        [(a, add)],
        [(a, add, None, None)],
        [(a, add, None), "patch"],
    ):
        with pytest.raises(TypeError):
            impl.splice(raw, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        impl.splice(raw, ((a, add, None),))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        impl.splice(bytearray(raw), [(a, add, None)])  # type: ignore[arg-type]
    assert ExportTraceServiceRequest.FromString(impl.splice(raw, [(a, add, None)]))


def test_splice_several_patches_of_a_span_add_up_as_one(impl: Impl, generated: list[bytes]) -> None:
    """In a row, a span's patches splice as one patch: their bytes appended in order, the
    attributes under any of their drop keys dropped (only the span's own ones)."""
    raw = generated[0]
    infos = impl.spans(raw)
    owns = [[k for k, _ in impl.attributes(raw, i[9], i[10], None, None)] for i in infos]
    n = next(j for j, own in enumerate(owns) if len(set(own)) >= 3)
    own, a, b = owns[n], infos[n][9], infos[n + 1][9]
    x, y, z = attr_str("x", "1"), attr_str(own[0], "again"), attr_str("z", "3")
    several = [
        (a, x, frozenset({own[0]})),
        (a, y, None),
        (a, z, frozenset({own[1], "absent"})),
        (b, z, None),
    ]
    got = impl.splice(raw, several)
    assert got == impl.splice(raw, [(a, x + y + z, frozenset({*own[:2], "absent"})), (b, z, None)])
    assert got == w._py_splice(raw, several)
    spans = [
        s
        for rs in ExportTraceServiceRequest.FromString(got).resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    kept = [k for k in own if k not in own[:2]]
    assert [kv.key for kv in spans[n].attributes] == [*kept, "x", own[0], "z"]
    assert [kv.key for kv in spans[n + 1].attributes] == [*owns[n + 1], "z"]


def test_attributes_bad_arguments(impl: Impl) -> None:
    raw = MERGE_CASES["many resources and scopes"][0]
    [info, *_] = impl.spans(raw)
    s0, s1 = info[9], info[10]
    for b0, b1 in ((-1, s1), (s0, len(raw) + 1), (s1, s0)):
        with pytest.raises(IndexError):
            impl.attributes(raw, b0, b1, None, None)
    for keys in (["k"], {"k": 1}, "k"):
        with pytest.raises(TypeError):
            impl.attributes(raw, s0, s1, keys, None)
    assert impl.attributes(raw, s0, s1, {"k"}, None) == []  # a set will do
    assert impl.attributes(raw, 0, 0, None, None) == []
    with pytest.raises(TypeError):
        impl.spans("text")  # type: ignore[arg-type]


# -- 5. malformed input ----------------------------------------------------------------


def _small_request() -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "svc"
    ss = rs.scope_spans.add()
    ss.scope.name = "openai"
    s = ss.spans.add(
        trace_id=TID,
        span_id=SID,
        parent_span_id=PID,
        name="chat",
        kind=3,
        start_time_unix_nano=5,
        end_time_unix_nano=9,
    )
    s.attributes.add(key="k").value.int_value = -3
    s.attributes.add(key="gen_ai.operation.name").value.string_value = "chat"
    arr = s.attributes.add(key="arr").value.array_value.values
    arr.add().kvlist_value.values.add(key="x").value.bool_value = True
    arr.add().double_value = 0.5
    s.status.code = 2  # type: ignore[assignment]
    s.status.message = "m"
    ss.spans.add(trace_id=TID, span_id=PID, name="root")
    return req.SerializeToString()


def test_truncated_at_every_byte() -> None:
    raw = _small_request()
    for n in range(len(raw) + 1):
        agree(raw[:n])


def test_every_byte_changed() -> None:
    raw = _small_request()
    rng = random.Random(3)
    for pos in range(len(raw)):
        for value in {0x00, 0x7F, 0x80, 0xFF, raw[pos] ^ 1, raw[pos] ^ 0x80, rng.randrange(256)}:
            agree(raw[:pos] + bytes([value]) + raw[pos + 1 :])


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.data())
def test_random_mutations(data: st.DataObject) -> None:
    raw = bytearray(_small_request())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        pos = data.draw(st.integers(0, len(raw)))
        if op == "flip" and pos < len(raw):
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "delete":
            del raw[pos : pos + data.draw(st.integers(1, 4))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=6))
    agree(bytes(raw))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.binary(max_size=120))
def test_arbitrary_bytes(raw: bytes) -> None:
    agree(raw)


def test_deep_groups() -> None:
    """Unknown groups nested 100 deep are skipped, 101 refused: no stack overflow."""
    for depth in (99, 100, 101, 5000):
        g = b""
        for _ in range(depth):
            g = group(7, g)
        raw = request(scope_spans(_span(g)))
        agree(raw)
        for impl in BOTH:
            if depth <= 100:
                assert len(impl.spans(raw)) == 1
            else:
                with pytest.raises(w.WireError):
                    impl.spans(raw)


def test_big_lengths() -> None:
    """Lengths near and past the 64-bit limits, and varints of 10 and 11 bytes."""
    for length in (
        b"\xff" * 9 + b"\x01",
        b"\xff" * 10 + b"\x01",
        vi((1 << 63) - 1),
        vi(1 << 63),
        vi(1 << 32),
    ):
        raw = b"\x0a" + length + b"\x12\x00"
        agree(raw)
        agree(request(scope_spans(b"\x2a" + length + b"x")))
        agree(request(scope_spans(_span(b"\x4a" + length))))


# -- 6. C and Python agree ---------------------------------------------------------------


@needs_c
def test_c_and_python_agree_on_generator_traces(generated: list[bytes]) -> None:
    rng = random.Random(9)
    for raw in generated:
        infos = C.spans(raw)
        assert infos == PY.spans(raw)
        for info in infos:
            for keys in (None, KEYS):
                assert canon(C.attributes(raw, info[9], info[10], keys, "")) == canon(
                    PY.attributes(raw, info[9], info[10], keys, "")
                )
        patches = [
            (i[9], rng.choice(APPENDS), rng.choice([None, KEYS]))
            for i in infos
            if rng.random() < 0.3
        ]
        assert C.splice(raw, patches) == PY.splice(raw, patches)


@needs_c
@pytest.mark.parametrize("case", list(MERGE_CASES), ids=list(MERGE_CASES))
def test_c_and_python_agree_on_hand_built(case: str) -> None:
    agree(MERGE_CASES[case][0])
    raw = MERGE_CASES[case][0]
    patches = [(i[9], APPENDS[n % len(APPENDS)], KEYS) for n, i in enumerate(C.spans(raw))]
    assert C.splice(raw, patches) == PY.splice(raw, patches)


# -- no leaks -----------------------------------------------------------------------------


@pytest.mark.parametrize("impl", BOTH, ids=["c", "python"][-len(BOTH) :])
def test_no_leaks(impl: Impl) -> None:
    """Success and every error path leave the arguments' reference counts as they were
    and allocate nothing that outlives the calls."""
    raw = _small_request()
    cases = [
        raw,
        raw[:40],
        raw[:-3],
        *(raw[:p] + b"\xff" + raw[p + 1 :] for p in range(0, len(raw), 3)),
    ]
    cases += [c[0] for c in MERGE_CASES.values()]
    unset, keys, drop, add = object(), frozenset({"k", "arr"}), frozenset({"k"}), attr_str("k", "v")

    def run() -> None:
        for r in cases:
            try:
                infos = impl.spans(r)
            except w.WireError:
                continue
            for i in infos:
                for ks in (None, keys):
                    with contextlib.suppress(w.WireError):
                        impl.attributes(r, i[9], i[10], ks, unset)
                for d in (None, drop):
                    with contextlib.suppress(w.WireError):
                        impl.splice(r, [(i[9], add, d)])
                with pytest.raises(w.WireError):
                    impl.splice(r, [(i[9] + 1, add, drop)])
                with pytest.raises(w.WireError):
                    impl.splice(r, [(i[9], add, drop), (i[9] - 1, add, None)])  # not sorted
                with contextlib.suppress(w.WireError):  # several for one span
                    impl.splice(r, [(i[9], add, drop), (i[9], add, None), (i[9], add, drop)])
            for bad in ([(0, "x", None)], [(0, add, ["k"])], [("0", add, drop)]):
                with pytest.raises(TypeError):
                    impl.splice(r, bad)  # type: ignore[arg-type]
            with pytest.raises(IndexError):
                impl.attributes(r, -1, 0, keys, unset)

    watched = (unset, keys, drop, add, *cases)
    run()
    gc.collect()
    refs = [sys.getrefcount(x) for x in watched]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(20):
            run()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(x) for x in watched] == refs
    growth = sum(d.size_diff for d in after.compare_to(before, "filename"))
    assert growth < 16_384, growth  # one object leaked per call would be ~1 MB


# -- 7. Slots and collect ------------------------------------------------------------------

COLLECTORS = [(w._PySlots, w._py_collect, w._py_attributes)] + (
    [(w.Slots, w.collect, w.attributes)] if w.NATIVE else []
)


@pytest.mark.parametrize(("slots_type", "collect", "attributes"), COLLECTORS)
def test_collect_takes_per_slot_the_highest_priority_key_present(
    slots_type: Any, collect: Any, attributes: Any, generated: list[bytes]
) -> None:
    from processors.genai.index import keys_for

    table = keys_for(None).keymap
    slots = slots_type(table)
    assert slots.n == max(f for f, _ in table.values()) + 1 and slots.keys == frozenset(table)
    seen = 0
    for raw in generated:
        req = ExportTraceServiceRequest.FromString(raw)
        for info, (_, span) in zip(w.spans(raw), pb_spans(req), strict=True):
            want: list[Any] = [None] * slots.n
            best: dict[int, int] = {}
            for kv in span.attributes:
                if kv.key in table:
                    f, prio = table[kv.key]
                    if f not in best or prio <= best[f]:
                        best[f], want[f] = prio, plain_with(kv.value, "")
            by, mask = collect(raw, info[9], info[10], slots, "")
            assert by == want
            assert mask == sum(1 << f for f in best)
            # the same keys through attributes(), by Slots or by frozenset
            assert attributes(raw, info[9], info[10], slots, "") == attributes(
                raw, info[9], info[10], frozenset(table), ""
            )
            seen += bool(mask)
    assert seen > 100


@pytest.mark.parametrize(("slots_type", "collect", "attributes"), COLLECTORS)
def test_collect_priority_and_repeats(slots_type: Any, collect: Any, attributes: Any) -> None:
    span = Span(trace_id=b"t" * 16, span_id=b"s" * 8, name="x")
    for k, v in (("low", "1"), ("high", "2"), ("low", "3"), ("other", "4"), ("solo", "5")):
        span.attributes.add(key=k).value.string_value = v
    req = ExportTraceServiceRequest()
    req.resource_spans.add().scope_spans.add().spans.append(span)
    raw = req.SerializeToString()
    info = w.spans(raw)[0]
    slots = slots_type({"low": (0, 5), "high": (0, 1), "solo": (2, 0)})
    by, mask = collect(raw, info[9], info[10], slots, "")
    assert by == ["2", None, "5"] and mask == 0b101
    with pytest.raises(ValueError):
        slots_type({"k": (64, 0)})


@pytest.mark.parametrize("ids_ok", [w._py_ids_ok] + ([w.ids_ok] if w.NATIVE else []))
def test_ids_ok_says_whether_every_id_has_a_valid_length(ids_ok: Any) -> None:
    def req(**ids: bytes) -> bytes:
        r = ExportTraceServiceRequest()
        ss = r.resource_spans.add().scope_spans.add()
        ss.spans.add(trace_id=b"t" * 16, span_id=b"s" * 8, name="fine")
        ss.spans.add(name="x", **ids)
        return r.SerializeToString()

    assert ids_ok(req(trace_id=b"t" * 16, span_id=b"s" * 8, parent_span_id=b"p" * 8))
    assert ids_ok(req())  # empty ids are the next stage's business
    assert not ids_ok(req(trace_id=b"t" * 15))
    assert not ids_ok(req(span_id=b"s" * 9))
    assert not ids_ok(req(parent_span_id=b"p" * 4))


def _check_answers_as_protobuf(raw: bytes) -> None:
    """`check` (C and Python) accepts `raw` (a one-span request) exactly when protobuf's
    decoder does."""
    from google.protobuf.message import DecodeError

    try:
        ExportTraceServiceRequest.FromString(raw)
        want: object = 1
    except DecodeError:
        want = "error"
    for check in (w.check, w._py_check):
        try:
            got: object = check(raw)
        except w.WireError:
            got = "error"
        assert got == want, check


@pytest.mark.parametrize("validate", [w._py_validate] + ([w.validate] if w.NATIVE else []))
def test_validate_counts_spans_and_checks_ids_in_one_pass(validate: Any) -> None:
    def req(*extra: bytes, **ids: bytes) -> bytes:
        r = ExportTraceServiceRequest()
        ss = r.resource_spans.add().scope_spans.add()
        ss.spans.add(trace_id=b"t" * 16, span_id=b"s" * 8, name="fine")
        ss.spans.add(name="x", **ids).attributes.add(key="k").value.string_value = "v" * 200
        raw = r.SerializeToString()
        if not extra:
            return raw
        # append fields to the last span: protobuf keeps the last occurrence of each
        span = ss.spans[1].SerializeToString() + b"".join(extra)
        r2 = ExportTraceServiceRequest()
        r2.resource_spans.add().scope_spans.add().spans.add(trace_id=b"t" * 16, name="fine")
        head = r2.resource_spans[0].scope_spans[0].spans[0].SerializeToString()
        body = b"\x12" + bytes([len(head)]) + head + b"\x12" + varint(len(span)) + span
        scope = b"\x12" + varint(len(body)) + body
        return b"\x0a" + varint(len(scope)) + scope

    assert validate(req(trace_id=b"t" * 16, span_id=b"s" * 8, parent_span_id=b"p" * 8)) == (
        2,
        True,
    )
    assert validate(req()) == (2, True)  # empty ids are the next stage's business
    assert validate(req(trace_id=b"t" * 15)) == (2, False)
    assert validate(req(span_id=b"s" * 9)) == (2, False)
    assert validate(req(parent_span_id=b"p" * 4)) == (2, False)
    # the last occurrence counts, as when decoded
    assert validate(req(b"\x0a\x10" + b"t" * 16, trace_id=b"t" * 3)) == (2, True)
    assert validate(req(b"\x0a\x03ttt", trace_id=b"t" * 16)) == (2, False)
    with pytest.raises(w.WireError):
        validate(req(b"\x2a\x01\xff"))  # a bad name: invalid UTF-8


@pytest.mark.parametrize(
    "key, value",
    [
        ("k", "v"),
        ("k" * 130, "v" * 300),  # lengths of two-byte varints
        (b"\xff", "v"),
        ("k", b"\xc0\x80"),
        ("k", b"v" * 200 + b"\xed\xa0\x80"),
        ("k", None),
    ],
)
def test_check_reads_attributes_as_protobuf_does(key: Any, value: Any) -> None:
    """The usual attribute shape (a key and a string value) takes a fast path in C: it
    accepts and refuses exactly what protobuf's decoder does."""

    def s(x: Any) -> bytes:
        b = x.encode() if isinstance(x, str) else x
        return varint(len(b)) + b

    kv = b"\x0a" + s(key)
    if value is not None:
        kv += b"\x12" + s(b"\x0a" + s(value))
    span = b"\x4a" + s(kv)
    scope = b"\x12" + s(span)
    raw = b"\x0a" + s(b"\x12" + s(scope))
    _check_answers_as_protobuf(raw)


def test_check_finds_a_non_ascii_byte_wherever_it_is_in_a_string() -> None:
    """Strings are checked eight bytes at a time (the last word overlapping): a non-ASCII
    byte, valid UTF-8 or not, is seen at every position of strings of every length
    around the word sizes, in keys and in values."""
    for n in range(0, 41):
        for pos in range(n):
            for bad in (b"\xc3\xa9", b"\xff", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"):
                text = b"a" * pos + bad + b"b" * (n - pos - 1)
                for kv in ((text, b"v"), (b"k", text)):
                    span = Span(name="s")
                    raw_span = span.SerializeToString() + b"\x4a" + _kv(*kv)
                    scope = b"\x12" + varint(len(raw_span)) + raw_span
                    resource = b"\x12" + varint(len(scope)) + scope
                    raw = b"\x0a" + varint(len(resource)) + resource
                    _check_answers_as_protobuf(raw)


def _kv(key: bytes, value: bytes) -> bytes:
    """An encoded KeyValue with a string value, length-prefixed."""
    any_value = b"\x0a" + varint(len(value)) + value
    kv = b"\x0a" + varint(len(key)) + key + b"\x12" + varint(len(any_value)) + any_value
    return varint(len(kv)) + kv


@pytest.mark.parametrize("depth", [30, 31, 32, 33])
def test_check_allows_the_nesting_of_key_value_lists_protobuf_allows(depth: int) -> None:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    v = AnyValue(string_value="x")
    for _ in range(depth):
        w_ = AnyValue()
        w_.kvlist_value.values.add(key="k").value.CopyFrom(v)
        v = w_
    req = ExportTraceServiceRequest()
    req.resource_spans.add().scope_spans.add().spans.add().attributes.add(key="k").value.CopyFrom(v)
    _check_answers_as_protobuf(req.SerializeToString())


def test_untrack_takes_objects_off_the_gc_lists_and_they_are_still_freed():
    import gc
    import weakref

    from pipeline import wirescan

    class Node:
        pass

    nodes = [Node(), Node()]
    ref = weakref.ref(nodes[0])
    wirescan.untrack([*nodes, 1, "x"])
    assert [gc.is_tracked(n) for n in nodes] == [not wirescan.NATIVE] * 2
    del nodes
    assert ref() is None  # reference counting still frees them


@pytest.mark.parametrize("depth", [46, 47, 48, 49])
def test_check_allows_the_nesting_protobuf_allows(depth):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    v = AnyValue(string_value="x")
    for _ in range(depth):
        w_ = AnyValue()
        w_.array_value.values.append(v)
        v = w_
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.attributes.add(key="k").value.CopyFrom(v)
    _check_answers_as_protobuf(req.SerializeToString())


# -- 8. events -----------------------------------------------------------------------------

EVENTS = [(w._PySlots, w._py_events, w._py_collect)] + (
    [(w.Slots, w.events, w.collect)] if w.NATIVE else []
)


def _truth_events(
    span: Span, names: frozenset[str], keys: frozenset[str]
) -> list[tuple[int, str, list[tuple[str, Any]]]]:
    out = []
    for e in span.events:
        if e.name.split("=", 1)[0] in names or any(kv.key in names for kv in e.attributes):
            attrs = [(kv.key, plain_with(kv.value, None)) for kv in e.attributes if kv.key in keys]
            out.append((e.time_unix_nano, e.name, attrs))
    return out


@pytest.mark.parametrize(("slots_type", "events", "collect"), EVENTS)
def test_events_of_generator_traces_as_protobuf_reads_them(
    slots_type: Any, events: Any, collect: Any
) -> None:
    """Every span's wanted events (the generator's exception and agent-guide events), and
    the count `collect` gives in its events slot."""
    gen = Generator(12, rates=FaultRates.parse("all=0.3"), warmup=0)
    generated = [req.SerializeToString() for req, _ in batches(gen.traces(42), 6)]
    names = frozenset({"exception", "fallback_triggered", "retry_count", "quota_exceeded"})
    keys = frozenset({"exception.type", "from_model", "retry_count"})
    name_slots, key_slots = slots_type(names), slots_type(keys)
    counting = slots_type({"gen_ai.request.model": (0, 0)}, events=3)
    assert counting.n == 4 and counting.events == 3
    seen = counted = 0
    for raw in generated:
        req = ExportTraceServiceRequest.FromString(raw)
        for info, (_, span) in zip(w.spans(raw), pb_spans(req), strict=True):
            got = events(raw, info[9], info[10], name_slots, key_slots)
            assert canon(got) == canon(_truth_events(span, names, keys))
            seen += len(got)
            by, mask = collect(raw, info[9], info[10], counting, None)
            n = len(span.events)
            assert by[3] == (n or None) and bool(mask & 8) == bool(n)
            counted += n
    assert seen > 20 and counted > seen


@pytest.mark.parametrize(("slots_type", "events", "collect"), EVENTS)
def test_events_by_name_up_to_its_value_or_by_an_attribute(
    slots_type: Any, events: Any, collect: Any
) -> None:
    span = Span(trace_id=TID, span_id=SID, name="llm.generate")
    for name, t, attrs in (
        ("fallback_triggered=true", 5, {"to_model": "claude"}),
        ("exception", 6, {"exception.stacktrace": "long"}),
        ("tool.retry", 7, {"retry_count": 2, "other": "x"}),
        ("fallback_triggered", 8, {}),
        ("", 9, {}),
        ("fallback", 10, {}),  # a prefix of a wanted name is not it
    ):
        e = span.events.add(name=name, time_unix_nano=t)
        for k, v in attrs.items():
            a = e.attributes.add(key=k)
            if isinstance(v, int):
                a.value.int_value = v
            else:
                a.value.string_value = v
    req = ExportTraceServiceRequest()
    req.resource_spans.add().scope_spans.add().spans.append(span)
    raw = req.SerializeToString()
    info = w.spans(raw)[0]
    got = events(
        raw,
        info[9],
        info[10],
        slots_type(["fallback_triggered", "retry_count"]),
        slots_type(["to_model", "retry_count"]),
    )
    assert got == [
        (5, "fallback_triggered=true", [("to_model", "claude")]),
        (7, "tool.retry", [("retry_count", 2)]),
        (8, "fallback_triggered", []),
    ]
    with pytest.raises(ValueError):
        slots_type(["x"], events=64)
    with pytest.raises(TypeError):
        events(raw, info[9], info[10], frozenset({"x"}), slots_type(["x"]))
    with pytest.raises(IndexError):
        events(raw, info[9], len(raw) + 1, slots_type(["x"]), slots_type(["x"]))


@pytest.mark.parametrize(("slots_type", "events", "collect"), EVENTS)
def test_a_malformed_event_is_refused(slots_type: Any, events: Any, collect: Any) -> None:
    """An event whose name is not UTF-8, or whose fields run past it: WireError."""
    for body in (ld(2, b"\xff\xfe"), ld(2, b"ok") + b"\x1a\x09\x0a"):
        raw = request(scope_spans(ld(1, TID) + ld(2, SID) + ld(5, b"x") + ld(11, body)))
        info = w._py_spans(raw)[0]
        with pytest.raises(w.WireError):
            events(raw, info[9], info[10], slots_type(["ok"]), slots_type(["k"]))
