"""Payloads for the benchmarks: pre-encoded OTLP ExportTraceServiceRequests.

Every case takes `--payload SOURCE`, so the data can be swapped without touching a case:

    synthetic      a simple, fixed mix of agent-like spans (below); the default
    agent          the labelled agent-trace generator's mix (`benchmarks.generator.LoadStream`:
                   whole traces, every convention, default fault rates), `n_requests`
                   requests of about `spans_per_request` spans
    file:PATH      length-prefixed protobuf requests (4-byte big-endian length, then the
                   message), the `file` exporter's `format: proto`

The same bytes feed every case in a run, so `floor` and `passthrough` measure the same data.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


@dataclass(frozen=True)
class Payload:
    source: str
    requests: list[bytes]
    span_counts: list[int]

    @property
    def spans(self) -> int:
        return sum(self.span_counts)

    @property
    def bytes(self) -> int:
        return sum(len(r) for r in self.requests)

    def describe(self) -> dict[str, object]:
        n = max(1, self.spans)
        return {
            "payload": self.source,
            "requests": len(self.requests),
            "spans_per_request": round(self.spans / max(1, len(self.requests)), 1),
            "bytes_per_span": round(self.bytes / n, 1),
        }


def _kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


_MODELS = ("gpt-4o-mini", "claude-3-5-sonnet", "llama-3.1-70b")
_TOOLS = ("search", "calculator", "fetch_url", "sql")


def synthetic_request(rnd: random.Random, spans: int, seed: int) -> ExportTraceServiceRequest:
    """One service's spans from a few agent traces: an agent step, LLM calls with GenAI
    attributes, tool calls, an HTTP client span; ≈600 bytes a span."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(
        [
            _kv("service.name", f"agent-{seed % 7}"),
            _kv("service.version", "1.4.2"),
            _kv("deployment.environment", "bench"),
            _kv("telemetry.sdk.language", "python"),
        ]
    )
    ss = rs.scope_spans.add()
    ss.scope.name = "opentelemetry.instrumentation.openai_v2"
    ss.scope.version = "2.4b0"
    trace_id = rnd.randbytes(16)
    root = rnd.randbytes(8)
    t0 = 1_700_000_000_000_000_000 + rnd.randrange(10**12)
    for i in range(spans):
        if i % 20 == 0:  # a new trace every 20 spans
            trace_id, root = rnd.randbytes(16), rnd.randbytes(8)
        kind = i % 4
        s = Span(
            trace_id=trace_id,
            span_id=root if i % 20 == 0 else rnd.randbytes(8),
            parent_span_id=b"" if i % 20 == 0 else root,
            start_time_unix_nano=t0 + i * 1_000_000,
            end_time_unix_nano=t0 + i * 1_000_000 + rnd.randrange(10**6, 10**9),
        )
        if i % 20 == 0:
            s.name, s.kind = "invoke_agent planner", Span.SPAN_KIND_INTERNAL
            s.attributes.extend(
                [_kv("gen_ai.operation.name", "invoke_agent"), _kv("gen_ai.agent.name", "planner")]
            )
        elif kind in (1, 2):
            model = _MODELS[rnd.randrange(len(_MODELS))]
            s.name, s.kind = f"chat {model}", Span.SPAN_KIND_CLIENT
            s.attributes.extend(
                [
                    _kv("gen_ai.operation.name", "chat"),
                    _kv("gen_ai.system", "openai"),
                    _kv("gen_ai.request.model", model),
                    _kv("gen_ai.response.model", model + "-2024-07-18"),
                    _kv("gen_ai.usage.input_tokens", rnd.randrange(50, 4000)),
                    _kv("gen_ai.usage.output_tokens", rnd.randrange(10, 800)),
                    _kv("gen_ai.response.id", f"chatcmpl-{rnd.getrandbits(64):016x}"),
                    _kv("gen_ai.response.finish_reasons", "stop"),
                    _kv("server.address", "api.openai.com"),
                ]
            )
            if rnd.random() < 0.05:
                s.status.code = Status.STATUS_CODE_ERROR
                s.status.message = "rate limited"
                ev = s.events.add()
                ev.name = "exception"
                ev.time_unix_nano = s.end_time_unix_nano
                ev.attributes.extend(
                    [
                        _kv("exception.type", "RateLimitError"),
                        _kv("exception.message", "429 Too Many Requests"),
                    ]
                )
        elif kind == 3:
            tool = _TOOLS[rnd.randrange(len(_TOOLS))]
            s.name, s.kind = f"execute_tool {tool}", Span.SPAN_KIND_INTERNAL
            s.attributes.extend(
                [
                    _kv("gen_ai.operation.name", "execute_tool"),
                    _kv("gen_ai.tool.name", tool),
                    _kv("gen_ai.tool.call.id", f"call_{rnd.getrandbits(48):012x}"),
                ]
            )
        else:
            s.name, s.kind = "POST", Span.SPAN_KIND_CLIENT
            s.attributes.extend(
                [
                    _kv("http.request.method", "POST"),
                    _kv("url.full", "https://api.openai.com/v1/chat/completions"),
                    _kv("http.response.status_code", 200),
                ]
            )
        ss.spans.append(s)
    return req


def _generator_requests(n_requests: int, spans_per_request: int, seed: int) -> list[bytes]:
    from benchmarks.generator import LoadStream

    stream = LoadStream(seed, templates=min(500, max(20, n_requests * spans_per_request // 58)))
    out = [raw for raw, _ in stream.requests(2 * n_requests * spans_per_request, spans_per_request)]
    return out[:n_requests]


def _file_requests(path: str) -> list[bytes]:
    out: list[bytes] = []
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def load(source: str, n_requests: int = 64, spans_per_request: int = 100, seed: int = 1) -> Payload:
    if source == "synthetic":
        rnd = random.Random(seed)
        reqs = [
            synthetic_request(rnd, spans_per_request, seed + i).SerializeToString()
            for i in range(n_requests)
        ]
    elif source == "agent":
        reqs = _generator_requests(n_requests, spans_per_request, seed)
    elif source.startswith("file:"):
        reqs = _file_requests(source[5:])
    else:
        raise SystemExit(f"unknown payload {source!r}: want synthetic, agent or file:PATH")
    if not reqs:
        raise SystemExit(f"payload {source!r} has no requests")
    counts = [
        sum(len(ss.spans) for rs in m.resource_spans for ss in rs.scope_spans)
        for m in (ExportTraceServiceRequest.FromString(r) for r in reqs)
    ]
    return Payload(source, reqs, counts)
