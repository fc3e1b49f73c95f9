"""OTLP trace requests at the protobuf wire level: take a request apart into encoded spans
without decoding them, and frame encoded pieces back into a request.

A "skeleton" message type reads an `ExportTraceServiceRequest` with every span declared as
`bytes`: upb hands back each span's encoding (a copy, in C, ≈0.08 µs a span) and never
builds span objects. `span_head` reads a span's trace id and whether it is a root from the
leading bytes of its encoding.

Framing is the reverse: a length-delimited field is its tag, a varint length and the
payload, so a request is `b"".join` of framed resource groups, each of framed scope groups,
each of framed spans. Span encodings go out byte for byte as they came in. At the resource
and scope level only the fields OTLP defines are kept (resource, scope, schema_url).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

__all__ = [
    "DecodeError",
    "ScopeGroup",
    "frame",
    "scope_groups",
    "span_head",
    "span_headers",
    "varint",
]

# field tags (field number << 3 | wire type 2)
TAG_1 = b"\x0a"  # resource / scope / resource_spans
TAG_2 = b"\x12"  # scope_spans / spans
TAG_3 = b"\x1a"  # schema_url


def varint(n: int) -> bytes:
    """A protobuf varint; a negative int64 as its two's complement (ten bytes)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame(tag: bytes, payload: bytes) -> bytes:
    """One length-delimited field."""
    return tag + varint(len(payload)) + payload


class _SpanHeaders(dict[int, bytes]):
    """Tag + length prefix of an encoded span of a given length (memoized)."""

    def __missing__(self, n: int) -> bytes:
        value = TAG_2 + varint(n)
        if n < 1 << 16:
            self[n] = value
        return value


span_headers = _SpanHeaders()


def _skeleton_classes() -> Any:
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tracesieve/otlp_skeleton.proto", package="tracesieve.skeleton", syntax="proto3"
    )

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, type_, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=type_, label=label)
            if type_name:
                f.type_name = f".tracesieve.skeleton.{type_name}"

    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("Request", ("resource_spans", 1, F.TYPE_MESSAGE, many, "ResourceSpans"))
    message(
        "ResourceSpans",
        ("resource", 1, F.TYPE_BYTES, one, ""),
        ("scope_spans", 2, F.TYPE_MESSAGE, many, "ScopeSpans"),
        ("schema_url", 3, F.TYPE_BYTES, one, ""),
    )
    message(
        "ScopeSpans",
        ("scope", 1, F.TYPE_BYTES, one, ""),
        ("spans", 2, F.TYPE_BYTES, many, ""),
        ("schema_url", 3, F.TYPE_BYTES, one, ""),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tracesieve.skeleton.Request")
    )


_Request = _skeleton_classes()


class ScopeGroup:
    """The spans of one (resource, scope) pair of a request, still encoded.

    `resource_fields` and `scope_fields` are the encoded non-span fields of the
    ResourceSpans and ScopeSpans, in two parts each (before and after the repeated field)
    so that a rebuilt request keeps the canonical field order."""

    __slots__ = ("resource_fields", "scope_fields", "spans")

    def __init__(
        self,
        resource_fields: tuple[bytes, bytes],
        scope_fields: tuple[bytes, bytes],
        spans: Sequence[bytes],
    ) -> None:
        self.resource_fields = resource_fields
        self.scope_fields = scope_fields
        self.spans = spans


def _fields(first: bytes, schema_url: bytes) -> tuple[bytes, bytes]:
    return (
        frame(TAG_1, first) if first else b"",
        frame(TAG_3, schema_url) if schema_url else b"",
    )


def scope_groups(raw: bytes) -> Iterator[ScopeGroup]:
    """The (resource, scope) groups of an encoded request, each with its spans' encodings.
    Raises `DecodeError` if the bytes are not a request."""
    skeleton = _Request.FromString(raw)
    for rs in skeleton.resource_spans:
        resource_fields = _fields(rs.resource, rs.schema_url)
        for ss in rs.scope_spans:
            yield ScopeGroup(resource_fields, _fields(ss.scope, ss.schema_url), ss.spans)


def _read_varint(b: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(b):
            raise DecodeError("truncated varint")
        c = b[pos]
        pos += 1
        result |= (c & 0x7F) << shift
        if c < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def span_head(span: bytes) -> tuple[bytes, bool]:
    """(trace_id, is_root) of an encoded span.

    Fast path for the canonical encoding every OTLP encoder writes (fields in number
    order: trace_id, span_id, [trace_state], [parent_span_id], ...); anything else is
    read field by field (the last occurrence of a field wins, as protobuf says)."""
    try:
        if span[0] == 0x0A and span[1] == 16 and span[18] == 0x12 and span[19] == 8:
            if len(span) == 28:
                return span[2:18], True
            c = span[28]
            p = 28
            if c == 0x1A and span[29] < 0x80:
                p = 30 + span[29]
                c = span[p] if p < len(span) else 0
            if c != 0x1A:
                return span[2:18], c != 0x22 or span[p + 1] == 0
    except IndexError:
        pass
    return _span_head_slow(span)


def _span_head_slow(span: bytes) -> tuple[bytes, bool]:
    trace_id = b""
    parent = b""
    pos, n = 0, len(span)
    while pos < n:
        key, pos = _read_varint(span, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(span, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _read_varint(span, pos)
            if field == 1:
                trace_id = span[pos : pos + size]
            elif field == 4:
                parent = span[pos : pos + size]
            pos += size
        else:
            raise DecodeError(f"unsupported wire type {wire} in a span")
        if pos > n:
            raise DecodeError("truncated span")
    return trace_id, not parent
