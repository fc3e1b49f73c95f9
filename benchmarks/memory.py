"""Throughput and memory of `groupbytrace` alone. Prints one JSON record per line.

    python -m benchmarks.memory                         # everything, synthetic payloads
    python -m benchmarks.memory --only memory --spans 100000 1000000
    python -m benchmarks.memory --source benchmarks.generator:requests

Records:
- `groupbytrace.throughput`: spans/s through the processor, split into ingest (taking
  requests apart and holding spans) and release (framing whole traces, handing them on to
  a consumer that does nothing), for requests as the OTLP receiver hands them on (already
  decoded) and as raw bytes (e.g. from Kafka). Best of `--repeat` runs.
- `tail_sampling.throughput`: spans/s through tail_sampling alone (four policies:
  status_code, latency, string_attribute, probabilistic) on the batches groupbytrace
  releases for the same payloads; includes writing `sieve.sampling.policy` and dropping.
- `tail_sampling.standalone.throughput`: the same policies with tail_sampling holding
  the traces itself (no groupbytrace before it, as a Collector user configures it): the
  raw requests in, held, then every trace decided (released by shutdown) and handed on.
- `groupbytrace.memory`: process RSS with N spans held (nothing released), measured in a
  fresh subprocess per N: baseline after setup, total, and bytes per held span, next to the
  processor's own estimate (what `memory_limit_mib` is checked against).

The payload source is swappable: `--source module:function`, a function
`(n_spans: int, seed: int) -> Iterable[bytes]` yielding encoded ExportTraceServiceRequests
whose spans belong to traces spread over consecutive requests. The default is a synthetic
mix (`synthetic` below). Numbers on a shared 2-core machine are noisy; compare runs made
together.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.configtypes import Duration
from pipeline.otlpwire import TAG_1, TAG_2, TAG_3, frame
from pipeline.pdata import Traces
from pipeline.telemetry import Telemetry
from pipeline.testing import FakeHost, settings
from processors.groupbytrace import GroupByTraceConfig, GroupByTraceProcessor

Source = Callable[[int, int], Iterable[bytes]]

# -- the synthetic mix ----------------------------------------------------------------------

_NAMES = (
    "chat gpt-4o",
    "execute_tool search",
    "execute_tool fetch_page",
    "invoke_agent planner",
    "embeddings text-embedding-3-small",
    "chat claude-sonnet-4",
    "retrieve",
    "rerank",
)


def _body(rnd: random.Random, name: str) -> bytes:
    """A span's encoding after its ids: name, kind, times, ~15 attributes, status."""
    s = Span(name=name, kind=Span.SPAN_KIND_CLIENT)
    s.start_time_unix_nano = 1_700_000_000_000_000_000 + rnd.randrange(10**12)
    s.end_time_unix_nano = s.start_time_unix_nano + rnd.randrange(10**6, 10**10)
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": name.split()[0],
        "gen_ai.system": rnd.choice(("openai", "anthropic", "aws.bedrock")),
        "gen_ai.request.model": rnd.choice(("gpt-4o", "gpt-4o-mini", "claude-sonnet-4")),
        "gen_ai.response.model": rnd.choice(("gpt-4o-2024-08-06", "claude-sonnet-4-20250514")),
        "gen_ai.usage.input_tokens": rnd.randrange(10, 8000),
        "gen_ai.usage.output_tokens": rnd.randrange(1, 2000),
        "gen_ai.response.id": f"chatcmpl-{rnd.getrandbits(64):016x}",
        "gen_ai.response.finish_reasons": "stop",
        "server.address": "api.example.com",
        "server.port": 443,
        "http.response.status_code": 200,
        "gen_ai.conversation.id": f"conv-{rnd.getrandbits(32):08x}",
        "gen_ai.agent.name": rnd.choice(("planner", "researcher", "writer")),
        "task.class": rnd.choice(("qa", "summarize", "code")),
        "llm.latency_ms": rnd.random() * 5000,
    }
    for k, v in attrs.items():
        av = (
            AnyValue(int_value=v)
            if isinstance(v, int)
            else AnyValue(double_value=v)
            if isinstance(v, float)
            else AnyValue(string_value=v)
        )
        s.attributes.append(KeyValue(key=k, value=av))
    return bytes(s.SerializeToString())


def _resource(service: str) -> tuple[bytes, bytes]:
    r = Resource()
    for k, v in (
        ("service.name", service),
        ("telemetry.sdk.name", "opentelemetry"),
        ("telemetry.sdk.language", "python"),
        ("telemetry.sdk.version", "1.45.2"),
        ("host.name", "agent-host-1"),
        ("deployment.environment", "prod"),
    ):
        r.attributes.append(KeyValue(key=k, value=AnyValue(string_value=v)))
    return frame(TAG_1, r.SerializeToString()), frame(
        TAG_3, b"https://opentelemetry.io/schemas/1.26.0"
    )


