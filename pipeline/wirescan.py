"""Reading spans straight from an encoded `ExportTraceServiceRequest`, and appending
attributes to spans in the encoding, without decoding into protobuf messages.

The GenAI processors read a handful of fields of each span and a few attributes of some;
through protobuf's Python API each read is a wrapper object (~0.1-0.3 us). Here one pass
over the wire bytes gives every span's cheap fields, a second reads only the wanted
attributes of the spans that need them, and writes are spliced into the encoding.

A C extension (`pipeline._wirescan`) does the work when it was built; this module's pure
Python functions are the same algorithm, used when it was not or when
`TRACESIEVE_PURE_PYTHON=1` (see `pipeline.native`), and tested against it.
The C functions share equal short ASCII strings (span names, attribute values such as
providers and models) through small caches: decoded once, hashed once by the dicts they
meet (values are equal either way; do not rely on identity).

- ``spans(raw) -> list[SpanInfo]``: per span, in wire order, a tuple
  ``(scope_name, name, kind, trace_id, key, parent_key, start, end, status_code,
  body_start, body_end)``: ``key`` is ``trace_id + span_id``, ``parent_key`` is
  ``trace_id + parent_span_id`` or ``b""`` when the span has no parent;
  ``body_start``/``body_end`` delimit the Span message (after its tag and length).
- ``attributes(raw, body_start, body_end, keys, unset) -> list[tuple[str, value]]``: the
  span's attributes in wire order, only those whose key is in ``keys`` (a frozenset; None:
  all). Values are plain Python: str, bool, int, float, bytes, list (array), dict (kvlist);
  an AnyValue with no value set gives ``unset``.
- ``Slots(keys)``: attribute keys compiled for lookup straight from the wire: a dict
  ``key -> (slot, priority)`` (slot in 0..63) or an iterable of keys (all in slot 0).
  ``attributes`` takes one in place of a frozenset (faster: a key not wanted costs no
  Python object).
- ``collect(raw, body_start, body_end, slots, unset) -> (by_slot, mask)``: of the span's
  attributes whose keys are in ``slots``, ``by_slot`` (``slots.n`` long) gives per slot
  the value of its key present with the lowest priority number (the last occurrence of a
  repeated key; None: none present), and ``mask`` has bit ``slot`` set for each slot
  present. ``Slots(keys, events=slot)`` also counts the span's events in the same pass:
  ``by_slot[slot]`` is their number and its bit is set when there is at least one (no key
  should use that slot). Knowing that a span has events costs nothing more.
- ``events(raw, body_start, body_end, names, keys) -> [(time_unix_nano, name, attrs)]``:
  the span's events (in wire order) whose name, up to its first ``=``, is a key of the
  `Slots` ``names`` (``fallback_triggered=true`` matches ``fallback_triggered``), or that
  carry an attribute whose key is in ``names``; ``attrs`` are that event's attributes
  whose keys are in the `Slots` ``keys``, as ``(key, value)`` in wire order (an unset
  value is None).
  Other events cost a walk over their fields, no Python object.
- ``ranges(raw, body_start, body_end, attr_prefixes, event_prefixes) -> list``: where
  the span holds attributes and events, without reading them: per prefix in
  ``attr_prefixes`` (a tuple of bytes), then per prefix in ``event_prefixes``, the bytes
  ``(start, end)`` of ``raw`` from the first attribute whose key starts with it (its
  field's tag) to the end of the last one, or None when none does; events by the start
  of their name. Keys and names are compared as bytes; no Python object is made for them.
- ``unflatten(raw, body_start, body_end, prefixes, unset) -> list[dict]``: flattened
  attributes (``llm.input_messages.3.message.role``) grouped by index: per prefix in
  ``prefixes`` (a tuple of bytes), ``{N: (fields, groups)}`` of the attributes whose key
  is the prefix, then ``N`` (1 to 18 ASCII digits), ``.`` and the rest. A rest
  ``G.M.R`` (``M`` the first segment of 1 to 18 ASCII digits with text before and after
  it) goes to ``groups[G][M][R]`` (``message.tool_calls`` -> 0 -> ``tool_call.id``), any
  other to ``fields[rest]``; in wire order, so a repeated key's last value stays. Values
  as ``attributes`` gives them; a key with several prefixes goes under each.
- ``ids_ok(raw) -> bool``: whether every span's trace_id is empty or 16 bytes and its
  span_id and parent_span_id empty or 8 (what the OTLP receivers require; `validate`'s
  second half).
- ``splice(raw, patches) -> bytes``: the request with attributes appended to spans and,
  optionally, some attributes removed: ``patches`` is a list of
  ``(body_start, append_bytes, drop_keys_or_None)`` sorted by ``body_start``, each naming
  a span by its body start as given by ``spans``. ``append_bytes`` are encoded Span
  fields (tag 9 KeyValue frames); dropped attributes are those whose key is in
  ``drop_keys``. Several patches of one span (in a row) add up: the span's attributes
  whose key is in any of their ``drop_keys`` are dropped, then their ``append_bytes``
  are appended in order. Everything else is kept byte for byte.
- ``group(raw) -> (groups, rooted)``: the spans grouped as `groupbytrace` holds them: per
  ScopeSpans, ``((resource, schema_url), (scope, scope_schema_url), by_tid)`` where the
  first four are the encoded fields as they are on the wire (tag and length included;
  every occurrence, joined; ``b""``: absent) and ``by_tid`` maps each trace id, in order of first
  appearance, to ``(spans, n)``: its n spans' ``ScopeSpans.spans`` fields, joined; and
  ``rooted``, the trace ids with a span without a parent span id (the last occurrence).
- ``check(raw) -> int``: the request's span count if protobuf's decoder would accept
  `raw` (framing, wire types, strict UTF-8 of string fields, nesting up to 100 levels;
  the message types come from the OTLP descriptors), else `WireError`; without decoding.
- ``validate(raw) -> (spans, ids_ok)``: `check` and `ids_ok` in one pass (in C). The
  receivers' validation.
- ``untrack(objects)``: takes the objects of a list off the cyclic GC's lists (C only;
  a no-op in Python). For objects whose only reference cycles their owner cuts itself
  (the GenAI index's records): reference counting frees them, the GC never walks them.

Protobuf semantics are followed where they matter: the last occurrence of a scalar field
wins, repeated occurrences of a message field merge, unknown fields are skipped (groups
included). Malformed input raises `WireError` (a ValueError); input the OTLP receivers
accepted never does.
"""

