"""`floor`: protobuf decode + encode of the payload alone, on one pinned core, in spans
per CPU-second.

What any collector that parses and re-serializes OTLP must pay per span; the
pass-through figure is compared with it. Also reports decode and encode separately.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.common import emit, parser, payload_of, pin


def _rate(f: Callable[[bytes], None], reqs: list[bytes], spans: int, duration: float) -> float:
    """Spans per CPU-second of `f` over the payload, looping for about `duration` of CPU
    time (CPU time, not wall time: other work on a shared machine does not count)."""
    done = 0
    t0 = time.process_time()
    end = t0 + duration
    while True:
        for r in reqs:
            f(r)
        done += spans
        now = time.process_time()
        if now >= end:
            return done / (now - t0)


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    pinned = pin(0)
    payload = payload_of(args)
    reqs = payload.requests
    parse = ExportTraceServiceRequest.FromString
    msgs = itertools.cycle([parse(r) for r in reqs])

    def decode_encode(raw: bytes) -> None:
        parse(raw).SerializeToString()

    def decode(raw: bytes) -> None:
        parse(raw)

    def encode(_raw: bytes) -> None:  # the decoded message in step with the bytes
        next(msgs).SerializeToString()

    _rate(decode_encode, reqs, payload.spans, args.warmup)
    best: dict[str, float] = {"decode_encode": 0.0, "decode": 0.0, "encode": 0.0}
    for _ in range(args.repeat):
        for name, fn in (("decode_encode", decode_encode), ("decode", decode), ("encode", encode)):
            rate = _rate(fn, reqs, payload.spans, args.duration / 3)
            best[name] = max(best[name], rate)
    emit(
        "floor",
        {
            "spans_per_s": round(best["decode_encode"]),  # per CPU-second
            "spans_per_cpu_s": round(best["decode_encode"]),
            "decode_spans_per_s": round(best["decode"]),
            "encode_spans_per_s": round(best["encode"]),
            "us_per_span": round(1e6 / best["decode_encode"], 3),
            "pinned_cpu": 0 if pinned else None,
            **payload.describe(),
            "repeat": args.repeat,
        },
    )


if __name__ == "__main__":
    main()
