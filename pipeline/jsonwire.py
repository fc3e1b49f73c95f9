"""OTLP JSON straight to protobuf wire bytes: `decode(body) -> (encoding, spans)`.

`pipeline.otlpjson.decode` parses OTLP JSON into protobuf messages through
`json_format.ParseDict` (~25 us a span); the components read wire bytes anyway. Two
implementations give the same encoding:

- `pipeline._jsonwire` (C, ~1.3 us a span): one pass over the text, fields written in the
  order the JSON gives them. It takes on only what it is sure of; anything else (an
  error, a null, a repeated key, an escaped key, an integer with leading zeros) it hands
  to the Python path, which accepts or rejects it and says why.
- `decode_python`: msgspec decodes the JSON into Structs (`pipeline.jsonwire_types`) and
  this module writes them as protobuf does (`ParseDict` then `SerializeToString`: fields
  in number order, defaults left out, oneof members always written), byte for byte.

The tests hold both to protobuf's own JSON parser (decoding the encodings gives equal
messages).

Accepted: lowerCamelCase keys (what OTLP exporters and the Collector's `file` exporter
write; a body with `snake_case` structure keys goes through `otlpjson.decode`); trace and
span ids as hex (OTLP JSON), 64-bit integers as numbers or decimal strings, enums as
numbers or names, doubles as numbers or `"NaN"`/`"Infinity"`/`"-Infinity"`, bytes as
base64. Unknown fields are ignored. Anything else raises `InvalidTracesError` saying where
(`resourceSpans[0].scopeSpans[1].spans[3].traceId: ...`).
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import struct
from collections.abc import Callable
from typing import Final

import msgspec

from pipeline.jsonwire_types import (
    AnyValue,
    EntityRef,
    Event,
    KeyValue,
    Link,
    Resource,
    ResourceSpans,
    Scope,
    ScopeSpans,
    Span,
    Status,
    TracesData,
)
from pipeline.otlpwire import SPAN_KINDS, STATUS_CODES
from pipeline.pdata import InvalidTracesError

__all__ = ["NATIVE", "decode", "decode_python"]

_NATIVE: Callable[[bytes], tuple[bytes, int] | None] | None
try:
    if os.environ.get("TRACESIEVE_PURE_PYTHON") == "1":  # pipeline.native: run as Python
        raise ImportError("TRACESIEVE_PURE_PYTHON=1")
    from pipeline._jsonwire import decode as _NATIVE
except ImportError:  # built without a C compiler: msgspec and this module do it all
    _NATIVE = None
NATIVE: Final = _NATIVE is not None

_DECODER: Final = msgspec.json.Decoder(TracesData)
_MAX_DEPTH: Final = 100  # nested arrays/kvlists (protobuf's recursion limit)
_SMALL: Final = [bytes((i,)) for i in range(128)]
_D: Final = struct.Struct("<d")
_Q: Final = struct.Struct("<Q")
_I: Final = struct.Struct("<I")
_U64: Final = (1 << 64) - 1
_U32: Final = (1 << 32) - 1
_I64_MIN: Final = -(1 << 63)
_I64_MAX: Final = (1 << 63) - 1
_I32_MIN: Final = -(1 << 31)
_I32_MAX: Final = (1 << 31) - 1


# encodings memoised by value: attribute keys recur in every span, and most string values
# (providers, models, operation names) do too
_KEY_FIELDS: dict[str, bytes] = {}
_STRING_VALUES: dict[str, bytes] = {}
# whole KeyValue fields with a string value, by field tag, key and value
_KV_MEMO: dict[bytes, dict[str, dict[str, bytes]]] = {}
_MEMO_LIMIT: Final = 50_000
_MEMO_MAX_LEN: Final = 200  # longer strings (messages, tool results) are not memoised


class _Bad(Exception):
    """A problem at `where`: a path relative to the object being encoded, completed by
    the callers on the way out (no path is built unless something is wrong)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message

    def under(self, prefix: str) -> _Bad:
        self.where = prefix + self.where
        return self


def decode(body: bytes) -> tuple[bytes, int]:
    """The `ExportTraceServiceRequest` encoding of an OTLP JSON `TracesData` (or
    `ExportTraceServiceRequest`), and its span count."""
    if _NATIVE is not None:
        got = _NATIVE(body)
        if got is not None:
            return got
    return decode_python(body)