from __future__ import annotations

import operator
import os
import struct
from collections.abc import Iterable
from typing import Any

from pipeline.otlpwire import varint

__all__ = [
    "NATIVE",
    "FlatRecord",
    "Row",
    "Slots",
    "SpanInfo",
    "WireError",
    "attributes",
    "check",
    "collect",
    "events",
    "group",
    "ids_ok",
    "put_flat",
    "ranges",
    "spans",
    "splice",
    "unflatten",
    "untrack",
    "validate",
]

SpanInfo = tuple[str, str, int, bytes, bytes, bytes, int, int, int, int, int]
# A SpanInfo as a plain tuple: compiled (mypyc) loops that read a few fields iterate over
# `list[Row]`, since a typed SpanInfo is unboxed (all eleven fields) on every read
Row = tuple[Any, ...]
Patch = tuple[int, bytes, frozenset[str] | None]


class WireError(ValueError):
    """Malformed protobuf encoding."""


_MAX_DEPTH = 100  # nesting of AnyValue arrays/kvlists and of groups (upb's default limit)
_D = struct.Struct("<d")
_Q = struct.Struct("<Q")


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def _skip(buf: bytes, pos: int, key: int, end: int, depth: int = 0) -> int:
    """Position after a field's value, given the position after its tag."""
    wire = key & 7
    if wire == 0:
        _, pos = _varint(buf, pos, end)
    elif wire == 2:
        n, pos = _varint(buf, pos, end)
        if n > end - pos:
            raise WireError("field runs past the end of its message")
        pos += n
    elif wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 3:  # a group: fields up to the matching end-group tag
        if depth >= _MAX_DEPTH:
            raise WireError("groups nested too deeply")
        while True:
            k, pos = _varint(buf, pos, end)
            if k & 7 == 4:
                if k >> 3 != key >> 3:
                    raise WireError("mismatched end-group tag")
                break
            pos = _skip(buf, pos, k, end, depth + 1)
    else:
        raise WireError(f"invalid wire type {wire}")
    if pos > end:
        raise WireError("field runs past the end of its message")
    return pos


