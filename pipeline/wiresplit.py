"""Split an encoded `ExportTraceServiceRequest` by trace and by size on the wire, without
decoding spans or encoding them again.

Each span is kept as the exact bytes of its field (tag, length, body) and re-used as is.
Of a ResourceSpans, every field but `scope_spans` (resource, schema_url, unknown fields)
is kept as one `head` blob, in its original order; likewise every field of a ScopeSpans
but `spans`. A part is rebuilt as heads plus the chosen children. By protobuf's rules
(fields in any order, repeated entries appended, concatenated encodings merge) the part
decodes to exactly the resource, scope and spans it was cut from.

Cost: one pass in Python over the resource/scope/span framing (never inside a span,
except the trace id, which encoders write first), then byte joins.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Final, TypeVar

from pipeline.otlpwire import varint
from pipeline.pdata import InvalidTracesError

__all__ = [
    "Resource",
    "Scope",
    "SpanRef",
    "build",
    "by_trace",
    "chunk",
    "fields",
    "group",
    "parse",
    "size_bound",
    "trace_id",
]

K = TypeVar("K", bound=Hashable)

# wire types
_VARINT: Final = 0
_I64: Final = 1
_LEN: Final = 2
_I32: Final = 5
_RS_TAG: Final = b"\x0a"  # ExportTraceServiceRequest.resource_spans = 1, LEN
_SS_TAG: Final = b"\x12"  # ResourceSpans.scope_spans = 2, LEN
_SPAN_TAG: Final = 0x12  # ScopeSpans.spans = 2, LEN
_WRAP: Final = 6  # a LEN wrapper's tag + longest length prefix we count on (1 + 5)


class Resource:
    __slots__ = ("head", "index")

    def __init__(self, head: bytes, index: int) -> None:
        self.head = head
        self.index = index


class Scope:
    __slots__ = ("head", "resource")

    def __init__(self, head: bytes, resource: Resource) -> None:
        self.head = head
        self.resource = resource


# a span: its scope, its complete field bytes (tag + length + Span), its trace id
SpanRef = tuple[Scope, bytes, bytes]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise InvalidTracesError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise InvalidTracesError("varint too long")


def _skip(buf: bytes, pos: int, wire: int, end: int) -> int:
    """Position after a field's value, given the position after its tag."""
    if wire == _VARINT:
        _, pos = _varint(buf, pos)
    elif wire == _LEN:
        n, pos = _varint(buf, pos)
        pos += n
    elif wire == _I64:
        pos += 8
    elif wire == _I32:
        pos += 4
    else:  # groups (3, 4) are not used by OTLP; anything else is corrupt
        raise InvalidTracesError(f"unsupported wire type {wire}")
    if pos > end:
        raise InvalidTracesError("field runs past the end of its message")
    return pos


def fields(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """(key, start of field, start of value, end of field) for each field; for LEN
    fields the value starts after the length prefix. key = field number << 3 | wire type."""
    out = []
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos)
        if key & 7 == _LEN:
            n, vpos = _varint(buf, pos)
            pos = vpos + n
            if pos > end:
                raise InvalidTracesError("field runs past the end of its message")
            out.append((key, start, vpos, pos))
        else:
            pos = _skip(buf, pos, key & 7, end)
            out.append((key, start, pos, pos))
    if pos != end:
        raise InvalidTracesError("field runs past the end of its message")
    return out


def parse(raw: bytes) -> list[SpanRef]:
    """Every span of an encoded request, in order. Raises `InvalidTracesError` on
    malformed framing."""
    out: list[SpanRef] = []
    append = out.append
    ri = 0
    for key, _, rs_start, rs_end in fields(raw, 0, len(raw)):
        if key != 0x0A:
            continue  # not resource_spans: an unknown top-level field, nothing to carry
        head: list[bytes] = []
        scopes: list[tuple[int, int]] = []
        for fkey, fstart, vstart, fend in fields(raw, rs_start, rs_end):
            if fkey == 0x12:  # scope_spans = 2, LEN
                scopes.append((vstart, fend))
            else:
                head.append(raw[fstart:fend])
        res = Resource(b"".join(head), ri)
        ri += 1
        for ss_start, ss_end in scopes:
            shead: list[bytes] = []
            scope = Scope(b"", res)  # head filled in below
            pos = ss_start
            while pos < ss_end:
                start = pos
                if raw[pos] == _SPAN_TAG:  # spans = 2, LEN; the length inline when short
                    b = raw[pos + 1]
                    if b < 0x80:
                        vpos = pos + 2
                        pos = vpos + b
                    else:
                        b2 = raw[pos + 2]
                        if b2 < 0x80:
                            vpos = pos + 3
                            pos = vpos + ((b & 0x7F) | (b2 << 7))
                        else:
                            n, vpos = _varint(raw, pos + 1)
                            pos = vpos + n
                    if pos > ss_end:
                        raise InvalidTracesError("span runs past the end of its scope")
                    span = raw[start:pos]
                    if raw[vpos : vpos + 2] == b"\x0a\x10":  # trace_id, written first
                        append((scope, span, raw[vpos + 2 : vpos + 18]))
                    else:
                        append((scope, span, trace_id(span)))
                    continue
                key, pos = _varint(raw, pos)
                pos = _skip(raw, pos, key & 7, ss_end)
                shead.append(raw[start:pos])
            scope.head = b"".join(shead)
    return out