def synthetic(n_spans: int, seed: int = 1) -> Iterator[bytes]:
    """Requests of 512 spans from ~300 concurrent traces of 2-40 spans (root last), spread
    over consecutive requests, from 4 services; ≈600-byte spans."""
    rnd = random.Random(seed)
    bodies = [_body(rnd, rnd.choice(_NAMES)) for _ in range(256)]
    resources = [_resource(f"agent-{i}") for i in range(4)]
    scope = frame(
        TAG_1,
        InstrumentationScope(
            name="opentelemetry.instrumentation.openai_v2", version="2.4b0"
        ).SerializeToString(),
    )
    active: list[list[Any]] = []  # [trace_id, root span id, spans left]
    sent = 0
    while sent < n_spans:
        per_rs: list[list[bytes]] = [[] for _ in resources]
        for _ in range(min(512, n_spans - sent)):
            while len(active) < 300:
                active.append([rnd.randbytes(16), rnd.randbytes(8), rnd.randrange(2, 41)])
            i = rnd.randrange(len(active))
            t = active[i]
            t[2] -= 1
            if t[2] == 0:
                ids = frame(TAG_1, t[0]) + frame(TAG_2, t[1])
                active[i] = active[-1]
                active.pop()
            else:
                ids = frame(TAG_1, t[0]) + frame(TAG_2, rnd.randbytes(8)) + b"\x22\x08" + t[1]
            per_rs[t[0][0] % len(resources)].append(frame(TAG_2, ids + rnd.choice(bodies)))
            sent += 1
        parts = []
        for (r0, r1), spans in zip(resources, per_rs, strict=True):
            if spans:
                ss = frame(TAG_2, scope + b"".join(spans))
                parts.append(frame(TAG_1, r0 + ss + r1))
        yield b"".join(parts)


def load_source(spec: str) -> Source:
    module, _, name = spec.partition(":")
    fn = getattr(importlib.import_module(module), name or "requests")
    return fn  # type: ignore[no-any-return]


# -- measuring ------------------------------------------------------------------------------


class _Null:
    mutates_data = False

    def __init__(self) -> None:
        self.spans = 0

    async def consume_traces(self, traces: Traces) -> None:
        self.spans += traces.span_count


def _processor(sink: Any, **overrides: Any) -> GroupByTraceProcessor:
    cfg = GroupByTraceConfig(
        wait_duration=Duration(3600.0),
        wait_duration_after_root=Duration(3600.0),
        num_traces=10_000_000,
        memory_limit_mib=1 << 20,
        **overrides,
    )
    return GroupByTraceProcessor(settings(telemetry=Telemetry()), cfg, sink)


async def _throughput_once(payloads: list[bytes], decoded: bool) -> dict[str, float]:
    """Ingest time excludes decoding: the OTLP receiver has decoded each request already
    (and frees it after the call), other sources hand on raw bytes."""
    sink = _Null()
    proc = _processor(sink)
    ingest = 0.0
    for p in payloads:
        b = Traces.decode(p) if decoded else Traces(raw=p, span_count=0)
        t0 = time.perf_counter()
        await proc.consume_traces(b)
        ingest += time.perf_counter() - t0
        del b
    t1 = time.perf_counter()
    await proc.shutdown()  # releases everything held
    release = time.perf_counter() - t1
    return {"spans": sink.spans, "ingest_s": ingest, "release_s": release}


def throughput(source: Source, spans: int, repeat: int) -> list[dict[str, Any]]:
    payloads = list(source(spans, 7))
    out = []
    for decoded in (True, False):
        runs = [asyncio.run(_throughput_once(payloads, decoded)) for _ in range(repeat)]
        best_ingest = min(r["ingest_s"] for r in runs)
        best_release = min(r["release_s"] for r in runs)
        best_total = min(r["ingest_s"] + r["release_s"] for r in runs)
        n = runs[0]["spans"]
        out.append(
            {
                "bench": "groupbytrace.throughput",
                "input": "decoded" if decoded else "raw",
                "spans": n,
                "requests": len(payloads),
                "ingest_spans_per_s": round(n / best_ingest),
                "release_spans_per_s": round(n / best_release),
                "spans_per_s": round(n / best_total),
                "runs": repeat,
            }
        )
    return out


async def _sampling_once(batches: list[bytes], policies: list[dict[str, Any]]) -> float:
    from pipeline.configtypes import decode
    from processors.tail_sampling import TailSamplingConfig, TailSamplingProcessor

    cfg, errs = decode({"policies": policies}, TailSamplingConfig, "tail_sampling")
    assert cfg is not None and not errs, errs
    proc = TailSamplingProcessor(settings(telemetry=Telemetry()), cfg, _Null())
    # whole traces, released as groupbytrace hands them on (raw, indexed)
    sink = _Collect()
    g = _processor(sink)
    for raw in batches:
        await g.consume_traces(Traces(raw=raw, span_count=0))
    await g.shutdown()
    inputs = sink.batches
    t0 = time.perf_counter()
    for b in inputs:
        await proc.consume_traces(b)
    return time.perf_counter() - t0


