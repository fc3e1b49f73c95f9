"""`agent_pipeline`: the main job, end to end, on one core.

OTLP/gRPC in -> `groupbytrace` -> `provider_reconciliation`, `cache_tagging`,
`fallback_chain` -> `cleanliness` (when the processor is there; with the generator's tool
schemas) -> `tail_sampling` ->
`otlp_grpc` out to a null sink (uncompressed, as `passthrough`; `--compression gzip`
costs the collector ≈13 ms of CPU per MB exported), through a real `tracesieve run`
pinned to CPU 0.

The load (CPU 1) is the labelled agent-trace generator's mix (`benchmarks.generator.
LoadStream`: every convention, default fault rates, whole traces with fresh trace ids in
every request, about `--spans-per-request` spans a request), sent closed loop over
`--channels` connections with `--concurrency` requests in flight. `tail_sampling` runs
the usual policies (errors, slow traces, by cleanliness class) and ends with
`always_sample`, so every span reaches the sink: throughput is counted there, after the
decision wait (`--warmup` is longer than it), in steady state.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

from benchmarks.cases import passthrough
from benchmarks.common import emit, parser, pin, sink_config


def has_cleanliness() -> bool:
    return importlib.util.find_spec("processors.cleanliness") is not None


def tool_schemas(args: Any) -> str:
    """The generator's tool JSON Schemas, written once to a temporary directory."""
    if getattr(args, "schemas_dir", None) is None:
        import tempfile

        from benchmarks.generator import write_tool_schemas

        args.schemas_dir = tempfile.mkdtemp(prefix="tracesieve-schemas-")
        write_tool_schemas(args.schemas_dir)
    return str(args.schemas_dir)


def processors(args: Any) -> dict[str, Any]:
    """The processors of the agent pipeline, in order."""
    procs: dict[str, Any] = {
        "groupbytrace": {
            "wait_duration": args.wait_duration,
            "wait_duration_after_root": args.wait_after_root,
        },
        "provider_reconciliation": {},
        "cache_tagging": {},
        "fallback_chain": {},
    }
    if has_cleanliness():
        procs["cleanliness"] = {"tool_schemas": tool_schemas(args)}
    procs["tail_sampling"] = {
        "policies": [
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "slow", "type": "latency", "latency": {"threshold_ms": 60000}},
            {
                "name": "by-class",
                "type": "cleanliness",
                "cleanliness": {"clean": "keep", "noisy": 10, "corrupted": "keep"},
            },
            {"name": "keep-all", "type": "always_sample"},
        ]
    }
    return procs


def config(sink: str, args: Any) -> dict[str, Any]:
    procs = processors(args)
    return sink_config(sink, procs, compression=args.compression)


def agent_source(args: Any) -> tuple[passthrough.Source, dict[str, Any]]:
    """Every worker draws from one LoadStream: whole generator traces, fresh trace ids."""
    from benchmarks.generator import LoadStream

    stream = LoadStream(args.seed, templates=args.templates)
    spans = sum(t[2] for t in stream.templates)
    size = sum(len(t[1]) for t in stream.templates)

    def source(i: int) -> Iterator[tuple[bytes, int]]:
        return stream.requests(1 << 62, args.spans_per_request)

    describe = {
        "payload": "agent (benchmarks.generator.LoadStream)",
        "templates": len(stream.templates),
        "spans_per_trace": round(spans / len(stream.templates), 1),
        "spans_per_request": args.spans_per_request,
        "bytes_per_span": round(size / spans, 1),
    }
    return source, describe


def add_arguments(p: Any) -> None:
    p.add_argument("--templates", type=int, default=500, help="distinct generator traces")
    p.add_argument("--wait-duration", default="1s", help="groupbytrace wait_duration")
    p.add_argument("--wait-after-root", default="100ms", help="... wait_duration_after_root")
    passthrough.add_arguments(p, concurrency=32, channels=8)


def main() -> None:
    p = parser(__doc__ or "")
    add_arguments(p)
    p.set_defaults(spans_per_request=512, warmup=5.0, duration=10.0, repeat=2)
    args = p.parse_args()
    if not pin(args.load_cpu):
        args.load_cpu = None
    source, describe = agent_source(args)
    record = passthrough.serve(
        passthrough.run(
            args, config_fn=config, source=source, describe=describe, case="agent_pipeline"
        )
    )
    record["processors"] = list(processors(args))
    record["cleanliness"] = has_cleanliness()
    emit("agent_pipeline", record)


if __name__ == "__main__":
    main()