def _fields(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """(key, start of field, start of value, end of field); a LEN value starts after its
    length prefix."""
    out = []
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos, end)
        if key >> 3 == 0:
            raise WireError("field number 0")
        if key & 7 == 2:
            n, vpos = _varint(buf, pos, end)
            if n > end - vpos:
                raise WireError("field runs past the end of its message")
            pos = vpos + n
        else:
            vpos = pos
            pos = _skip(buf, pos, key, end)
        out.append((key, start, vpos, pos))
    return out


def _str(buf: bytes, start: int, end: int) -> str:
    try:
        return buf[start:end].decode()
    except UnicodeDecodeError as exc:
        raise WireError(f"invalid UTF-8 in a string field: {exc}") from None


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _py_spans(raw: bytes) -> list[SpanInfo]:
    out: list[SpanInfo] = []
    for key, _, rs_start, rs_end in _fields(raw, 0, len(raw)):
        if key != 0x0A:  # resource_spans = 1, LEN
            continue
        for fkey, _, ss_start, ss_end in _fields(raw, rs_start, rs_end):
            if fkey != 0x12:  # scope_spans = 2, LEN
                continue
            fields = _fields(raw, ss_start, ss_end)
            scope = ""
            for k, _, v0, v1 in fields:
                if k == 0x0A:  # scope = 1
                    for sk, _, s0, s1 in _fields(raw, v0, v1):
                        if sk == 0x0A:  # name = 1
                            scope = _str(raw, s0, s1)
            for k, _, v0, v1 in fields:
                if k == 0x12:  # spans = 2
                    out.append(_py_span(raw, scope, v0, v1))
    return out


def _py_span(raw: bytes, scope: str, start: int, end: int) -> SpanInfo:
    tid = sid = pid = b""
    name = ""
    kind = t0 = t1 = code = 0
    for k, _, v0, v1 in _fields(raw, start, end):
        if k == 0x0A:
            tid = raw[v0:v1]
        elif k == 0x12:
            sid = raw[v0:v1]
        elif k == 0x22:
            pid = raw[v0:v1]
        elif k == 0x2A:
            name = _str(raw, v0, v1)
        elif k == 0x30:
            kind = _int32(_varint(raw, v0, v1)[0])
        elif k == 0x39:
            t0 = _Q.unpack_from(raw, v0)[0]
        elif k == 0x41:
            t1 = _Q.unpack_from(raw, v0)[0]
        elif k == 0x7A:  # status = 15
            for sk, _, s0, s1 in _fields(raw, v0, v1):
                if sk == 0x18:  # code = 3
                    code = _int32(_varint(raw, s0, s1)[0])
                elif sk == 0x12:
                    _str(raw, s0, s1)  # message: validated like the decoder does
        elif k in (0x1A,):
            _str(raw, v0, v1)  # trace_state
    return (scope, name, kind, tid, tid + sid, tid + pid if pid else b"", t0, t1, code, start, end)


def _py_value(raw: bytes, start: int, end: int, unset: Any, depth: int) -> Any:
    """An AnyValue's plain value (last oneof member wins; repeated arrays/kvlists merge)."""
    if depth > _MAX_DEPTH:
        raise WireError("values nested too deeply")
    which = 0
    val: Any = unset
    for k, _, v0, v1 in _fields(raw, start, end):
        f = k >> 3
        if f == 1 and k & 7 == 2:
            which, val = 1, _str(raw, v0, v1)
        elif f == 2 and k & 7 == 0:
            which, val = 2, _varint(raw, v0, v1)[0] != 0
        elif f == 3 and k & 7 == 0:
            v = _varint(raw, v0, v1)[0]
            which, val = 3, v - (1 << 64) if v >= 1 << 63 else v
        elif f == 4 and k & 7 == 1:
            which, val = 4, _D.unpack_from(raw, v0)[0]
        elif f == 5 and k & 7 == 2:
            items = [
                _py_value(raw, a0, a1, unset, depth + 1)
                for ak, _, a0, a1 in _fields(raw, v0, v1)
                if ak == 0x0A
            ]
            if which == 5:
                val.extend(items)
            else:
                which, val = 5, items
        elif f == 6 and k & 7 == 2:
            if which != 6:
                which, val = 6, {}
            for ak, _, a0, a1 in _fields(raw, v0, v1):
                if ak == 0x0A:
                    kk, vv = _py_kv(raw, a0, a1, unset, depth + 1)
                    val[kk] = vv
        elif f == 7 and k & 7 == 2:
            which, val = 7, raw[v0:v1]
    return val


