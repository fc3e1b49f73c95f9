"""OTLP JSON encoding (OTLP spec, "JSON Protobuf Encoding"): proto3 JSON with lowerCamelCase
keys, integer enums, and trace/span ids as hex strings rather than base64.

Decoding takes either key style and ignores unknown fields, as the spec requires of
receivers; every problem is reported with where it is (`resourceSpans[0]...traceId`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.pdata import InvalidTracesError

_ID_LEN = {
    "traceId": 16,
    "trace_id": 16,
    "spanId": 8,
    "span_id": 8,
    "parentSpanId": 8,
    "parent_span_id": 8,
}
_json_decoder = msgspec.json.Decoder()
_json_encoder = msgspec.json.Encoder()


def _hex_to_b64(value: Any, where: str, size: int) -> str:
    if not isinstance(value, str):
        raise InvalidTracesError(f"{where}: want a hex string, got {type(value).__name__}")
    if value == "":
        return ""
    try:
        raw = binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        raise InvalidTracesError(f"{where}: invalid hex id {value[:40]!r}") from None
    if len(raw) != size:
        raise InvalidTracesError(
            f"{where}: id must be {size} bytes ({size * 2} hex digits), got {len(raw)}"
        )
    return base64.b64encode(raw).decode()


def _fix_ids(span: Any, where: str) -> None:
    if not isinstance(span, dict):
        return
    for key, size in _ID_LEN.items():
        if key in span:
            span[key] = _hex_to_b64(span[key], f"{where}.{key}", size)
    for j, link in enumerate(span.get("links") or ()):
        if isinstance(link, dict):
            for key in ("traceId", "trace_id", "spanId", "span_id"):
                if key in link:
                    link[key] = _hex_to_b64(link[key], f"{where}.links[{j}].{key}", _ID_LEN[key])


def _items(obj: Any, *keys: str) -> list[Any]:
    for k in keys:
        v = obj.get(k) if isinstance(obj, dict) else None
        if v is not None:
            return v if isinstance(v, list) else []
    return []


def decode(body: bytes) -> ExportTraceServiceRequest:
    try:
        obj = _json_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidTracesError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InvalidTracesError("invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise InvalidTracesError("invalid OTLP JSON: the top level must be an object")
    for i, rs in enumerate(_items(obj, "resourceSpans", "resource_spans")):
        for j, ss in enumerate(_items(rs, "scopeSpans", "scope_spans")):
            for k, span in enumerate(_items(ss, "spans")):
                _fix_ids(span, f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]")
    msg = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(obj, msg, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise InvalidTracesError(f"invalid OTLP JSON: {exc}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidTracesError(f"invalid OTLP JSON: {exc}") from None
    return msg


def _b64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def to_dict(msg: ExportTraceServiceRequest) -> dict[str, Any]:
    obj: dict[str, Any] = json_format.MessageToDict(msg, use_integers_for_enums=True)
    for rs in obj.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = _b64_to_hex(span[key])
                for link in span.get("links", ()):
                    for key in ("traceId", "spanId"):
                        if key in link:
                            link[key] = _b64_to_hex(link[key])
    return obj


def encode(msg: ExportTraceServiceRequest) -> bytes:
    return _json_encoder.encode(to_dict(msg))
