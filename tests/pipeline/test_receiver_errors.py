"""Bad input at the OTLP receiver, through the CLI: the OTLP spec's status codes with a
message saying what is wrong, counted by outcome, and the process keeps serving."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import grpc
import msgspec
import pytest
from google.rpc import status_pb2

from pipeline import otlpjson
from pipeline.testing import (
    export_grpc,
    export_http,
    metric,
    read_json_lines,
    sample_request,
    scrape,
    spans_in,
    wait_for,
)

MIB = 1 << 20


def config(out: str, **grpc_extra: Any) -> dict[str, Any]:
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0", "max_recv_msg_size_mib": 1, **grpc_extra},
                    "http": {"endpoint": "127.0.0.1:0", "max_request_body_size": MIB},
                }
            }
        },
        "exporters": {"file": {"path": out, "flush_interval": 0}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


@pytest.fixture(scope="module")
def collector(tmp_path_factory):  # type: ignore[no-untyped-def]
    from pipeline.testing import Collector

    d = tmp_path_factory.mktemp("receiver-errors")
    c = Collector(config(str(d / "out.jsonl")), workdir=str(d)).start()
    c.out = str(d / "out.jsonl")  # type: ignore[attr-defined]
    yield c
    assert c.stop() == 0


def grpc_error(endpoint: str, body: bytes, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        export_grpc(endpoint, body, **kw)
    return exc.value


def big_request(size: int) -> bytes:
    req = sample_request(1, n_spans=1, services=1)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.add(key="blob").value.bytes_value = b"\0" * size
    return req.SerializeToString()


GOOD = sample_request(7, n_spans=5).SerializeToString()
BAD_PROTO = b"\x0a\xff\xff\xff\xff\x0f\x01"  # field 1, a length far past the end


def good_requests_still_work(c: Any, expect_spans: int) -> None:
    export_grpc(c.endpoints["receivers::otlp/grpc"], GOOD)
    status, _, _ = export_http(c.endpoints["receivers::otlp/http"], GOOD)
    assert status == 200
    assert wait_for(lambda: len(spans_in(read_json_lines(c.out))) >= expect_spans)


def test_grpc_bad_input(collector):
    ep = collector.endpoints["receivers::otlp/grpc"]
    before = scrape(collector.endpoints["telemetry/http"])

    err = grpc_error(ep, BAD_PROTO)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot decode ExportTraceServiceRequest" in err.details()

    # above max_recv_msg_size_mib (1 MiB): checked and counted by the receiver
    err = grpc_error(ep, big_request(MIB + 1000))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_recv_msg_size_mib" in err.details()
    # far above it grpc itself refuses before reading the whole message
    err = grpc_error(ep, big_request(3 * MIB))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # a gzip bomb: 40 KiB on the wire, 40 MiB once inflated
    err = grpc_error(ep, big_request(40 * MIB), compression=grpc.Compression.Gzip)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    after = scrape(collector.endpoints["telemetry/http"])

    def delta(outcome: str) -> float:
        labels = {"transport": "grpc", "outcome": outcome}
        return metric(after, "otelcol_receiver_requests_total", **labels) - metric(
            before, "otelcol_receiver_requests_total", **labels
        )

    assert delta("invalid") == 1
    assert delta("too_large") == 1
    good_requests_still_work(collector, 10)


def http_status_of(body: bytes) -> tuple[int, str]:
    st = status_pb2.Status.FromString(body)
    return st.code, st.message


@pytest.mark.parametrize(
    ("name", "body", "headers", "status", "message"),
    [
        ("bad protobuf", BAD_PROTO, {}, 400, "cannot decode ExportTraceServiceRequest"),
        (
            "bad json",
            b'{"resourceSpans": [',
            {"Content-Type": "application/json"},
            400,
            "invalid JSON",
        ),
        (
            "bad json types",
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": {"x": 1}}]}]}]}',
            {"Content-Type": "application/json"},
            400,
            "invalid OTLP JSON",
        ),
        (
            "bad hex trace id",
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "0102030405060708"}]}]}]}',
            {"Content-Type": "application/json"},
            400,
            "resourceSpans[0].scopeSpans[0].spans[0].traceId: invalid hex id",
        ),
        (
            "short span id",
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102"}]}]}]}',
            {"Content-Type": "application/json"},
            400,
            "spanId: id must be 8 bytes",
        ),
        (
            "wrong content type",
            GOOD,
            {"Content-Type": "text/plain"},
            415,
            "unsupported content type",
        ),
        (
            "unknown encoding",
            GOOD,
            {"Content-Encoding": "br"},
            415,
            "unsupported Content-Encoding",
        ),
        (
            "corrupt gzip",
            b"\x1f\x8b\x08garbage",
            {"Content-Encoding": "gzip"},
            400,
            "cannot decompress",
        ),
        ("oversized", big_request(MIB + 1000), {}, 413, "max_request_body_size"),
        (
            "gzip bomb",
            gzip.compress(big_request(40 * MIB)),
            {"Content-Encoding": "gzip"},
            413,
            "decompressed body exceeds",
        ),
        (
            "deflate bomb",
            zlib.compress(big_request(40 * MIB)),
            {"Content-Encoding": "deflate"},
            413,
            "decompressed body exceeds",
        ),
    ],
)
def test_http_bad_input(collector, name, body, headers, status, message):
    ep = collector.endpoints["receivers::otlp/http"]
    ctype = headers.pop("Content-Type", "application/x-protobuf")
    before = scrape(collector.endpoints["telemetry/http"])
    got, _, payload = export_http(ep, body, ctype, headers)
    assert got == status, payload
    if ctype == "application/json":
        err = msgspec.json.decode(payload)
        assert message in err["message"], err
        assert err["code"] == 3  # INVALID_ARGUMENT
    else:
        _, text = http_status_of(payload)
        assert message in text, text
    after = scrape(collector.endpoints["telemetry/http"])
    outcome = "too_large" if status == 413 else "invalid"
    labels = {"transport": "http", "outcome": outcome}
    assert metric(after, "otelcol_receiver_requests_total", **labels) == (
        metric(before, "otelcol_receiver_requests_total", **labels) + 1
    )
    # nothing refused as spans: these requests never became data
    assert metric(after, "otelcol_receiver_accepted_spans_total") == metric(
        before, "otelcol_receiver_accepted_spans_total"
    )
    status_ok, _, _ = export_http(ep, GOOD)
    assert status_ok == 200


def test_http_json_request_and_empty_request(collector):
    ep = collector.endpoints["receivers::otlp/http"]
    req = sample_request(11, n_spans=3)
    status, headers, body = export_http(ep, otlpjson.encode(req), "application/json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert msgspec.json.decode(body) == {}
    status, _, _ = export_http(ep, b"")  # an empty request is a valid one with no spans
    assert status == 200
    export_grpc(collector.endpoints["receivers::otlp/grpc"], b"")


def test_auth_refuses_without_the_token(collector_factory, tmp_path):
    token = {"auth": {"bearer_token": "s3cret"}}
    cfg = config(str(tmp_path / "o.jsonl"), **token)
    cfg["receivers"]["otlp"]["protocols"]["http"].update(token)
    c = collector_factory(cfg)
    g, h = c.endpoints["receivers::otlp/grpc"], c.endpoints["receivers::otlp/http"]
    err = grpc_error(g, GOOD)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    err = grpc_error(g, GOOD, metadata=(("authorization", "Bearer wrong"),))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    export_grpc(g, GOOD, metadata=(("authorization", "Bearer s3cret"),))
    status, headers, _ = export_http(h, GOOD)
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    status, _, _ = export_http(h, GOOD, headers={"Authorization": "Bearer s3cret"})
    assert status == 200
    values = scrape(c.endpoints["telemetry/http"])
    assert metric(values, "otelcol_receiver_requests_total", outcome="unauthenticated") == 3
    assert metric(values, "otelcol_receiver_accepted_spans_total") == 10