class _Collect:
    mutates_data = False

    def __init__(self) -> None:
        self.batches: list[Traces] = []

    async def consume_traces(self, traces: Traces) -> None:
        self.batches.append(traces)


SAMPLING_POLICIES: list[dict[str, Any]] = [
    {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
    {"name": "slow", "type": "latency", "latency": {"threshold_ms": 5000}},
    {
        "name": "anthropic",
        "type": "string_attribute",
        "string_attribute": {"key": "gen_ai.system", "values": ["anthropic"]},
    },
    {"name": "some", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}},
]


async def _standalone_once(batches: list[bytes], policies: list[dict[str, Any]]) -> float:
    from pipeline.configtypes import decode
    from processors.tail_sampling import TailSamplingConfig, TailSamplingProcessor

    cfg, errs = decode(
        {"policies": policies, "decision_wait": "1h", "num_traces": 10_000_000},
        TailSamplingConfig,
        "tail_sampling",
    )
    assert cfg is not None and not errs, errs
    proc = TailSamplingProcessor(settings(telemetry=Telemetry()), cfg, _Null())
    inputs = [Traces(raw=raw, span_count=0) for raw in batches]
    t0 = time.perf_counter()
    for b in inputs:
        await proc.consume_traces(b)
    await proc.shutdown()  # every held trace decided and handed on
    return time.perf_counter() - t0


def sampling_throughput(source: Source, spans: int, repeat: int) -> list[dict[str, Any]]:
    """tail_sampling on whole traces as groupbytrace releases them, and alone (holding)."""
    payloads = list(source(spans, 7))
    out = []
    for bench, once in (
        ("tail_sampling.throughput", _sampling_once),
        ("tail_sampling.standalone.throughput", _standalone_once),
    ):
        best = min(asyncio.run(once(payloads, SAMPLING_POLICIES)) for _ in range(repeat))
        out.append(
            {
                "bench": bench,
                "policies": [p["type"] for p in SAMPLING_POLICIES],
                "spans": spans,
                "spans_per_s": round(spans / best),
                "runs": repeat,
            }
        )
    return out


def _rss() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _hold(source: Source, n: int) -> dict[str, Any]:
    proc = _processor(_Null())
    await proc.start(FakeHost())
    it = iter(source(n, 11))
    first = next(it)
    await proc.consume_traces(Traces(raw=first, span_count=0))
    gc.collect()
    base = _rss()
    payload_bytes = len(first)
    for raw in it:
        payload_bytes += len(raw)
        await proc.consume_traces(Traces(raw=raw, span_count=0))
    gc.collect()
    total = _rss()
    held = proc.held_spans
    record = {
        "bench": "groupbytrace.memory",
        "held_spans": held,
        "held_traces": proc.held_traces,
        "payload_mib": round(payload_bytes / 2**20, 1),
        "rss_baseline_mib": round(base / 2**20, 1),
        "rss_mib": round(total / 2**20, 1),
        "rss_per_span_bytes": round((total - base) / max(held, 1)),
        "estimated_mib": round((proc._bytes + proc._ready_bytes) / 2**20, 1),
        "target": "1,000,000 spans in <= 1536 MiB RSS",
    }
    proc.closing = True  # skip releasing a million spans on the way out
    if proc._task is not None:
        proc._task.cancel()
    return record


def memory(source_spec: str, spans: list[int]) -> list[dict[str, Any]]:
    out = []
    for n in spans:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.memory",
            "--child-hold",
            str(n),
            "--source",
            source_spec,
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.memory", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--source", default="benchmarks.memory:synthetic")
    ap.add_argument("--only", choices=("throughput", "sampling", "memory"))
    ap.add_argument(
        "--spans",
        type=int,
        nargs="*",
        default=[100_000, 1_000_000],
        help="held spans for the memory records",
    )
    ap.add_argument("--throughput-spans", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child-hold", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    source = load_source(args.source)
    if args.child_hold:
        print(json.dumps(asyncio.run(_hold(source, args.child_hold))))
        return 0
    records: list[dict[str, Any]] = []
    if args.only in (None, "throughput"):
        records += throughput(source, args.throughput_spans, args.repeat)
    if args.only in (None, "sampling"):
        records += sampling_throughput(source, args.throughput_spans, args.repeat)
    if args.only in (None, "memory"):
        records += memory(args.source, args.spans)
    for r in records:
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
