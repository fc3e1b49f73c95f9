"""The OTLP receiver's HTTP and gRPC handlers under hostile requests: every answer is a
success or a clear client error (INVALID_ARGUMENT / RESOURCE_EXHAUSTED, 400 / 413 / 415),
never an internal error, and the receiver goes on serving valid requests."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.configtypes import decode
from pipeline.pdata import Traces
from pipeline.receivers.otlp import OTLPReceiver, OTLPReceiverConfig
from pipeline.telemetry import Telemetry
from pipeline.testing import FakeHost, make_span, make_traces
from pipeline.testing import settings as component_settings
from tests.fuzz.budget import examples
from tests.fuzz.strategies import json_bodies, protobuf_bodies

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
GRPC_OK = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
HTTP_OK = {200, 400, 413, 415}


class CountingSink:
    mutates_data = False

    def __init__(self) -> None:
        self.spans = 0

    async def consume_traces(self, traces: Traces) -> None:
        self.spans += traces.span_count
        _ = traces.request  # force a decode, as a processor would


class Running:
    """A receiver on its own event loop in a background thread."""

    def __init__(self) -> None:
        raw = {
            "protocols": {
                "grpc": {"endpoint": "127.0.0.1:0", "max_recv_msg_size_mib": 1},
                "http": {"endpoint": "127.0.0.1:0", "max_request_body_size": 1 << 20},
            }
        }
        cfg, errs = decode(raw, OTLPReceiverConfig, "receivers::otlp")
        assert cfg is not None and not errs
        self.telemetry = Telemetry()
        self.sink = CountingSink()
        self.receiver = OTLPReceiver(
            component_settings("receiver", "otlp", self.telemetry), cfg, self.sink
        )
        self.host = FakeHost()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.receiver.start(self.host))
        ends = {a.split(" on ")[1].split("://")[0]: a.split("://")[1] for a in self.host.announced}
        self.grpc_target = ends["grpc"]
        self.http_url = f"http://{ends['http']}"
        self.channel = grpc.insecure_channel(self.grpc_target)
        self.export = self.channel.unary_unary(
            EXPORT, request_serializer=None, response_deserializer=None
        )
        self.http = httpx.Client(timeout=30)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def grpc_code(self, body: bytes) -> grpc.StatusCode:
        try:
            self.export(body, timeout=30)
            return grpc.StatusCode.OK
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.http.post(self.http_url, content=body, headers=headers)

    def close(self) -> None:
        self.channel.close()
        self.http.close()
        self.call(self.receiver.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def rx() -> Iterator[Running]:
    r = Running()
    yield r
    # still serving after everything thrown at it
    valid = make_traces([make_span("ok", b"\x01" * 16, b"\x02" * 8)]).to_bytes()
    assert r.grpc_code(valid) == grpc.StatusCode.OK
    resp = r.post(valid, {"Content-Type": "application/x-protobuf"})
    assert resp.status_code == 200
    r.close()


def maybe_compress(body: bytes, how: str) -> tuple[bytes, dict[str, str]]:
    if how == "gzip":
        return gzip.compress(body), {"Content-Encoding": "gzip"}
    if how == "lies":  # says gzip, is not
        return body, {"Content-Encoding": "gzip"}
    return body, {}


@settings(max_examples=examples(40))
@given(body=protobuf_bodies, how=st.sampled_from(["", "gzip", "lies"]))
def test_protobuf_over_grpc_and_http(rx: Running, body: bytes, how: str) -> None:
    assert rx.grpc_code(body) in GRPC_OK
    data, headers = maybe_compress(body, how)
    resp = rx.post(data, {"Content-Type": "application/x-protobuf", **headers})
    assert resp.status_code in HTTP_OK, resp.text
    if resp.status_code != 200:
        assert resp.content  # a google.rpc.Status saying what is wrong


@settings(max_examples=examples(40))
@given(body=json_bodies, how=st.sampled_from(["", "gzip"]))
def test_otlp_json_over_http(rx: Running, body: bytes, how: str) -> None:
    data, headers = maybe_compress(body, how)
    resp = rx.post(data, {"Content-Type": "application/json", **headers})
    assert resp.status_code in HTTP_OK, resp.text
    if resp.status_code != 200:
        assert resp.json()["message"]


@settings(max_examples=examples(30))
@given(
    body=st.binary(max_size=100),
    ctype=st.one_of(
        st.sampled_from(["application/x-protobuf", "application/json", "text/plain", ""]),
        st.from_regex(r"[A-Za-z0-9/+.;=\-]{1,30}", fullmatch=True),
    ),
    encoding=st.one_of(
        st.sampled_from(["", "gzip", "deflate", "zstd", "br", "identity", "x"]),
        st.from_regex(r"[A-Za-z0-9,\-]{1,20}", fullmatch=True),
    ),
)
def test_odd_headers(rx: Running, body: bytes, ctype: str, encoding: str) -> None:
    headers = {"Content-Type": ctype}
    if encoding:
        headers["Content-Encoding"] = encoding
    resp = rx.post(body, headers)
    assert resp.status_code in HTTP_OK, resp.text


def test_compression_bomb_is_refused(rx: Running) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    resp = rx.post(bomb, {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert resp.status_code == 413
    assert rx.grpc_code(b"\x0a" * (2 << 20)) == grpc.StatusCode.RESOURCE_EXHAUSTED
