"""OTLP JSON as msgspec Structs: the shape `pipeline.jsonwire` decodes a `TracesData` (or
`ExportTraceServiceRequest`) into before writing it as protobuf wire bytes.

Field names are the OTLP JSON ones (lowerCamelCase). Unknown fields are ignored, as the
OTLP spec asks of receivers. Integers may come as JSON numbers or decimal strings (proto3
JSON writes 64-bit integers as strings), enums as numbers or names, ids as hex strings.
Not compiled: msgspec Structs are not mypyc classes; `pipeline.jsonwire` (compiled) reads
them.
"""

from __future__ import annotations

from msgspec import Struct

__all__ = [
    "AnyValue",
    "ArrayValue",
    "EntityRef",
    "Event",
    "KeyValue",
    "KeyValueList",
    "Link",
    "Resource",
    "ResourceSpans",
    "Scope",
    "ScopeSpans",
    "Span",
    "Status",
    "TracesData",
]

Int = int | str  # a number, or a decimal string (64-bit integers in proto3 JSON)


class ArrayValue(Struct):
    values: list[AnyValue] = []


class KeyValueList(Struct):
    values: list[KeyValue] = []


class AnyValue(Struct):
    stringValue: str | None = None
    boolValue: bool | None = None
    intValue: Int | None = None
    doubleValue: float | str | None = None
    arrayValue: ArrayValue | None = None
    kvlistValue: KeyValueList | None = None
    bytesValue: str | None = None
    stringValueStrindex: Int | None = None


class KeyValue(Struct):
    key: str = ""
    value: AnyValue | None = None


class Status(Struct):
    message: str = ""
    code: Int = 0


class Event(Struct):
    timeUnixNano: Int = 0
    name: str = ""
    attributes: list[KeyValue] = []
    droppedAttributesCount: Int = 0


class Link(Struct):
    traceId: str = ""
    spanId: str = ""
    traceState: str = ""
    attributes: list[KeyValue] = []
    droppedAttributesCount: Int = 0
    flags: Int = 0


class Span(Struct):
    traceId: str = ""
    spanId: str = ""
    traceState: str = ""
    parentSpanId: str = ""
    flags: Int = 0
    name: str = ""
    kind: Int = 0
    startTimeUnixNano: Int = 0
    endTimeUnixNano: Int = 0
    attributes: list[KeyValue] = []
    droppedAttributesCount: Int = 0
    events: list[Event] = []
    droppedEventsCount: Int = 0
    links: list[Link] = []
    droppedLinksCount: Int = 0
    status: Status | None = None


class Scope(Struct):
    name: str = ""
    version: str = ""
    attributes: list[KeyValue] = []
    droppedAttributesCount: Int = 0


class ScopeSpans(Struct):
    scope: Scope | None = None
    spans: list[Span] = []
    schemaUrl: str = ""


class EntityRef(Struct):
    schemaUrl: str = ""
    type: str = ""
    idKeys: list[str] = []
    descriptionKeys: list[str] = []


class Resource(Struct):
    attributes: list[KeyValue] = []
    droppedAttributesCount: Int = 0
    entityRefs: list[EntityRef] = []


class ResourceSpans(Struct):
    resource: Resource | None = None
    scopeSpans: list[ScopeSpans] = []
    schemaUrl: str = ""


class TracesData(Struct):
    resourceSpans: list[ResourceSpans] = []