def trace_id(span: bytes) -> bytes:
    """The trace id of a span field (tag + length + Span), or b"" if it has none."""
    pos = 1  # skip the span's own tag and length prefix
    while span[pos] & 0x80:
        pos += 1
    pos += 1
    end = len(span)
    found = b""
    while pos < end:
        key, pos = _varint(span, pos)
        if key == 0x0A:
            n, pos = _varint(span, pos)
            found = span[pos : pos + n]
            pos += n
        else:
            pos = _skip(span, pos, key & 7, end)
    return found


def group(refs: Sequence[SpanRef], key: Callable[[bytes], K]) -> dict[K, list[SpanRef]]:
    """Spans grouped by `key(trace_id)`, each group in original order."""
    groups: dict[K, list[SpanRef]] = {}
    for ref in refs:
        k = key(ref[2])
        g = groups.get(k)
        if g is None:
            groups[k] = [ref]
        else:
            g.append(ref)
    return groups


def by_trace(refs: Sequence[SpanRef]) -> dict[bytes, list[SpanRef]]:
    """Spans grouped by trace id, each group in original order."""
    groups: dict[bytes, list[SpanRef]] = {}
    for ref in refs:
        g = groups.get(ref[2])
        if g is None:
            groups[ref[2]] = [ref]
        else:
            g.append(ref)
    return groups


def build(refs: Sequence[SpanRef]) -> bytes:
    """Encode an ExportTraceServiceRequest holding these spans (in their order)."""
    out: list[bytes] = []
    i, n = 0, len(refs)
    while i < n:
        res = refs[i][0].resource
        rs: list[bytes] = [res.head]
        while i < n and refs[i][0].resource is res:
            scope = refs[i][0]
            ss: list[bytes] = [scope.head]
            while i < n and refs[i][0] is scope:
                ss.append(refs[i][1])
                i += 1
            body = b"".join(ss)
            rs.append(_SS_TAG + varint(len(body)) + body)
        body = b"".join(rs)
        out.append(_RS_TAG + varint(len(body)) + body)
    return b"".join(out)


def size_bound(refs: Sequence[SpanRef]) -> int:
    """An upper bound of `len(build(refs))`."""
    total = 0
    last_scope: Scope | None = None
    last_res: Resource | None = None
    for scope, span, _ in refs:
        total += len(span)
        if scope is not last_scope:
            total += len(scope.head) + _WRAP
            if scope.resource is not last_res:
                total += len(scope.resource.head) + _WRAP
            last_scope, last_res = scope, scope.resource
    return total


def chunk(refs: Sequence[SpanRef], budget: int) -> tuple[list[list[SpanRef]], list[SpanRef]]:
    """Cut spans into runs whose encoding is at most `budget` bytes. A span that cannot
    fit even alone is returned in the second list (oversized) and left out."""
    parts: list[list[SpanRef]] = []
    oversized: list[SpanRef] = []
    cur: list[SpanRef] = []
    size = 0
    last_scope: Scope | None = None
    last_res: Resource | None = None
    for ref in refs:
        scope, span, _ = ref
        alone = len(span) + len(scope.head) + len(scope.resource.head) + 2 * _WRAP
        if alone > budget:
            oversized.append(ref)
            continue
        add = len(span)
        if scope is not last_scope:
            add += len(scope.head) + _WRAP
            if scope.resource is not last_res:
                add += len(scope.resource.head) + _WRAP
        if cur and size + add > budget:
            parts.append(cur)
            cur, size, add = [], 0, alone
        cur.append(ref)
        size += add
        last_scope, last_res = scope, scope.resource
    if cur:
        parts.append(cur)
    return parts, oversized