def _py_kv(raw: bytes, start: int, end: int, unset: Any, depth: int) -> tuple[str, Any]:
    key = ""
    value: Any = unset
    vals: list[tuple[int, int]] = []
    for k, _, v0, v1 in _fields(raw, start, end):
        if k == 0x0A:
            key = _str(raw, v0, v1)
        elif k == 0x12:
            vals.append((v0, v1))
    if len(vals) == 1:
        value = _py_value(raw, vals[0][0], vals[0][1], unset, depth)
    elif vals:  # repeated occurrences of a message field merge: parse them as one
        joined = b"".join(raw[a:b] for a, b in vals)
        value = _py_value(joined, 0, len(joined), unset, depth)
    return key, value


def _py_attributes(
    raw: bytes, start: int, end: int, keys: frozenset[str] | _PySlots | None, unset: Any = None
) -> list[tuple[str, Any]]:
    if not 0 <= start <= end <= len(raw):
        raise IndexError("span bounds out of range")
    if isinstance(keys, _PySlots):
        keys = keys.keys
    if keys is not None and not isinstance(keys, (set, frozenset)):
        raise TypeError("keys: a frozenset, Slots or None")
    out = []
    for k, _, v0, v1 in _fields(raw, start, end):
        if k != 0x4A:  # attributes = 9, LEN
            continue
        if keys is not None and _attr_key(raw, v0, v1) not in keys:
            continue  # the key alone first: most attributes are not wanted
        out.append(_py_kv(raw, v0, v1, unset, 0))
    return out


class _PySlots:
    """`Slots` in Python."""

    def __init__(self, keys: dict[str, tuple[int, int]] | Iterable[str], events: int = -1) -> None:
        table = dict(keys) if isinstance(keys, dict) else {k: (0, 0) for k in keys}
        for k, (slot, _) in table.items():
            if not isinstance(k, str) or not 0 <= slot < 64:
                raise ValueError("Slots: str keys, slots in 0..63")
        if not -1 <= events < 64:
            raise ValueError("Slots: events is a slot in 0..63")
        self.table: dict[str, tuple[int, int]] = table
        self.keys = frozenset(table)
        self.events: int | None = events if events >= 0 else None
        self.n = max(max((slot for slot, _ in table.values()), default=-1), events) + 1


def _py_collect(
    raw: bytes, start: int, end: int, slots: _PySlots, unset: Any = None
) -> tuple[list[Any], int]:
    table = slots.table
    by: list[Any] = [None] * slots.n
    best = [0] * slots.n
    mask = 0
    for key, value in _py_attributes(raw, start, end, slots.keys, unset):
        f, prio = table[key]
        if not mask & (1 << f) or prio <= best[f]:
            best[f] = prio
            mask |= 1 << f
            by[f] = value
    if slots.events is not None:
        n = sum(1 for k, _, _, _ in _fields(raw, start, end) if k == 0x5A)  # events = 11
        if n:
            by[slots.events] = n
            mask |= 1 << slots.events
    return by, mask


def _py_events(
    raw: bytes, start: int, end: int, names: _PySlots, keys: _PySlots
) -> list[tuple[int, str, list[tuple[str, Any]]]]:
    if not 0 <= start <= end <= len(raw):
        raise IndexError("span bounds out of range")
    if not isinstance(names, _PySlots) or not isinstance(keys, _PySlots):
        raise TypeError("events: names and keys must be Slots")
    out = []
    for k, _, v0, v1 in _fields(raw, start, end):
        if k != 0x5A:  # events = 11, LEN
            continue
        t = 0
        name = ""
        kvs: list[tuple[int, int]] = []
        for ek, _, e0, e1 in _fields(raw, v0, v1):
            if ek == 0x09:  # time_unix_nano = 1, fixed64
                t = _Q.unpack_from(raw, e0)[0]
            elif ek == 0x12:  # name = 2
                name = _str(raw, e0, e1)
            elif ek == 0x1A:  # attributes = 3
                kvs.append((e0, e1))
        akeys = [_attr_key(raw, a, b) for a, b in kvs]
        if name.split("=", 1)[0] not in names.keys and not any(k in names.keys for k in akeys):
            continue
        wanted = [ab for ab, k in zip(kvs, akeys, strict=True) if k in keys.keys]
        out.append((t, name, [_py_kv(raw, a, b, None, 0) for a, b in wanted]))
    return out


