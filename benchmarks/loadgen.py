"""A load generator that can account for every span: it sends numbered spans over OTLP/gRPC
(raw bytes, one channel per thread) and records which ones got a success response.

Span ids are `<8-bit sender tag><24-bit thread-local run id>...<counter>` packed into the
8-byte span id, so the far end can count each span as received, missing or duplicated.
Only a success response counts as accepted; every other outcome is counted by its code.
Used by the fault tests and `benchmarks.soak`.

As a command (`tracesieve-loadgen`, or `python -m benchmarks.loadgen`), it points load at
any OTLP/gRPC endpoint and prints what was sent, accepted and refused, and the rate:

    tracesieve-loadgen --endpoint 127.0.0.1:4317 --rate 20000 --duration 30 --concurrency 8
    tracesieve-loadgen --rate 0 --conventions openinference,litellm --faults fallback=0.2
    tracesieve-loadgen --mix numbered --spans-per-request 100 --json
"""

from __future__ import annotations

import collections
import contextlib
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass
class SendStats:
    accepted: set[int] = field(default_factory=set)  # ids, when tracked
    spans_ok: int = 0
    requests_ok: int = 0
    spans_attempted: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def accepted_count(self) -> int:
        return self.spans_ok

    @property
    def refused_requests(self) -> int:
        return sum(self.refused.values())


class RequestBuilder:
    """Builds requests of `spans` spans with fresh ids, reusing one message (cheap)."""

    def __init__(self, spans: int, tag: int, service: str = "loadgen", attr_bytes: int = 200):
        self._req = ExportTraceServiceRequest()
        rs = self._req.resource_spans.add()
        rs.resource.attributes.append(KeyValue(key="service.name"))
        rs.resource.attributes[0].value.string_value = service
        ss = rs.scope_spans.add()
        ss.scope.name = "tracesieve.loadgen"
        now = time.time_ns()
        filler = "x" * attr_bytes
        for i in range(spans):
            s = Span(name="llm.call" if i % 2 else "agent.step", kind=Span.SPAN_KIND_CLIENT)
            s.start_time_unix_nano = now
            s.end_time_unix_nano = now + 1_000_000
            kv = s.attributes.add(key="gen_ai.operation.name")
            kv.value.string_value = "chat"
            kv = s.attributes.add(key="filler")
            kv.value.string_value = filler
            ss.spans.append(s)
        self._spans = ss.spans
        self.size = spans
        self._prefix = (tag & 0xFF) << 56 | (os.getpid() & 0xFFFF) << 40
        self._counter = 0

    def next(self) -> tuple[bytes, list[int]]:
        ids = []
        trace_id = struct.pack(">QQ", self._prefix, self._counter)
        for s in self._spans:
            sid = self._prefix | self._counter
            self._counter += 1
            s.span_id = struct.pack(">Q", sid)
            s.trace_id = trace_id
            ids.append(sid)
        return self._req.SerializeToString(), ids


class RequestSource(Protocol):
    def next(self) -> tuple[bytes, Sequence[int]]:
        """(encoded ExportTraceServiceRequest, the ids of its spans or just as many ints)"""
        ...


class AgentRequests:
    """The labelled agent-trace generator's mix (`benchmarks.generator.LoadStream`: whole
    traces, fresh trace ids in every request) as a request source. Spans are not numbered:
    use with `track_ids=False`."""

    def __init__(self, stream: Any, spans_per_request: int) -> None:
        self._it = stream.requests(1 << 62, spans_per_request)

    def next(self) -> tuple[bytes, Sequence[int]]:
        raw, n = next(self._it)
        return raw, range(n)


