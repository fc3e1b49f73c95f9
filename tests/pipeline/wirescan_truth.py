"""The truth for pipeline.wirescan's tests: what protobuf decodes from the same bytes, and a
few helpers to write wire bytes by hand (non-canonical ones included)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline import wholetraces
from pipeline import wirescan as w
from processors.genai.write import attr_str


class Impl(NamedTuple):
    spans: Callable[[bytes], list[w.SpanInfo]]
    attributes: Callable[..., list[tuple[str, Any]]]
    splice: Callable[[bytes, list[Any]], bytes]


PY = Impl(w._py_spans, w._py_attributes, w._py_splice)
C = Impl(w.spans, w.attributes, w.splice)  # the Python functions again when not built
BOTH = (C, PY) if w.NATIVE else (PY,)


# -- the truth: protobuf --------------------------------------------------------------


def pb_spans(req: ExportTraceServiceRequest) -> Iterator[tuple[str, Span]]:
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield ss.scope.name, s


def truth_spans(req: ExportTraceServiceRequest) -> list[tuple[Any, ...]]:
    return [
        (
            scope,
            s.name,
            s.kind,
            s.trace_id,
            s.trace_id + s.span_id,
            s.trace_id + s.parent_span_id if s.parent_span_id else b"",
            s.start_time_unix_nano,
            s.end_time_unix_nano,
            s.status.code,
        )
        for scope, s in pb_spans(req)
    ]


def plain_with(v: AnyValue, unset: Any) -> Any:
    """`wholetraces.plain` with `unset` for an AnyValue that has no value."""
    which = v.WhichOneof("value")
    if which is None:
        return unset
    if which == "array_value":
        return [plain_with(x, unset) for x in v.array_value.values]
    if which == "kvlist_value":
        return {x.key: plain_with(x.value, unset) for x in v.kvlist_value.values}
    return getattr(v, which)


def truth_attrs(span: Span, keys: frozenset[str] | None, unset: Any) -> list[tuple[str, Any]]:
    if unset == "" and type(unset) is str:
        # what the GenAI index reads: an unset value as "" (its old protobuf `plain`)
        def plain(v: AnyValue) -> Any:
            return plain_with(v, "")

    elif unset is None:
        plain = wholetraces.plain
    else:
        return [
            (kv.key, plain_with(kv.value, unset))
            for kv in span.attributes
            if keys is None or kv.key in keys
        ]
    return [(kv.key, plain(kv.value)) for kv in span.attributes if keys is None or kv.key in keys]


def canon(v: Any) -> Any:
    """A value with its exact type (True is not 1, 1.0 is not 1) and floats as their bits
    (NaN equals NaN); dicts keep their order."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, float):
        return ("float", struct.pack("<d", v))
    if isinstance(v, list):
        return ("list", [canon(x) for x in v])
    if isinstance(v, tuple):
        return ("tuple", tuple(canon(x) for x in v))
    if isinstance(v, dict):
        return ("dict", [(canon(k), canon(x)) for k, x in v.items()])
    return (type(v).__name__, v)


def check_against_protobuf(
    impl: Impl, raw: bytes, keys: frozenset[str] | None = None, unset: Any = None
) -> list[w.SpanInfo]:
    """Every span's fields, body and attributes (all of them, and only `keys`) as
    protobuf decodes `raw`."""
    req = ExportTraceServiceRequest.FromString(raw)
    infos = impl.spans(raw)
    assert [i[:9] for i in infos] == truth_spans(req)
    for info, (_, span) in zip(infos, pb_spans(req), strict=True):
        b0, b1 = info[9], info[10]
        assert Span.FromString(raw[b0:b1]) == span
        for ks in (None, keys):
            got = impl.attributes(raw, b0, b1, ks, unset)
            assert canon(got) == canon(truth_attrs(span, ks, unset))
    return infos


# -- wire bytes by hand ----------------------------------------------------------------


def vi(n: int, pad: int = 0) -> bytes:
    """A varint, with `pad` redundant continuation bytes (non-canonical but valid)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append(n & 0x7F)
        n >>= 7
        if not n:
            break
    for i in range(len(out) - 1):
        out[i] |= 0x80
    if pad:
        out[-1] |= 0x80
        out += b"\x80" * (pad - 1) + b"\x00"
    return bytes(out)


def tag(field: int, wire: int, pad: int = 0) -> bytes:
    return vi(field << 3 | wire, pad)


def ld(field: int, payload: bytes, pad: int = 0, lpad: int = 0) -> bytes:
    return tag(field, 2, pad) + vi(len(payload), lpad) + payload


def varint_field(field: int, n: int) -> bytes:
    return tag(field, 0) + vi(n)


def fixed64(field: int, n: int) -> bytes:
    return tag(field, 1) + struct.pack("<Q", n)


def double(field: int, x: float) -> bytes:
    return tag(field, 1) + struct.pack("<d", x)


def group(field: int, content: bytes) -> bytes:
    return tag(field, 3) + content + tag(field, 4)


# -- outcomes on any input ------------------------------------------------------------


def outcome(impl: Impl, raw: bytes) -> Any:
    """Everything the three functions say about `raw`, or ("WireError",) where they
    refuse it; any other exception escapes (and fails the test)."""
    try:
        infos = impl.spans(raw)
    except w.WireError:
        return ("WireError",)
    out: list[Any] = [infos]
    for info in infos:
        for keys in (None, frozenset({"k", "gen_ai.operation.name"})):
            try:
                out.append(canon(impl.attributes(raw, info[9], info[10], keys, "")))
            except w.WireError:
                out.append("WireError")
        try:
            out.append(impl.splice(raw, [(info[9], attr_str("k", "v"), frozenset({"k"}))]))
        except w.WireError:
            out.append("WireError")
    try:
        out.append(impl.splice(raw, [(i[9], b"", None) for i in infos]))
    except w.WireError:
        out.append("WireError")
    return out


def agree(raw: bytes) -> None:
    """Each implementation returns or raises WireError; when protobuf decodes `raw` the
    results are protobuf's; C and Python give the same outcome."""
    outcomes = [outcome(i, raw) for i in BOTH]
    try:
        ExportTraceServiceRequest.FromString(raw)
        decodes = True
    except DecodeError:
        decodes = False
    if decodes:
        for i in BOTH:
            check_against_protobuf(i, raw, frozenset({"k"}), "")
            check_against_protobuf(i, raw, None, None)
    if len(outcomes) == 2:
        assert outcomes[0] == outcomes[1]
