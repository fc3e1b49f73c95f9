"""OTLP JSON to wire bytes (`pipeline.jsonwire`): the C parser, its Python twin and
protobuf's own JSON parser (`otlpjson.decode`, `json_format.ParseDict`) agree.

- on valid OTLP JSON (requests written by `otlpjson.encode`, the `file` exporter's
  encoder) all three give the same message, and the Python twin the same bytes;
- on mutated or arbitrary JSON, the C parser either gives what the Python twin gives or
  hands the body to it (None); the Python twin either rejects it with InvalidTracesError
  or gives a message protobuf's parser gives too.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import jsonwire, otlpjson
from pipeline.pdata import InvalidTracesError, count_spans
from tests.fuzz.budget import examples
from tests.fuzz.strategies import json_bodies, requests

native = pytest.mark.skipif(not jsonwire.NATIVE, reason="pipeline._jsonwire is not built")


def _message(raw: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(raw)


@settings(max_examples=examples(200))
@given(requests(max_spans=4))
def test_valid_requests_give_protobufs_own_encoding(req: ExportTraceServiceRequest) -> None:
    body = otlpjson.encode(req)
    try:
        ref = otlpjson.decode(body)  # a link id of a wrong length cannot be read back
    except InvalidTracesError:
        with pytest.raises(InvalidTracesError):
            jsonwire.decode(body)
        return
    raw, n = jsonwire.decode_python(body)
    assert raw == ref.SerializeToString()
    assert n == count_spans(ref)
    raw, n = jsonwire.decode(body)
    assert _message(raw) == ref
    assert n == count_spans(ref)


@settings(max_examples=examples(400))
@given(json_bodies)
def test_any_body_is_taken_alike_or_rejected_with_a_message(body: bytes) -> None:
    try:
        want = jsonwire.decode_python(body)
    except InvalidTracesError as exc:
        assert str(exc)
        if jsonwire.NATIVE:
            from pipeline import _jsonwire

            assert _jsonwire.decode(body) is None
        return
    raw, n = want
    assert n == count_spans(_message(raw))
    if jsonwire.NATIVE:
        from pipeline import _jsonwire

        got = _jsonwire.decode(body)
        if got is not None:
            assert _message(got[0]) == _message(raw)
            assert got[1] == n
    # protobuf's parser takes what the Python twin takes, and reads the same message
    assert otlpjson.decode(body) == _message(raw)


@native
@given(
    st.sampled_from(["SPAN_KIND_SERVER", 2, "2"]),
    st.sampled_from(["STATUS_CODE_ERROR", 2]),
    st.sampled_from(["1750000000000000000", 1750000000000000000]),
)
def test_enums_and_integers_in_either_form(kind: object, code: object, start: object) -> None:
    doc = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "x",
                                "kind": kind,
                                "startTimeUnixNano": start,
                                "status": {"code": code},
                                "attributes": [
                                    {"key": "n", "value": {"intValue": "-5"}},
                                    {"key": "d", "value": {"doubleValue": "NaN"}},
                                    {"key": "b", "value": {"bytesValue": "AAE="}},
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    body = json.dumps(doc).encode()
    ref = otlpjson.decode(body)
    got = jsonwire.decode(body)
    from pipeline import _jsonwire

    native_got = _jsonwire.decode(body)
    if kind != "2":  # an enum as a decimal string is for the Python path
        assert native_got is not None
    # NaN != NaN: compare encodings
    assert _message(got[0]).SerializeToString() == ref.SerializeToString()


def test_snake_case_keys_are_read_too() -> None:
    body = (
        b'{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":'
        b'"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","name":"x"}]}]}]}'
    )
    raw, n = jsonwire.decode(body)
    assert n == 1
    assert _message(raw) == otlpjson.decode(body)
    raw, n = jsonwire.decode_python(body)
    assert n == 1


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}', "traceId"),
        (
            b'{"resourceSpans":[{"scopeSpans":[{},{"spans":[{},{"spanId":"00"}]}]}]}',
            "resourceSpans[0].scopeSpans[1].spans[1].spanId",
        ),
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"NOPE"}]}]}]}', "kind"),
        (b'{"resourceSpans": 3}', "resourceSpans"),
        (b'{"resourceSpans": [', "truncated"),
    ],
)
def test_a_bad_body_says_where(body: bytes, where: str) -> None:
    with pytest.raises(InvalidTracesError, match=r".") as exc:
        jsonwire.decode(body)
    assert where in str(exc.value)