class GRPCSender:
    """Sends to one OTLP/gRPC endpoint from `threads` threads, optionally rate-limited."""

    def __init__(
        self,
        target: str,
        *,
        spans_per_request: int = 100,
        threads: int = 1,
        rate: float | None = None,  # spans per second over all threads; None = flat out
        timeout: float = 5.0,
        metadata: Iterable[tuple[str, str]] = (),
        credentials: grpc.ChannelCredentials | None = None,
        tag: int = 1,
        attr_bytes: int = 200,
        track_ids: bool = True,  # keep every accepted id (for exact accounting)
        source: Callable[[int], RequestSource] | None = None,  # thread index -> requests
    ) -> None:
        self.target = target
        self.spans_per_request = spans_per_request
        self.threads = threads
        self.rate = rate
        self.timeout = timeout
        self.metadata = tuple(metadata)
        self.credentials = credentials
        self.tag = tag
        self.attr_bytes = attr_bytes
        self.track_ids = track_ids
        self.source = source
        self.stats = SendStats()
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._workers: list[threading.Thread] = []

    def _channel(self) -> grpc.Channel:
        opts = [("grpc.max_send_message_length", -1)]
        if self.credentials is not None:
            return grpc.secure_channel(self.target, self.credentials, options=opts)
        return grpc.insecure_channel(self.target, options=opts)

    def _run(self, index: int) -> None:
        builder: RequestSource = (
            self.source(index)
            if self.source is not None
            else RequestBuilder(
                self.spans_per_request, (self.tag << 4 | index) & 0xFF, attr_bytes=self.attr_bytes
            )
        )
        per_span = self.threads / self.rate if self.rate else 0.0  # this thread's s per span
        channel = self._channel()
        call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                if self._pause.is_set():
                    time.sleep(0.01)
                    next_at = time.monotonic()
                    continue
                body, ids = builder.next()
                try:
                    call(body, timeout=self.timeout, metadata=self.metadata or None)
                except grpc.RpcError as err:
                    code = err.code() if hasattr(err, "code") else None
                    name = code.name if code is not None else type(err).__name__
                    with self.stats.lock:
                        self.stats.refused[name] += 1
                        self.stats.spans_attempted += len(ids)
                else:
                    with self.stats.lock:
                        if self.track_ids and self.source is None:
                            self.stats.accepted.update(ids)
                        self.stats.spans_ok += len(ids)
                        self.stats.requests_ok += 1
                        self.stats.spans_attempted += len(ids)
                if per_span:
                    next_at += len(ids) * per_span
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                    elif delay < -1.0:
                        next_at = time.monotonic()  # behind: do not burst to catch up
        finally:
            channel.close()

    def start(self) -> GRPCSender:
        self._workers = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)
        ]
        for w in self._workers:
            w.start()
        return self

    def pause(self, paused: bool = True) -> None:
        if paused:
            self._pause.set()
        else:
            self._pause.clear()

    def stop(self) -> SendStats:
        self._stop.set()
        for w in self._workers:
            w.join(self.timeout + 5)
        return self.stats

    def __enter__(self) -> GRPCSender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the command ---------------------------------------------------------------------------


