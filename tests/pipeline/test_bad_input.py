"""The worst inputs thrown at a real collector process (the CLI): each gets a clear
per-request error or is processed, the process stays up, and other clients are served
meanwhile and afterwards. The property-based versions are in tests/fuzz."""

from __future__ import annotations

import gzip
import socket
import threading

import grpc
import httpx

from benchmarks.loadgen import read_proto_file, span_ids
from pipeline import otlpjson
from pipeline.testing import make_span, make_traces, wait_for
from tests.fuzz.strategies import nested
from tests.pipeline.faults import metric_sum, metrics

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TID = b"\x07" * 16
MB = 1 << 20


def sid(i: int) -> bytes:
    return i.to_bytes(8, "big")


def config(out: str) -> dict:
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0"},
                    "http": {"endpoint": "127.0.0.1:0"},
                }
            }
        },
        "processors": {
            "attributes": {
                "actions": [
                    {"key": "gen_ai.input.messages", "action": "delete"},
                    {"key": "user.id", "action": "hash"},
                    {"key": "service.name", "action": "convert", "converted_type": "string"},
                ]
            },
            "batch": {"timeout": "50ms"},
        },
        "exporters": {"file": {"path": out, "format": "proto", "flush_interval": 0}},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["attributes", "batch"],
                    "exporters": ["file"],
                }
            },
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


class Client:
    def __init__(self, c) -> None:  # type: ignore[no-untyped-def]
        self.channel = grpc.insecure_channel(
            c.endpoints["receivers::otlp/grpc"], options=[("grpc.max_send_message_length", -1)]
        )
        self.call = self.channel.unary_unary(
            EXPORT, request_serializer=None, response_deserializer=None
        )
        self.url = f"http://{c.endpoints['receivers::otlp/http']}/v1/traces"
        self.http = httpx.Client(timeout=120)

    def close(self) -> None:
        self.channel.close()
        self.http.close()

    def grpc(self, body: bytes) -> tuple[grpc.StatusCode, str]:
        try:
            self.call(body, timeout=120)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as err:
            return err.code(), err.details() or ""

    def post(
        self, body: bytes, ctype: str = "application/x-protobuf", **headers: str
    ) -> httpx.Response:
        return self.http.post(self.url, content=body, headers={"Content-Type": ctype, **headers})


