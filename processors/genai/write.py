"""Attributes as Span wire bytes (tag 9 KeyValue fields), encoded once (memoised by value)
and appended to a span's encoding with `Traces.patch`; and the enrichment processors'
patches. Compiled with mypyc."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

from pipeline.otlpwire import frame, varint
from processors.genai.index import SpanRecord

__all__ = [
    "Encoder",
    "Patch",
    "attr_bool",
    "attr_double",
    "attr_int",
    "attr_str",
    "attr_strs",
    "cache_patches",
    "chain_patches",
    "reconciliation_attrs",
    "reconciliation_patches",
]

_ATTR: Final = b"\x4a"  # Span.attributes: field 9, length-delimited


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


# -- the enrichment processors' attributes, one patch per call span ------------------------
# (compiled with mypyc: these loops run for every LLM call of every batch)

Patch = tuple[int, bytes, frozenset[str] | None]  # (span body start, attributes, keys to drop)


def reconciliation_attrs(rec: SpanRecord) -> bytes:
    """`provider_reconciliation`'s attributes of a call span."""
    out = b""
    for key, value in (
        ("sieve.provider.requested", rec.req_provider),
        ("sieve.model.requested", rec.req_model_n),
        ("sieve.provider.served", rec.served_provider),
        ("sieve.model.served", rec.served_model),
        ("sieve.provider.evidence", rec.evidence),
    ):
        if value:
            out += attr_str(key, value)
    return out + attr_bool("sieve.provider.mismatch", rec.mismatch)


def reconciliation_patches(
    calls: list[SpanRecord], enc: Encoder, overwrite: bool, keys: frozenset[str]
) -> list[Patch]:
    """Every call span's reconciliation (spans an earlier tracesieve enriched: replaced
    with `overwrite`, else left alone)."""
    out: list[Patch] = []
    for rec in calls:
        drop: frozenset[str] | None = None
        if rec.enriched:
            if not overwrite:
                continue
            drop = keys
        k = (
            rec.req_provider,
            rec.req_model_n,
            rec.served_provider,
            rec.served_model,
            rec.evidence,
            rec.mismatch,
        )
        data = enc.get(k)
        if data is None:
            data = enc.put(k, reconciliation_attrs(rec))
        out.append((rec.b0, data, drop))
    return out


def cache_patches(
    calls: list[SpanRecord], enc: Encoder, overwrite: bool, keys: frozenset[str], miss: bytes
) -> tuple[list[Patch], dict[str, int]]:
    """Every call span's cache verdict (`miss` on those not answered from a cache), and
    the hits by cache type."""
    out: list[Patch] = []
    hits: dict[str, int] = {}
    for rec in calls:
        if rec.cache_hit:
            hits[rec.cache_hit_type] = hits.get(rec.cache_hit_type, 0) + 1
        drop: frozenset[str] | None = None
        if rec.enriched:
            if not overwrite:
                continue
            drop = keys
        if not rec.cache_hit:
            if rec.cache_evidence:  # `unknown`: looks answered locally, nothing tells
                data = enc.get(("", rec.cache_evidence))
                if data is None:
                    data = enc.put(
                        ("", rec.cache_evidence),
                        miss + attr_str("sieve.cache.evidence", rec.cache_evidence),
                    )
                out.append((rec.b0, data, drop))
                continue
            out.append((rec.b0, miss, drop))
            continue
        k = (rec.cache_hit_type, rec.cache_evidence)
        data = enc.get(k)
        if data is None:
            data = enc.put(
                k,
                attr_bool("sieve.cache.hit", True)
                + attr_str("sieve.cache.type", rec.cache_hit_type)
                + attr_str("sieve.cache.evidence", rec.cache_evidence),
            )
        out.append((rec.b0, data, drop))
    return out, hits


def chain_patches(
    calls: list[SpanRecord], enc: Encoder, overwrite: bool, keys: frozenset[str]
) -> tuple[list[Patch], int, int]:
    """The attempt chain of every span that stands for a logical call (and, with
    `overwrite`, what an earlier tracesieve wrote dropped from the others); the fallbacks
    and LLM retries seen."""
    out: list[Patch] = []
    fallbacks = retries = 0
    for rec in calls:
        drop: frozenset[str] | None = keys if rec.enriched and overwrite else None
        if not rec.logical:
            if drop is not None:
                out.append((rec.b0, b"", drop))  # also from calls taken for logical ones
            continue
        if rec.fallback_fired:
            fallbacks += 1
        retries += rec.retry_count
        if rec.enriched and not overwrite:
            continue
        chain = rec.chain or []
        k = (tuple(chain), rec.retry_count, rec.fallback_fired)
        data = enc.get(k)
        if data is None:
            data = enc.put(
                k,
                attr_int("sieve.attempt.count", rec.attempt_count)
                + attr_int("sieve.retry.count", rec.retry_count)
                + attr_bool("sieve.fallback.fired", rec.fallback_fired)
                + attr_strs("sieve.fallback.chain", chain),
            )
        out.append((rec.b0, data, drop))
    return out, fallbacks, retries