def _key_bytes(raw: bytes, start: int, end: int) -> bytes:
    """A KeyValue's (or Event's, with `tag` 0x12) last key field, as bytes; earlier ones
    validated as protobuf's decoder does."""
    return _last_str_bytes(raw, start, end, 0x0A)


def _last_str_bytes(raw: bytes, start: int, end: int, tag: int) -> bytes:
    found: tuple[int, int] | None = None
    for k, _, v0, v1 in _fields(raw, start, end):
        if k == tag:
            if found is not None:
                _str(raw, *found)
            found = (v0, v1)
    return raw[found[0] : found[1]] if found is not None else b""


def _prefixes(t: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(t, tuple) or len(t) > 32 or not all(isinstance(p, bytes) for p in t):
        raise TypeError(f"{what}: a tuple of at most 32 bytes")
    return t


def _bounds(raw: bytes, start: int, end: int) -> None:
    if not 0 <= start <= end <= len(raw):
        raise IndexError("span bounds out of range")


def _py_ranges(
    raw: bytes,
    start: int,
    end: int,
    attr_prefixes: tuple[bytes, ...],
    event_prefixes: tuple[bytes, ...],
) -> list[tuple[int, int] | None]:
    na = len(_prefixes(attr_prefixes, "ranges: attr_prefixes"))
    prefixes = attr_prefixes + _prefixes(event_prefixes, "ranges: event_prefixes")
    _bounds(raw, start, end)
    out: list[tuple[int, int] | None] = [None] * len(prefixes)
    for k, f0, v0, f1 in _fields(raw, start, end):
        if k == 0x4A:  # attributes = 9
            key, which = _key_bytes(raw, v0, f1), range(na)
        elif k == 0x5A:  # events = 11: by name = 2
            key, which = _last_str_bytes(raw, v0, f1, 0x12), range(na, len(prefixes))
        else:
            continue
        for i in which:
            if key.startswith(prefixes[i]):
                got = out[i]
                out[i] = (f0 if got is None else got[0], f1)
    return out


def _index(s: bytes) -> int:
    """1 to 18 ASCII digits as an int; -1: not that."""
    if not 1 <= len(s) <= 18 or not all(48 <= c <= 57 for c in s):
        return -1
    return int(s)


FlatRecord = tuple[dict[str, Any], dict[str, dict[int, dict[str, Any]]]]


def _py_unflatten(
    raw: bytes, start: int, end: int, prefixes: tuple[bytes, ...], unset: Any = None
) -> list[dict[int, FlatRecord]]:
    _prefixes(prefixes, "unflatten: prefixes")
    _bounds(raw, start, end)
    out: list[dict[int, FlatRecord]] = [{} for _ in prefixes]
    for k, _, v0, v1 in _fields(raw, start, end):
        if k != 0x4A:  # attributes = 9
            continue
        key = _key_bytes(raw, v0, v1)
        value: Any = None
        made = False
        for i, prefix in enumerate(prefixes):
            if not key.startswith(prefix) or not key:
                continue
            if not made:
                value, made = _py_kv(raw, v0, v1, unset, 0)[1], True
            put_flat(out[i], key[len(prefix) :], value)
    return out


def put_flat(by: dict[int, FlatRecord], rest: bytes, value: Any) -> None:
    """`unflatten`'s rule for one attribute, `rest` being its key after the prefix: also
    for values that are not on the wire (`processors.genai.content.read_values`)."""
    head, dot, rest = rest.partition(b".")
    n = _index(head)
    if not dot or n < 0:
        return
    segs = rest.split(b".")
    group = None
    for j in range(1, len(segs) - 1):  # a segment with text before and after it
        if _index(segs[j]) >= 0:
            g, r = b".".join(segs[:j]), b".".join(segs[j + 1 :])
            if g and r:
                group = (g, _index(segs[j]), r)
                break
    rec = by.get(n)
    if rec is None:
        rec = by[n] = ({}, {})
    if group is None:
        rec[0][_str(rest, 0, len(rest))] = value
        return
    g, m, r = group
    gk = _str(g, 0, len(g))
    by_m = rec[1].get(gk)
    if not isinstance(by_m, dict):
        by_m = rec[1][gk] = {}
    sub = by_m.get(m)
    if not isinstance(sub, dict):
        sub = by_m[m] = {}
    sub[_str(r, 0, len(r))] = value


def _py_ids_ok(raw: bytes) -> bool:
    for info in _py_spans(raw):
        tl = len(info[3])
        sl = len(info[4]) - tl
        pl = len(info[5]) - tl if info[5] else 0
        if tl not in (0, 16) or sl not in (0, 8) or pl not in (0, 8):
            return False
    return True


def _attr_key(raw: bytes, start: int, end: int) -> str:
    key = ""
    for k, _, v0, v1 in _fields(raw, start, end):
        if k == 0x0A:
            key = _str(raw, v0, v1)
    return key


def _py_splice(raw: bytes, patches: list[Patch]) -> bytes:
    if not isinstance(raw, bytes) or not isinstance(patches, list):
        raise TypeError("splice(bytes, list of patches)")
    if not patches:
        return raw
    last = None
    for p in patches:  # the checks the C function makes
        if not (
            isinstance(p, tuple)
            and len(p) == 3
            and isinstance(p[1], bytes)
            and (p[2] is None or isinstance(p[2], (set, frozenset)))
        ):
            raise TypeError("a patch is (body_start, bytes, drop_keys|None)")
        start = operator.index(p[0])
        if last is not None and start < last:
            raise WireError("patches not sorted by body_start")
        last = start
    by_start: dict[int, list[Patch]] = {}
    for p in patches:
        by_start.setdefault(operator.index(p[0]), []).append(p)

    def span_body(start: int, end: int) -> bytes | None:
        ps = by_start.pop(start, None)
        if ps is None:
            return None
        append = b"".join(p[1] for p in ps)
        drop = set().union(*(p[2] for p in ps if p[2]))
        if not drop:
            return raw[start:end] + append
        parts = [
            raw[f0:f1]
            for k, f0, v0, f1 in _fields(raw, start, end)
            if not (k == 0x4A and _attr_key(raw, v0, f1) in drop)
        ]
        parts.append(append)
        return b"".join(parts)

    def rebuild(start: int, end: int, child_key: int, child: Any) -> bytes | None:
        """The message's new body, or None when nothing in it changed."""
        parts: list[bytes] = []
        changed = False
        for k, f0, v0, f1 in _fields(raw, start, end):
            body = child(v0, f1) if k == child_key else None
            if body is None:
                parts.append(raw[f0:f1])
            else:
                changed = True
                parts.append(bytes((child_key,)) + varint(len(body)) + body)
        return b"".join(parts) if changed else None

    def scope_body(start: int, end: int) -> bytes | None:
        return rebuild(start, end, 0x12, span_body)

    def resource_body(start: int, end: int) -> bytes | None:
        return rebuild(start, end, 0x12, scope_body)

    out = rebuild(0, len(raw), 0x0A, resource_body)
    if by_start:
        raise WireError(f"no span starts at {min(by_start)}")
    return raw if out is None else out


Grouped = tuple[
    list[tuple[tuple[bytes, bytes], tuple[bytes, bytes], dict[bytes, tuple[bytes, int]]]],
    set[bytes],
]


def _joined(raw: bytes, fields: list[tuple[int, int, int, int]], key: int) -> bytes:
    """Every occurrence of a field, as encoded, joined (re-embedded, they decode as
    protobuf reads them: message occurrences merge, the last scalar wins)."""
    return b"".join(raw[start:end] for k, start, _, end in fields if k == key)


def _py_group(raw: bytes) -> Grouped:
    groups = []
    rooted: set[bytes] = set()
    for key, _, rs_start, rs_end in _fields(raw, 0, len(raw)):
        if key != 0x0A:  # resource_spans = 1
            continue
        fields = _fields(raw, rs_start, rs_end)
        res = _joined(raw, fields, 0x0A)  # resource = 1
        url = _joined(raw, fields, 0x1A)  # schema_url = 3
        for k, _, ss_start, ss_end in fields:
            if k != 0x12:  # scope_spans = 2
                continue
            sfields = _fields(raw, ss_start, ss_end)
            scope = _joined(raw, sfields, 0x0A)  # scope = 1
            surl = _joined(raw, sfields, 0x1A)  # schema_url = 3
            runs: dict[bytes, list[bytes]] = {}
            for sk, start, v0, v1 in sfields:
                if sk != 0x12:  # spans = 2
                    continue
                tid = b""
                root = True
                for fk, _, f0, f1 in _fields(raw, v0, v1):
                    if fk == 0x0A:  # trace_id = 1
                        tid = raw[f0:f1]
                    elif fk == 0x22:  # parent_span_id = 4
                        root = f1 == f0
                runs.setdefault(tid, []).append(raw[start:v1])
                if root:
                    rooted.add(tid)
            by_tid = {tid: (b"".join(spans), len(spans)) for tid, spans in runs.items()}
            groups.append(((res, url), (scope, surl), by_tid))
    return groups, rooted


# -- validation ------------------------------------------------------------------------

_WIRE = {9: 2, 12: 2, 11: 2, 1: 1, 6: 1, 16: 1, 2: 5, 7: 5, 15: 5}  # else varint (0)
_KIND = {9: 2, 12: 3, 11: 4}  # string, bytes, message; else scalar (1)
_SLOTS = 33


def _type_table() -> tuple[bytes, int, int, int, int]:
    """The request's message types for `check`: per type, per field number 0..32, (wire
    type, kind, child type); where spans are (ScopeSpans type, its `spans` field); and the
    KeyValue and AnyValue types (read by a fast path for the usual attribute)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

    types: list[Any] = []
    index: dict[str, int] = {}

    def add(d: Any) -> int:
        if d.full_name not in index:
            index[d.full_name] = len(types)
            types.append(d)
            for f in d.fields:
                if f.message_type is not None:
                    add(f.message_type)
        return index[d.full_name]

    add(ExportTraceServiceRequest.DESCRIPTOR)
    table = bytearray(len(types) * _SLOTS * 3)
    for t, d in enumerate(types):
        for f in d.fields:
            if f.number >= _SLOTS:
                continue  # read as unknown: none in OTLP's trace messages
            at = (t * _SLOTS + f.number) * 3
            child = index[f.message_type.full_name] if f.message_type is not None else 0
            table[at : at + 3] = bytes((_WIRE.get(f.type, 0), _KIND.get(f.type, 1), child))
    return (
        bytes(table),
        index[ScopeSpans.DESCRIPTOR.full_name],
        2,
        index[KeyValue.DESCRIPTOR.full_name],
        index[AnyValue.DESCRIPTOR.full_name],
    )


def _py_validate(raw: bytes) -> tuple[int, bool]:
    return _py_check(raw), _py_ids_ok(raw)


def _py_check(raw: bytes) -> int:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        req = ExportTraceServiceRequest.FromString(raw)
    except DecodeError as exc:
        raise WireError(str(exc)) from None
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def _py_untrack(objects: list[Any]) -> None:
    """(Python cannot untrack: the cyclic GC keeps walking them.)"""


try:
    if os.environ.get("TRACESIEVE_PURE_PYTHON") == "1":  # pipeline.native: run as Python
        raise ImportError("TRACESIEVE_PURE_PYTHON=1")
    from pipeline._wirescan import Slots as Slots
    from pipeline._wirescan import attributes as attributes
    from pipeline._wirescan import check as _c_check
    from pipeline._wirescan import collect as collect
    from pipeline._wirescan import events as events
    from pipeline._wirescan import group as group
    from pipeline._wirescan import ranges as ranges
    from pipeline._wirescan import spans as spans
    from pipeline._wirescan import splice as splice
    from pipeline._wirescan import unflatten as unflatten
    from pipeline._wirescan import untrack as untrack

    _TABLE = _type_table()

    def validate(raw: bytes) -> tuple[int, bool]:
        return _c_check(raw, *_TABLE)

    def check(raw: bytes) -> int:
        return _c_check(raw, *_TABLE)[0]

    def ids_ok(raw: bytes) -> bool:
        return _c_check(raw, *_TABLE)[1]

    NATIVE = True
except ImportError:  # not built (no compiler): the same algorithm in Python
    spans = _py_spans
    attributes = _py_attributes  # type: ignore[assignment]
    collect = _py_collect  # type: ignore[assignment]
    events = _py_events  # type: ignore[assignment]
    group = _py_group
    ranges = _py_ranges
    unflatten = _py_unflatten
    check = _py_check
    validate = _py_validate
    ids_ok = _py_ids_ok
    Slots = _PySlots  # type: ignore[misc, assignment]
    splice = _py_splice
    untrack = _py_untrack
    NATIVE = False