def test_the_worst_inputs_do_not_hurt(tmp_path, collector_factory):
    out = str(tmp_path / "out.bin")
    c = collector_factory(config(out))
    cl = Client(c)
    INVALID = grpc.StatusCode.INVALID_ARGUMENT
    expected: set[int] = set()

    # garbage, as protobuf and as JSON
    assert cl.grpc(b"\xff" * 1000)[0] == INVALID
    assert cl.post(b"\xff" * 1000).status_code == 400
    assert cl.post(b"{not json", "application/json").status_code == 400
    # invalid UTF-8 in a string field
    raw = make_traces([make_span("MARKER", TID, sid(1))]).to_bytes()
    code, msg = cl.grpc(raw.replace(b"MARKER", b"\xff\xfe\xfd\xfc\xfb\xfa"))
    assert code == INVALID and "UTF-8" in msg
    # ids of the wrong length: refused with where and what
    code, msg = cl.grpc(make_traces([make_span("x", TID[:5], sid(1))]).to_bytes())
    assert code == INVALID and "trace_id: must be 16 bytes" in msg
    bad_json = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abcd","spanId":"0000000000000001"}]}]}]}'
    r = cl.post(bad_json, "application/json")
    assert r.status_code == 400 and "traceId" in r.json()["message"]
    # nesting bombs: on the wire, and in JSON
    body = b"x"
    for _ in range(5000):
        body = b"\x0a" + _varint(len(body)) + body
    assert cl.grpc(body)[0] == INVALID
    assert cl.post(b"[" * 200_000, "application/json").status_code == 400
    # a compression bomb
    bomb = gzip.compress(b"\0" * (200 * MB))
    assert cl.post(bomb, **{"Content-Encoding": "gzip"}).status_code == 413

    # hostile but well-formed: processed
    s1 = make_span("cycle-a", TID, sid(10), parent=sid(11))  # parent cycle
    s2 = make_span("cycle-b", TID, sid(11), parent=sid(10))
    s3 = make_span("orphan", TID, sid(12), parent=sid(999))  # missing root
    s4 = make_span("backwards", TID, sid(13), start=2_000_000_000, duration_ns=-1_000_000_000)
    s5 = make_span("dup", TID, sid(10))  # duplicate span id
    weird = make_span("types", TID, sid(14))
    for key in ("gen_ai.request.model", "gen_ai.system", "user.id", "service.name"):
        weird.attributes.add(key=key).value.CopyFrom(nested(20, "kvlist"))
    weird.attributes.add(key="gen_ai.usage.input_tokens").value.string_value = "lots"
    weird.kind = 9  # not a defined kind
    req = make_traces([s1, s2, s3, s4, s5, weird])
    rs = req.request.resource_spans[0]
    rs.resource.attributes[0].value.int_value = 42  # service.name as an int
    assert cl.grpc(req.to_bytes())[0] == grpc.StatusCode.OK
    expected |= {10, 11, 12, 13, 14}

    # 10 MB attribute values, over gRPC and as OTLP JSON over HTTP
    big = make_span(
        "big",
        TID,
        sid(20),
        attributes={"gen_ai.input.messages": "p" * (10 * MB), "keep": "k" * (10 * MB)},
    )
    assert cl.grpc(make_traces([big]).to_bytes())[0] == grpc.StatusCode.OK
    big_json = otlpjson.encode(
        make_traces([make_span("bigj", TID, sid(21), attributes={"v": "j" * (10 * MB)})]).request
    )
    assert cl.post(big_json, "application/json").status_code == 200
    expected |= {20, 21}

    # 100,000 spans in one trace, one request
    many = make_traces(
        [
            make_span(f"s{i}", TID, sid(1_000_000 + i), parent=sid(1_000_000 + i // 2))
            for i in range(100_000)
        ]
    )
    assert cl.grpc(many.to_bytes())[0] == grpc.StatusCode.OK
    expected |= set(range(1_000_000, 1_100_000))

    # a slow JSON request (seconds of decoding) does not stop other clients meanwhile
    slow = otlpjson.encode(
        make_traces(
            [make_span(f"j{i}", TID, sid(2_000_000 + i), attributes={"a": i}) for i in range(8000)]
        ).request
    )
    uploaded, done = threading.Event(), threading.Event()
    status: list[bytes] = []

    def post_slow() -> None:
        host, port = c.endpoints["receivers::otlp/http"].rsplit(":", 1)
        with socket.create_connection((host, int(port))) as sock:
            head = (
                f"POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(slow)}\r\nConnection: close\r\n\r\n"
            )
            sock.sendall(head.encode() + slow)
            uploaded.set()
            status.append(sock.makefile("rb").readline())
        done.set()

    threading.Thread(target=post_slow, daemon=True).start()
    small = make_traces([make_span("small", TID, sid(30))]).to_bytes()
    assert uploaded.wait(60)
    served_meanwhile = 0
    while not done.is_set():
        if cl.grpc(small)[0] == grpc.StatusCode.OK and not done.is_set():
            served_meanwhile += 1
    assert status and b" 200 " in status[0]
    # decoding inline would hold every other request until it is done (0-2 get through)
    assert served_meanwhile >= 10, served_meanwhile
    expected |= {30} | set(range(2_000_000, 2_008_000))

    # still up, still serving, everything accepted arrived, the refusals were counted
    assert c.proc is not None and c.proc.poll() is None
    assert wait_for(lambda: expected <= set(span_ids(read_proto_file(out))), timeout=60)
    got = {
        s.span_id: s
        for r in read_proto_file(out)
        for rs in r.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    }
    bigspan = got[sid(20)]
    assert {kv.key for kv in bigspan.attributes} == {"keep"}  # the prompt was deleted
    m = metrics(c)
    assert metric_sum(m, "otelcol_receiver_requests", outcome="invalid") == 8
    assert metric_sum(m, "otelcol_receiver_requests", outcome="too_large") == 1
    assert "Traceback" not in c.output
    cl.close()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)
