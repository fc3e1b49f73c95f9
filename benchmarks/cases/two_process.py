"""`two_process`: the agent pipeline in two `tracesieve run` processes sharing one gRPC
port (SO_REUSEPORT, the `otlp` receiver's `reuse_port: true`), against one process.

1. one process pinned to CPU 0, load and sink pinned to CPU 1 (as `agent_pipeline`);
2. two processes pinned to CPUs 0 and 1 on the same port, the load and sink unpinned
   (this machine may have no third core for them: they then take CPU from the collectors).

The kernel spreads the load's connections (`--channels`) over the two listening sockets.
Also recorded: whether grpc sets SO_REUSEPORT by default on this machine (a second server
binding the same port with default options succeeds), which tracesieve overrides: its
receiver sets it only with `reuse_port: true`.
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks.cases import agent_pipeline, passthrough
from benchmarks.common import emit, parser, pin


def grpc_reuses_port_by_default() -> bool:
    import grpc

    from pipeline.testing import free_port

    port = free_port()
    a, b = grpc.server(None), grpc.server(None)  # type: ignore[arg-type]
    try:
        a.add_insecure_port(f"127.0.0.1:{port}")
        try:
            return bool(b.add_insecure_port(f"127.0.0.1:{port}"))
        except RuntimeError:
            return False
    finally:
        a.stop(0)
        b.stop(0)


def main() -> None:
    p = parser(__doc__ or "")
    agent_pipeline.add_arguments(p)
    p.set_defaults(spans_per_request=512, warmup=5.0, duration=8.0, repeat=1, channels=16)
    args = p.parse_args()
    default_reuse = grpc_reuses_port_by_default()
    source, describe = agent_pipeline.agent_source(args)
    load_cpu = args.load_cpu
    if not pin(load_cpu):
        args.load_cpu = None
    args.processes = 1
    one = passthrough.serve(
        passthrough.run(args, config_fn=agent_pipeline.config, source=source, describe=describe)
    )
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    args.processes, args.load_cpu = 2, None
    two = passthrough.serve(
        passthrough.run(args, config_fn=agent_pipeline.config, source=source, describe=describe)
    )
    both_busy = all(c > 0.1 for c in two.get("process_cpu", []))
    record: dict[str, Any] = {
        "spans_per_s": two["spans_per_s"],
        "one_process_spans_per_s": one["spans_per_s"],
        "two_process_spans_per_s": two["spans_per_s"],
        "speedup": round(two["spans_per_s"] / one["spans_per_s"], 2)
        if one["spans_per_s"]
        else None,
        "two_process_cpu": two.get("process_cpu"),
        "both_processes_served": both_busy,
        "grpc_default_so_reuseport": default_reuse,
        "one": one,
        "two": two,
        "processors": list(agent_pipeline.processors(args)),
    }
    emit("two_process", record)


if __name__ == "__main__":
    main()
