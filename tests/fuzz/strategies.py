"""Hypothesis strategies for hostile OTLP: valid shapes with hostile contents (ids of the
wrong length, parent cycles, missing roots, end before start, duplicate span ids, every
value type where a string is expected, deep kvlist/array nesting, invalid enum values),
byte-level mutations of valid requests (invalid UTF-8, truncation, flipped bytes) and
arbitrary or mutated OTLP JSON."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline import otlpjson

# keys where processors expect strings (and numbers), to be given anything at all
KEYS = (
    "service.name",
    "gen_ai.system",
    "gen_ai.provider.name",
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.id",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "input.value",
    "output.value",
    "openinference.span.kind",
    "llm.model_name",
    "llm.provider",
    "server.address",
    "http.response.status_code",
    "error.type",
    "user.id",
    "session.id",
    "hidden_params",
    "sieve.verdict",
)

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
keys = st.one_of(st.sampled_from(KEYS), text)
int64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
uint64 = st.integers(min_value=0, max_value=(1 << 64) - 1)

scalar = st.one_of(
    st.none(),
    text,
    st.booleans(),
    int64,
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=40),
    st.sampled_from(["", "null", "{}", "[]", '{"role": "user"}', "0", "-1", "1e309", "NaN"]),
)


class Pairs(list):  # type: ignore[type-arg]
    """A kvlist: (key, value) pairs, duplicate keys allowed (as on the wire)."""


values = st.recursive(
    scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(st.tuples(keys, children), max_size=3).map(Pairs),
    ),
    max_leaves=8,
)


def to_any_value(v: Any) -> AnyValue:
    av = AnyValue()
    if v is None:
        pass  # an empty AnyValue
    elif isinstance(v, bool):
        av.bool_value = v
    elif isinstance(v, int):
        av.int_value = v
    elif isinstance(v, float):
        av.double_value = v
    elif isinstance(v, bytes):
        av.bytes_value = v
    elif isinstance(v, str):
        av.string_value = v
    elif isinstance(v, Pairs):
        av.kvlist_value.values.extend(KeyValue(key=k, value=to_any_value(x)) for k, x in v)
    elif isinstance(v, list):
        av.array_value.values.extend(to_any_value(x) for x in v)
    return av


def kvs(max_size: int = 5) -> st.SearchStrategy[list[KeyValue]]:
    return st.lists(
        st.builds(lambda k, v: KeyValue(key=k, value=to_any_value(v)), keys, values),
        max_size=max_size,
    )


def nested(depth: int, kind: str) -> AnyValue:
    v = AnyValue(string_value="leaf")
    for _ in range(depth):
        w = AnyValue()
        if kind == "kvlist":
            w.kvlist_value.values.add(key="k").value.CopyFrom(v)
        else:
            w.array_value.values.add().CopyFrom(v)
        v = w
    return v


# small pools make duplicates, shared traces, cycles and dangling parents likely
trace_ids = st.one_of(
    st.sampled_from([b"\x01" * 16, b"\x02" * 16, b"\x00" * 16]),
    st.binary(max_size=20),  # wrong lengths, empty
)
span_ids = st.one_of(
    st.sampled_from([b"\x00" * 7 + bytes([i]) for i in range(1, 6)]),
    st.binary(max_size=12),
)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    s = Span(
        trace_id=draw(trace_ids),
        span_id=draw(span_ids),
        parent_span_id=draw(st.one_of(st.just(b""), span_ids)),
        name=draw(
            st.one_of(st.sampled_from(["chat gpt-4o", "execute_tool", "invoke_agent"]), text)
        ),
        kind=draw(st.integers(0, 9)),  # 6..9 are not defined
        start_time_unix_nano=draw(uint64),
        end_time_unix_nano=draw(uint64),  # before the start, often
        trace_state=draw(st.one_of(st.just(""), text)),
        flags=draw(st.integers(0, (1 << 32) - 1)),
    )
    s.attributes.extend(draw(kvs()))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["kvlist", "array"]))
        s.attributes.add(key=draw(keys)).value.CopyFrom(nested(draw(st.integers(1, 28)), kind))
    s.status.code = draw(st.integers(0, 5))  # type: ignore[assignment]
    s.status.message = draw(text)
    for _ in range(draw(st.integers(0, 2))):
        ev = s.events.add(name=draw(text), time_unix_nano=draw(uint64))
        ev.attributes.extend(draw(kvs(3)))
    for _ in range(draw(st.integers(0, 2))):
        link = s.links.add(trace_id=draw(trace_ids), span_id=draw(span_ids))
        link.attributes.extend(draw(kvs(2)))
    return s


@st.composite
def requests(draw: st.DrawFn, max_spans: int = 6) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(draw(kvs(4)))
        rs.schema_url = draw(st.one_of(st.just(""), text))
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name = draw(st.one_of(st.sampled_from(["openai", "litellm", ""]), text))
            ss.scope.version = draw(text)
            ss.spans.extend(draw(st.lists(spans(), max_size=max_spans)))
    return req


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """A valid request's encoding with a few bytes changed, truncated or inserted: mostly
    still protobuf-shaped, so the decoder goes deep before it fails (if it fails)."""
    raw = bytearray(draw(requests(max_spans=4)).SerializeToString())
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "invalid_utf8", "truncate", "insert"]))
        if not raw:
            break
        pos = draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[pos] = draw(st.integers(0, 255))
        elif op == "invalid_utf8":
            raw[pos] = draw(st.sampled_from([0x80, 0xC0, 0xED, 0xF5, 0xFF]))
        elif op == "truncate":
            del raw[pos:]
        else:
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    return bytes(raw)


protobuf_bodies = st.one_of(
    st.binary(max_size=300),
    mutated_bytes(),
    requests().map(lambda r: r.SerializeToString()),
)

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        text,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(text, children, max_size=3)
    ),
    max_leaves=10,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = obj
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return obj


@st.composite
def mutated_json(draw: st.DrawFn) -> bytes:
    """A valid request as OTLP JSON with a few values replaced by arbitrary JSON (a
    number where a string goes, a list for an object, a bad hex id...)."""
    doc = otlpjson.to_dict(draw(requests(max_spans=3)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        replacement = draw(
            st.one_of(
                json_values,
                st.sampled_from(["zz", "0" * 31, "0" * 34, "", "SPAN_KIND_SERVER", "-1", "1e400"]),
            )
        )
        doc = _set(doc, path, replacement)
    import msgspec

    try:
        return msgspec.json.encode(doc)
    except (TypeError, OverflowError, ValueError):
        return b"{}"


json_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: __import__("msgspec").json.encode(v)),
    mutated_json(),
    requests(max_spans=4).map(otlpjson.encode),
)


def finite(x: float) -> bool:
    return math.isfinite(x)
