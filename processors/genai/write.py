"""Attributes as Span wire bytes (tag 9 KeyValue fields), encoded once (memoised by value)
and appended to a span's encoding with `Traces.patch`."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from pipeline.otlpwire import frame, varint

__all__ = ["Encoder", "attr_bool", "attr_double", "attr_int", "attr_str", "attr_strs"]

_ATTR = b"\x4a"  # Span.attributes: field 9, length-delimited


def _kv(key: str, any_value: bytes) -> bytes:
    return frame(_ATTR, frame(b"\x0a", key.encode()) + frame(b"\x12", any_value))


def _s(value: str) -> bytes:
    return frame(b"\x0a", value.encode())


def attr_str(key: str, value: str) -> bytes:
    return _kv(key, _s(value))


def attr_bool(key: str, value: bool) -> bytes:
    return _kv(key, b"\x10" + (b"\x01" if value else b"\x00"))


def attr_int(key: str, value: int) -> bytes:
    return _kv(key, b"\x18" + varint(value))


def attr_double(key: str, value: float) -> bytes:
    return _kv(key, b"\x21" + struct.pack("<d", value))


def attr_strs(key: str, values: Iterable[str]) -> bytes:
    array = b"".join(frame(b"\x0a", _s(v)) for v in values)
    return _kv(key, frame(b"\x2a", array))


class Encoder:
    """Memoised attribute groups: `get(values)` -> bytes, built by `build(values)` once."""

    def __init__(self, limit: int = 10_000) -> None:
        self._memo: dict[object, bytes] = {}
        self._limit = limit

    def get(self, key: object) -> bytes | None:
        return self._memo.get(key)

    def put(self, key: object, data: bytes) -> bytes:
        if len(self._memo) >= self._limit:
            self._memo.clear()
        self._memo[key] = data
        return data