def decode_python(body: bytes) -> tuple[bytes, int]:
    """`decode` without the C parser: what it leaves to Python (and the tests' twin)."""
    try:
        data = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidTracesError(f"invalid OTLP JSON: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidTracesError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InvalidTracesError("invalid JSON: nested too deeply") from None
    if not data.resourceSpans and b'_spans"' in body:
        return _reference(body)
    try:
        return _request(data)
    except _Bad as exc:
        raise InvalidTracesError(f"{exc.where.lstrip('.')}: {exc.message}") from None


def _reference(body: bytes) -> tuple[bytes, int]:
    """snake_case keys: the protobuf JSON parser, which takes both key styles."""
    from pipeline import otlpjson
    from pipeline.pdata import count_spans

    msg = otlpjson.decode(body)
    return msg.SerializeToString(), count_spans(msg)


# -- framing -------------------------------------------------------------------------------


def _uvarint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _frame(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)
    if n < 128:
        return tag + _SMALL[n] + payload
    return tag + _uvarint(n) + payload


def _utf8(s: str, where: str) -> bytes:
    try:
        return s.encode()
    except UnicodeEncodeError:
        raise _Bad(where, "invalid UTF-8 (a lone surrogate)") from None


def _str_field(tag: bytes, s: str, where: str) -> bytes:
    """A string field, left out when empty (proto3)."""
    if not s:
        return b""
    return _frame(tag, _utf8(s, where))


# -- scalars -------------------------------------------------------------------------------


def _int(v: int | str, lo: int, hi: int, where: str) -> int:
    if isinstance(v, str):
        if not v or v.strip() != v or "_" in v:
            raise _Bad(where, f"invalid integer {v[:40]!r}")
        try:
            n = int(v)
        except ValueError:
            raise _Bad(where, f"invalid integer {v[:40]!r}") from None
    else:
        n = v
    if n < lo or n > hi:
        raise _Bad(where, f"integer out of range: {n}")
    return n


def _enum(v: int | str, names: dict[str, int], where: str) -> int:
    if isinstance(v, str):
        got = names.get(v)
        if got is not None:
            return got
    return _int(v, _I32_MIN, _I32_MAX, where)


def _varint_field(tag: bytes, n: int) -> bytes:
    """An int field (int32/int64/uint32/uint64/enum), left out when 0; negative values as
    their 64-bit two's complement."""
    if n == 0:
        return b""
    if n < 0:
        n += 1 << 64
    return tag + _uvarint(n)


def _fixed64_field(tag: bytes, v: int | str, where: str) -> bytes:
    if v == 0:
        return b""
    n = _int(v, 0, _U64, where)
    return tag + _Q.pack(n) if n else b""


def _fixed32_field(tag: bytes, v: int | str, where: str) -> bytes:
    if v == 0:
        return b""
    n = _int(v, 0, _U32, where)
    return tag + _I.pack(n) if n else b""


def _count_field(tag: bytes, v: int | str, where: str) -> bytes:
    if v == 0:
        return b""
    return _varint_field(tag, _int(v, 0, _U32, where))


def _double(v: float | str, where: str) -> float:
    if isinstance(v, float):
        return v
    if v == "NaN":
        return math.nan
    if v == "Infinity":
        return math.inf
    if v == "-Infinity":
        return -math.inf
    try:
        x = float(v)
    except ValueError:
        raise _Bad(where, f"invalid number {v[:40]!r}") from None
    if math.isnan(x) or math.isinf(x):
        raise _Bad(where, f"invalid number {v[:40]!r}")
    return x


def _id_field(tag: bytes, s: str, size: int, where: str) -> bytes:
    if not s:
        return b""
    if len(s) != 2 * size:
        raise _Bad(where, f"id must be {size} bytes ({size * 2} hex digits), got {len(s)} digits")
    try:
        raw = binascii.unhexlify(s)
    except (binascii.Error, ValueError):
        raise _Bad(where, f"invalid hex id {s[:40]!r}") from None
    return tag + _SMALL[size] + raw


def _bytes(s: str, where: str) -> bytes:
    text = s.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _Bad(where, "invalid base64") from None


# -- attributes ----------------------------------------------------------------------------


def _key_field(key: str) -> bytes:
    got = _KEY_FIELDS.get(key)
    if got is None:
        got = _str_field(b"\x0a", key, ".key")
        if len(key) <= _MEMO_MAX_LEN:
            if len(_KEY_FIELDS) >= _MEMO_LIMIT:
                _KEY_FIELDS.clear()
            _KEY_FIELDS[key] = got
    return got


def _string_value(s: str) -> bytes:
    """AnyValue{string_value: s} (a oneof member: written even when empty)."""
    got = _STRING_VALUES.get(s)
    if got is None:
        got = _frame(b"\x0a", _utf8(s, ".stringValue"))
        if len(s) <= _MEMO_MAX_LEN:
            if len(_STRING_VALUES) >= _MEMO_LIMIT:
                _STRING_VALUES.clear()
            _STRING_VALUES[s] = got
    return got


def _any(v: AnyValue, depth: int) -> bytes:
    """An AnyValue's body."""
    out = b""
    n = 0
    if v.stringValue is not None:
        out = _string_value(v.stringValue)
        n += 1
    if v.boolValue is not None:
        out = b"\x10\x01" if v.boolValue else b"\x10\x00"
        n += 1
    if v.intValue is not None:
        i = _int(v.intValue, _I64_MIN, _I64_MAX, ".intValue")
        out = b"\x18" + _uvarint(i + (1 << 64) if i < 0 else i)
        n += 1
    if v.doubleValue is not None:
        out = b"\x21" + _D.pack(_double(v.doubleValue, ".doubleValue"))
        n += 1
    if v.arrayValue is not None:
        if depth >= _MAX_DEPTH:
            raise _Bad("", "nested too deeply")
        parts = []
        for i, x in enumerate(v.arrayValue.values):
            try:
                parts.append(_frame(b"\x0a", _any(x, depth + 1)))
            except _Bad as exc:
                raise exc.under(f".arrayValue.values[{i}]") from None
        out = _frame(b"\x2a", b"".join(parts))
        n += 1
    if v.kvlistValue is not None:
        if depth >= _MAX_DEPTH:
            raise _Bad("", "nested too deeply")
        try:
            out = _frame(b"\x32", _key_values(b"\x0a", v.kvlistValue.values, depth + 1))
        except _Bad as exc:
            raise exc.under(".kvlistValue") from None
        n += 1
    if v.bytesValue is not None:
        out = _frame(b"\x3a", _bytes(v.bytesValue, ".bytesValue"))
        n += 1
    if v.stringValueStrindex is not None:
        i = _int(v.stringValueStrindex, _I32_MIN, _I32_MAX, ".stringValueStrindex")
        out = b"\x40" + _uvarint(i + (1 << 64) if i < 0 else i)
        n += 1
    if n > 1:
        raise _Bad("", "more than one value set in an AnyValue")
    return out


def _key_values(tag: bytes, kvs: list[KeyValue], depth: int) -> bytes:
    """Repeated KeyValue fields under `tag` (attributes, or a kvlist's values)."""
    memo = _KV_MEMO.get(tag)
    if memo is None:
        memo = _KV_MEMO[tag] = {}
    parts = []
    for i, kv in enumerate(kvs):
        try:
            v = kv.value
            if v is None:
                parts.append(_frame(tag, _key_field(kv.key)))
                continue
            s = v.stringValue
            if (
                s is not None
                and v.intValue is None
                and v.boolValue is None
                and v.doubleValue is None
                and v.arrayValue is None
                and v.kvlistValue is None
                and v.bytesValue is None
                and v.stringValueStrindex is None
            ):
                # the commonest attribute, whole: memoised by key, then value
                by_value = memo.get(kv.key)
                if by_value is None:
                    if len(memo) >= _MEMO_LIMIT:
                        memo.clear()
                    by_value = memo[kv.key] = {}
                got = by_value.get(s)
                if got is None:
                    got = _frame(tag, _key_field(kv.key) + _frame(b"\x12", _string_value(s)))
                    if len(s) <= _MEMO_MAX_LEN:
                        if len(by_value) >= _MEMO_LIMIT:
                            by_value.clear()
                        by_value[s] = got
                parts.append(got)
                continue
            value = _any(v, depth)
            parts.append(_frame(tag, _key_field(kv.key) + _frame(b"\x12", value)))
        except _Bad as exc:
            raise exc.under(f".values[{i}]" if depth else f".attributes[{i}]") from None
    return b"".join(parts)


def _attributes(tag: bytes, kvs: list[KeyValue]) -> bytes:
    return _key_values(tag, kvs, 0) if kvs else b""


# -- messages ------------------------------------------------------------------------------


def _status(st: Status) -> bytes:
    return _str_field(b"\x12", st.message, ".message") + _varint_field(
        b"\x18", _enum(st.code, STATUS_CODES, ".code")
    )


def _event(ev: Event) -> bytes:
    return b"".join(
        (
            _fixed64_field(b"\x09", ev.timeUnixNano, ".timeUnixNano"),
            _str_field(b"\x12", ev.name, ".name"),
            _attributes(b"\x1a", ev.attributes),
            _count_field(b"\x20", ev.droppedAttributesCount, ".droppedAttributesCount"),
        )
    )


def _link(ln: Link) -> bytes:
    return b"".join(
        (
            _id_field(b"\x0a", ln.traceId, 16, ".traceId"),
            _id_field(b"\x12", ln.spanId, 8, ".spanId"),
            _str_field(b"\x1a", ln.traceState, ".traceState"),
            _attributes(b"\x22", ln.attributes),
            _count_field(b"\x28", ln.droppedAttributesCount, ".droppedAttributesCount"),
            _fixed32_field(b"\x35", ln.flags, ".flags"),
        )
    )


def _span(sp: Span) -> bytes:
    parts = [
        _id_field(b"\x0a", sp.traceId, 16, ".traceId"),
        _id_field(b"\x12", sp.spanId, 8, ".spanId"),
        _str_field(b"\x1a", sp.traceState, ".traceState"),
        _id_field(b"\x22", sp.parentSpanId, 8, ".parentSpanId"),
        _str_field(b"\x2a", sp.name, ".name"),
        _varint_field(b"\x30", _enum(sp.kind, SPAN_KINDS, ".kind")),
        _fixed64_field(b"\x39", sp.startTimeUnixNano, ".startTimeUnixNano"),
        _fixed64_field(b"\x41", sp.endTimeUnixNano, ".endTimeUnixNano"),
        _attributes(b"\x4a", sp.attributes),
        _count_field(b"\x50", sp.droppedAttributesCount, ".droppedAttributesCount"),
    ]
    for i, ev in enumerate(sp.events):
        try:
            parts.append(_frame(b"\x5a", _event(ev)))
        except _Bad as exc:
            raise exc.under(f".events[{i}]") from None
    parts.append(_count_field(b"\x60", sp.droppedEventsCount, ".droppedEventsCount"))
    for i, ln in enumerate(sp.links):
        try:
            parts.append(_frame(b"\x6a", _link(ln)))
        except _Bad as exc:
            raise exc.under(f".links[{i}]") from None
    parts.append(_count_field(b"\x70", sp.droppedLinksCount, ".droppedLinksCount"))
    if sp.status is not None:
        try:
            parts.append(_frame(b"\x7a", _status(sp.status)))
        except _Bad as exc:
            raise exc.under(".status") from None
    parts.append(_fixed32_field(b"\x85\x01", sp.flags, ".flags"))
    return b"".join(parts)


def _scope(sc: Scope) -> bytes:
    return b"".join(
        (
            _str_field(b"\x0a", sc.name, ".name"),
            _str_field(b"\x12", sc.version, ".version"),
            _attributes(b"\x1a", sc.attributes),
            _count_field(b"\x20", sc.droppedAttributesCount, ".droppedAttributesCount"),
        )
    )


def _entity_ref(e: EntityRef) -> bytes:
    parts = [
        _str_field(b"\x0a", e.schemaUrl, ".schemaUrl"),
        _str_field(b"\x12", e.type, ".type"),
    ]
    for k in e.idKeys:
        parts.append(_frame(b"\x1a", _utf8(k, ".idKeys")))
    for k in e.descriptionKeys:
        parts.append(_frame(b"\x22", _utf8(k, ".descriptionKeys")))
    return b"".join(parts)


def _resource(res: Resource) -> bytes:
    parts = [
        _attributes(b"\x0a", res.attributes),
        _count_field(b"\x10", res.droppedAttributesCount, ".droppedAttributesCount"),
    ]
    for i, e in enumerate(res.entityRefs):
        try:
            parts.append(_frame(b"\x1a", _entity_ref(e)))
        except _Bad as exc:
            raise exc.under(f".entityRefs[{i}]") from None
    return b"".join(parts)


def _scope_spans(ss: ScopeSpans) -> tuple[bytes, int]:
    parts = []
    if ss.scope is not None:
        try:
            parts.append(_frame(b"\x0a", _scope(ss.scope)))
        except _Bad as exc:
            raise exc.under(".scope") from None
    n = 0
    for sp in ss.spans:
        try:
            parts.append(_frame(b"\x12", _span(sp)))
        except _Bad as exc:
            raise exc.under(f".spans[{n}]") from None
        n += 1
    parts.append(_str_field(b"\x1a", ss.schemaUrl, ".schemaUrl"))
    return b"".join(parts), n


def _resource_spans(rs: ResourceSpans) -> tuple[bytes, int]:
    parts = []
    if rs.resource is not None:
        try:
            parts.append(_frame(b"\x0a", _resource(rs.resource)))
        except _Bad as exc:
            raise exc.under(".resource") from None
    n = 0
    for j, ss in enumerate(rs.scopeSpans):
        try:
            body, k = _scope_spans(ss)
        except _Bad as exc:
            raise exc.under(f".scopeSpans[{j}]") from None
        parts.append(_frame(b"\x12", body))
        n += k
    parts.append(_str_field(b"\x1a", rs.schemaUrl, ".schemaUrl"))
    return b"".join(parts), n


def _request(data: TracesData) -> tuple[bytes, int]:
    parts = []
    n = 0
    for i, rs in enumerate(data.resourceSpans):
        try:
            body, k = _resource_spans(rs)
        except _Bad as exc:
            raise exc.under(f"resourceSpans[{i}]") from None
        parts.append(_frame(b"\x0a", body))
        n += k
    return b"".join(parts), n
