"""The OTTL condition subset (`pipeline.ottl`): the grammar, OTTL's comparison rules, every
path of each context read from the encoded span, and the message for each expression
outside the subset (named by function or path, with its column)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline import ottl, wirescan
from pipeline.testing import kv, make_span, make_traces

TID = bytes(range(1, 17))
SID = bytes(range(20, 28))
PID = bytes(range(30, 38))


def the_span() -> tuple[bytes, Any]:
    span = make_span(
        "llm.generate",
        TID,
        SID,
        PID,
        start=1_000_000_000,
        duration_ns=6_500_000_000,
        kind=Span.SPAN_KIND_CLIENT,
        status=2,
        attributes={
            "http.status_code": 503,
            "gen_ai.system": "openai",
            "ratio": 0.25,
            "cached": False,
            "tags": ["a", "b"],
            "blob": b"\x01\x02",
            "dup": "first",
        },
    )
    span.attributes.append(kv("dup", "second"))
    meta = span.attributes.add()
    meta.key = "meta"
    inner = meta.value.kvlist_value.values.add()
    inner.key = "tier"
    inner.value.string_value = "gold"
    span.attributes.add().key = "empty"  # an AnyValue with nothing set
    ev = span.events.add()
    ev.name = "rate_limited"
    ev.time_unix_nano = 2_000_000_000
    ev.attributes.append(kv("retry_count", 2))
    ev2 = span.events.add()
    ev2.name = "timeout"
    traces = make_traces([span], service="checkout", scope="openai-sdk")
    raw = traces.to_bytes()
    (info,) = wirescan.spans(raw)
    return raw, info


RAW, INFO = the_span()
RESOURCE = {"service.name": "checkout", "deployment.environment": "prod"}


def on_span(text: str) -> bool:
    cond = ottl.parse_condition(text, "span")
    return cond.matches(ottl.SpanData(RAW, INFO, RESOURCE, cond.span_keys))


def on_event(text: str, index: int = 0) -> bool:
    cond = ottl.parse_condition(text, "spanevent")
    event = ottl.events(RAW, INFO)[index]
    return cond.matches(ottl.SpanData(RAW, INFO, RESOURCE, cond.span_keys, event))


def on_resource(text: str, attrs: dict[str, Any] | None = None) -> bool:
    cond = ottl.parse_condition(text, "resource")
    return cond.matches(ottl.SpanData(b"", None, RESOURCE if attrs is None else attrs, None))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name == "llm.generate"', True),
        ('span.name == "llm.generate"', True),
        ('name != "llm.generate"', False),
        ("kind == SPAN_KIND_CLIENT", True),
        ("kind == 3", True),
        ("SPAN_KIND_CLIENT == kind", True),  # a literal on the left
        ("1000000001 > start_time_unix_nano", True),
        ("start_time_unix_nano >= 1000000001", False),
        ('"llm.generate" == span.name', True),
        ('name < "m" and name >= "llm"', True),
        ("kind == SPAN_KIND_SERVER", False),
        ("status.code == STATUS_CODE_ERROR", True),
        ("status.code != STATUS_CODE_OK", True),
        ("start_time_unix_nano == 1000000000", True),
        ("end_time_unix_nano - start_time_unix_nano == 6500000000", True),
        ("end_time_unix_nano - start_time_unix_nano > 5000000000", True),
        ("(end_time_unix_nano - start_time_unix_nano) / 1000000 >= 6500", True),
        ("(end_time_unix_nano - start_time_unix_nano) * 2 < 13000000001", True),
        ('end_time - start_time >= Duration("6.5s")', True),
        ('end_time - start_time > Duration("6s500ms")', False),
        ('end_time - start_time < Duration("1h")', True),
        ("end_time - start_time > 5", False),  # a duration is not a number: unordered
        ('attributes["http.status_code"] >= 500', True),
        ('attributes["http.status_code"] == 503.0', True),  # int and float compare
        ('attributes["http.status_code"] == "503"', False),  # string vs int: never equal
        ('attributes["http.status_code"] != "503"', True),
        ('attributes["http.status_code"] < "600"', False),  # and never ordered
        ('attributes["ratio"] < 0.5 and attributes["ratio"] > -1', True),
        ('attributes["cached"] == false', True),
        ('attributes["cached"] < true', False),  # booleans are only (un)equal
        ('attributes["tags"][1] == "b"', True),
        ('attributes["tags"][-1] == "b"', True),
        ('attributes["meta"]["tier"] == "gold"', True),
        ('attributes["meta"]["nope"] == nil', True),
        ('attributes["blob"] == 0x0102', True),
        ('attributes["dup"] == "first"', True),  # the first of a repeated key
        ('attributes["missing"] == nil', True),
        ('attributes["missing"] != nil', False),
        ('attributes["missing"] < 5', False),
        ('attributes["empty"] == nil', True),
        ("nil == nil", True),
        ('resource.attributes["service.name"] == "checkout"', True),
        ('instrumentation_scope.name == "openai-sdk"', True),
        ('scope.name == "openai-sdk"', True),
        ('trace_id.string == "0102030405060708090a0b0c0d0e0f10"', True),
        ('span_id.string == "1415161718191a1b"', True),
        ('parent_span_id.string == "1e1f202122232425"', True),
        ('IsMatch(name, "^llm\\\\.")', True),
        ('IsMatch(name, "^agent")', False),
        ('IsMatch(attributes["http.status_code"], "^5\\\\d\\\\d$")', True),
        ('IsMatch(attributes["missing"], ".*")', False),
        ('IsMatch(name, "gen") == true', True),
        ('not IsMatch(name, "^agent")', True),
        ('name == "x" or kind == SPAN_KIND_CLIENT', True),
        ('name == "x" or kind == SPAN_KIND_CLIENT and status.code == STATUS_CODE_OK', False),
        ('(name == "x" or kind == SPAN_KIND_CLIENT) and not (status.code == 1)', True),
        ('not name == "x"', True),
        ("not not true", True),
        ("true and false or true", True),
        ("false", False),
        ('"abc" < "abd"', True),
        ("1 + 2 * 3 == 7", True),
        ("-7 / 2 == -3", True),  # Go's integer division truncates toward zero
        ("10 -1 == 9", True),  # a minus between values, not a negative literal
        ('"say \\"hi\\"" == "say \\"hi\\""', True),
    ],
)
def test_span_conditions(text: str, expected: bool) -> None:
    assert on_span(text) is expected


@pytest.mark.parametrize(
    ("text", "index", "expected"),
    [
        ('name == "rate_limited"', 0, True),
        ('spanevent.name == "rate_limited"', 0, True),
        ('attributes["retry_count"] == 2', 0, True),
        ("time_unix_nano == 2000000000", 0, True),
        ('time - span.start_time == Duration("1s")', 0, True),
        ('span.name == "llm.generate" and span.kind == SPAN_KIND_CLIENT', 0, True),
        ('span.attributes["gen_ai.system"] == "openai"', 0, True),
        ('resource.attributes["service.name"] == "checkout"', 0, True),
        ('name == "timeout" and attributes["retry_count"] == nil', 1, True),
        ('name == "rate_limited"', 1, False),
    ],
)
def test_span_event_conditions(text: str, index: int, expected: bool) -> None:
    assert on_event(text, index) is expected


def test_events_are_read_from_the_encoding() -> None:
    names = [(e.name, e.time_unix_nano) for e in ottl.events(RAW, INFO)]
    assert names == [("rate_limited", 2_000_000_000), ("timeout", 0)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('attributes["service.name"] == "checkout"', True),
        ('resource.attributes["deployment.environment"] != "prod"', False),
        ('attributes["resourceName"] != nil', False),
        ('attributes["a"] == "b" or attributes["service.name"] == "checkout"', True),
    ],
)
def test_resource_conditions(text: str, expected: bool) -> None:
    assert on_resource(text) is expected


def test_only_the_attributes_named_are_read() -> None:
    cond = ottl.parse_condition(
        'attributes["gen_ai.system"] == "openai" and resource.attributes["x"] == nil', "span"
    )
    assert cond.span_keys == frozenset({"gen_ai.system"})
    assert cond.resource_keys == frozenset({"x"})
    data = ottl.SpanData(RAW, INFO, RESOURCE, cond.span_keys)
    assert cond.matches(data)
    assert data.attrs() == {"gen_ai.system": "openai"}


def test_statements_route_where() -> None:
    st = ottl.parse_statement('route() where attributes["X-Tenant"] == "acme"', "resource")
    assert st.matches(ottl.SpanData(b"", None, {"X-Tenant": "acme"}, None))
    assert not st.matches(ottl.SpanData(b"", None, {"X-Tenant": "globex"}, None))
    always = ottl.parse_statement("route()", "span")
    assert always.matches(ottl.SpanData(RAW, INFO, RESOURCE, always.span_keys))


def test_context_inference() -> None:
    assert ottl.infer_context('span.name == "x"') == "span"
    assert ottl.infer_context('route() where span.attributes["a"] == 1') == "span"
    assert ottl.infer_context('resource.attributes["a"] == 1') == "resource"
    assert ottl.infer_context('spanevent.name == "x" and span.name == "y"') == "spanevent"
    assert ottl.infer_context('attributes["a"] == 1') == "resource"


@pytest.mark.parametrize(
    ("context", "text", "message"),
    [
        (
            "span",
            'delete_key(attributes, "x") == true',
            "unsupported function delete_key() at column 1: the OTTL subset has the converters "
            "IsMatch, Duration; a statement may only be route() where <condition>",
        ),
        (
            "span",
            'Concat([name, "x"], "") == "a"',
            "unsupported function Concat() at column 1: the OTTL subset has the converters "
            "IsMatch, Duration",
        ),
        (
            "span",
            'status.message == "boom"',
            "unsupported path status.message at column 1 in the span context (the subset "
            'supports attributes["..."], name, kind, status.code,',
        ),
        (
            "span",
            'name == "a" and dropped_attributes_count > 0',
            "unsupported path dropped_attributes_count at column 17 in the span context",
        ),
        ("resource", 'name == "x"', "unsupported path name at column 1 in the resource context"),
        (
            "resource",
            'span.attributes["a"] == 1',
            "unsupported path span.attributes[...] at column 1 in the resource context",
        ),
        (
            "span",
            'spanevent.name == "x"',
            "unsupported path spanevent.name at column 1 in the span context",
        ),
        (
            "span",
            "attributes == nil",
            'attributes at column 1 needs a key: attributes["name"] (the whole map is outside',
        ),
        ("span", 'name[0] == "x"', "unsupported path name[...] at column 1 in the span context"),
        (
            "span",
            'attributes["x"]',
            'attributes["x"] is not a condition: compare it (e.g. attributes["x"] == true)',
        ),
        (
            "span",
            'name == "a" and attributes["x"]',
            "'and' at column 13 needs conditions on both sides; attributes[\"x\"] is a value",
        ),
        (
            "span",
            'name == "a" == "b"',
            "comparisons cannot be chained; join them with and/or at column 13 (found '==')",
        ),
        (
            "span",
            '(name == "a") == true',
            'cannot compare the condition (name == "a") (column 15)',
        ),
        ("span", "name == 'x'", 'unexpected character "\'" at column 9 (strings take double'),
        ("span", 'name = "x"', "unexpected character '=' at column 6"),
        ("span", 'name == "x" and', "expected a value at column 16 (found the end)"),
        ("span", '(name == "x"', "expected ')' to close the parenthesis at column 13"),
        ("span", 'name == "x")', "unexpected text after the condition at column 12 (found ')')"),
        ("span", "SPAN_KIND_WHATEVER == 1", "unknown enum SPAN_KIND_WHATEVER at column 1"),
        ("span", 'IsMatch(name, "(")', "IsMatch() at column 1: invalid regular expression '('"),
        ("span", "IsMatch(name, name)", "IsMatch() at column 1: the pattern must be a string"),
        ("span", "IsMatch(name) == true", "IsMatch() at column 1 takes a target and a pattern"),
        ("span", 'Duration("soon") == nil', "Duration() at column 1: invalid duration 'soon'"),
        ("span", 'attributes["a"] == ["x"]', "list and map literals are outside the supported"),
        ("span", 'name == "a\\qb"', "invalid escape \\q in a string at column"),
        ("span", "attributes[name] == 1", "a key in [...] must be a string or an int literal"),
        ("span", "   ", "the condition is empty"),
        ("traces", 'name == "x"', "unsupported context 'traces': want one of resource, span"),
        ("span", "0x123 == nil", "a bytes literal needs an even number of hex digits"),
        ("span", 'name == "a" + 1 and true', None),  # parses; fails only when evaluated
    ],
)
def test_outside_the_subset_is_refused_with_what_and_where(
    context: str, text: str, message: str | None
) -> None:
    if message is None:
        ottl.parse_condition(text, context)
        return
    with pytest.raises(ottl.OTTLError) as exc:
        ottl.parse_condition(text, context)
    assert str(exc.value).startswith(message), str(exc.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'set(attributes["x"], 1) where name == "a"',
            "unsupported function set() at column 1: a statement here may only be route() "
            "[where <condition>]",
        ),
        ("route(1)", "route() takes no arguments at column 7 (found '1')"),
        ("route() when x", "expected 'where' or the end of the statement at column 9"),
        (
            'attributes["x"] == 1',
            "a statement starts with a function call, e.g. route() where <condition> "
            "(found 'attributes' at column 1)",
        ),
        ('route() where attributes["x"]', 'attributes["x"] is not a condition'),
    ],
)
def test_statement_errors(text: str, message: str) -> None:
    with pytest.raises(ottl.OTTLError) as exc:
        ottl.parse_statement(text, "span")
    assert str(exc.value).startswith(message), str(exc.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('attributes["tags"] - 1 > 0', "cannot apply '-' to slice and number"),
        ('name + "x" == "y"', "cannot apply '+' to string and string"),
        ("1 / 0 == 1", "division by zero"),
        ('attributes["tags"][5] == "x"', 'index 5 out of range in attributes["tags"][5]'),
    ],
)
def test_evaluation_errors(text: str, message: str) -> None:
    with pytest.raises(ottl.OTTLEvalError) as exc:
        on_span(text)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("a", "b", "op", "expected"),
    [
        (None, None, "==", True),
        (None, 0, "==", False),
        (None, 0, "!=", True),
        (None, None, "<", False),
        (True, 1, "==", False),  # a bool is not a number
        (True, True, "==", True),
        (1, 1.0, "==", True),
        (2, 1.5, ">", True),
        ("b", "a", ">=", True),
        (b"\x01", b"\x02", "<", True),
        ({"a": 1}, {"a": 1}, "==", True),
        ([1], [1], "<", False),
        ("1", 1, "!=", True),
    ],
)
def test_comparison_rules(a: Any, b: Any, op: str, expected: bool) -> None:
    assert ottl.compare(a, b, op) is expected