def _credentials(args: Any) -> grpc.ChannelCredentials | None:
    if not args.tls:
        return None
    ca = open(args.ca, "rb").read() if args.ca else None  # noqa: SIM115
    return grpc.ssl_channel_credentials(root_certificates=ca)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from benchmarks.generator import CONVENTIONS, FaultRates, LoadStream

    ap = argparse.ArgumentParser(
        prog="tracesieve-loadgen",
        description="OTLP/gRPC load for any endpoint: the agent-trace generator's mix (or "
        "numbered spans), at a fixed rate or as fast as the endpoint accepts.",
    )
    ap.add_argument("--endpoint", default="127.0.0.1:4317", help="host:port (OTLP/gRPC)")
    ap.add_argument("--rate", type=float, default=10_000, help="spans/s in all; 0: flat out")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds")
    ap.add_argument("--concurrency", type=int, default=4, help="senders (one channel each)")
    ap.add_argument("--spans-per-request", type=int, default=512)
    ap.add_argument(
        "--mix",
        choices=("agent", "numbered"),
        default="agent",
        help="agent: the labelled agent-trace generator (whole traces, every convention); "
        "numbered: small numbered spans (for loss accounting)",
    )
    ap.add_argument(
        "--conventions",
        default=",".join(CONVENTIONS),
        help=f"agent mix: conventions taken in turn (default: all of {', '.join(CONVENTIONS)})",
    )
    ap.add_argument(
        "--faults",
        default="",
        help="agent mix: fault rates per trace, e.g. fallback=0.1,slow=0.05, all=0 (none); "
        "unnamed faults keep their defaults",
    )
    ap.add_argument("--templates", type=int, default=500, help="agent mix: distinct traces")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    ap.add_argument("--header", action="append", default=[], metavar="K=V", help="metadata")
    ap.add_argument("--tls", action="store_true", help="TLS (system roots, or --ca)")
    ap.add_argument("--ca", help="CA certificate (PEM) for --tls")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = ap.parse_args(argv)
    source: Callable[[int], RequestSource] | None = None
    if args.mix == "agent":
        try:
            rates = FaultRates.parse(args.faults)
        except ValueError as err:
            ap.error(str(err))
        conventions = [c for c in args.conventions.split(",") if c]
        unknown = set(conventions) - set(CONVENTIONS)
        if unknown or not conventions:
            ap.error(
                f"--conventions: {','.join(sorted(unknown)) or 'none given'}: "
                f"want some of {', '.join(CONVENTIONS)}"
            )
        stream = LoadStream(args.seed, args.templates, rates=rates, conventions=conventions)

        def source(_: int) -> RequestSource:
            return AgentRequests(stream, args.spans_per_request)

    metadata = [tuple(h.split("=", 1)) for h in args.header if "=" in h]
    sender = GRPCSender(
        args.endpoint,
        spans_per_request=args.spans_per_request,
        threads=args.concurrency,
        rate=args.rate or None,
        timeout=args.timeout,
        metadata=metadata,  # type: ignore[arg-type]
        credentials=_credentials(args),
        track_ids=False,
        source=source,
    )
    t0 = time.monotonic()
    sender.start()
    with contextlib.suppress(KeyboardInterrupt):
        time.sleep(args.duration)
    stats = sender.stop()
    seconds = time.monotonic() - t0
    out = {
        "endpoint": args.endpoint,
        "mix": args.mix,
        "seconds": round(seconds, 2),
        "target_rate": args.rate or None,
        "sent_spans": stats.spans_attempted,
        "accepted_spans": stats.spans_ok,
        "refused_spans": stats.spans_attempted - stats.spans_ok,
        "accepted_requests": stats.requests_ok,
        "refused_requests": dict(stats.refused),
        "achieved_rate": round(stats.spans_ok / seconds),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"sent      {out['sent_spans']:,} spans to {args.endpoint} in {seconds:.1f} s")
        print(f"accepted  {out['accepted_spans']:,} spans ({stats.requests_ok:,} requests)")
        refused = ", ".join(f"{k} {v:,}" for k, v in stats.refused.items()) or "none"
        print(f"refused   {out['refused_spans']:,} spans (requests by code: {refused})")
        target = f" (target {args.rate:,.0f})" if args.rate else " (flat out)"
        print(f"achieved  {out['achieved_rate']:,} spans/s accepted{target}")
    return 0 if stats.spans_attempted else 1


# -- the far end ---------------------------------------------------------------------------


def read_proto_file(path: str) -> Iterator[ExportTraceServiceRequest]:
    """Requests written by the `file` exporter with `format: proto` (4-byte big-endian
    length, then the message). A partial record at the end (still being written) is
    left for the next read."""
    if not os.path.exists(path):
        return
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        if pos + 4 + n > len(data):
            break
        yield ExportTraceServiceRequest.FromString(data[pos + 4 : pos + 4 + n])
        pos += 4 + n


def span_ids(requests: Iterable[ExportTraceServiceRequest]) -> collections.Counter[int]:
    """How many times each span id arrived."""
    counts: collections.Counter[int] = collections.Counter()
    for req in requests:
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    counts[int.from_bytes(s.span_id, "big")] += 1
    return counts


@dataclass(frozen=True)
class Tally:
    accepted: int
    received_unique: int
    lost: int
    duplicates: int  # extra copies of spans that arrived more than once
    unexpected: int  # received but never accepted (sent, no success response seen)


def tally(accepted: set[int], received: collections.Counter[int]) -> Tally:
    got = set(received)
    return Tally(
        accepted=len(accepted),
        received_unique=len(got),
        lost=len(accepted - got),
        duplicates=sum(c - 1 for c in received.values() if c > 1),
        unexpected=len(got - accepted),
    )


if __name__ == "__main__":
    import sys

    sys.exit(main())
