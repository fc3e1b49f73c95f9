"""`receive_floor`: what any Python OTLP/gRPC server pays before a pipeline does anything:
grpc.aio under uvloop receiving the same requests and decoding each one
(`Traces.decode`, as the `otlp` receiver does), then answering. No batch, no export.

The same harness as `passthrough` (server pinned to CPU 0, closed-loop load from CPU 1),
with spans counted as answered. `passthrough` against this figure is the cost of the
pipeline itself (batch, export, metrics) on top of receiving.
"""

from __future__ import annotations

import sys
from typing import Any

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


async def _serve() -> None:
    import grpc

    from pipeline.pdata import Traces

    async def export(raw: bytes, context: Any) -> bytes:
        Traces.decode(raw)
        return b""

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(export)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening: receivers::otlp: OTLP/gRPC on grpc://127.0.0.1:{port}", flush=True)
    print("tracesieve is ready (a bare receiver)", flush=True)
    await server.wait_for_termination()


def main() -> None:
    if "--serve" in sys.argv:
        import signal

        import uvloop

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        uvloop.run(_serve())
        return
    from benchmarks.cases import passthrough

    passthrough.main("receive_floor", target="receiver", doc=__doc__ or "")


if __name__ == "__main__":
    main()
