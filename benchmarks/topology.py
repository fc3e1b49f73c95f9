"""The two-tier topology's enrichment, measured against the generator's ground truth: what
sidecars write seeing traces cut into the app SDK's export requests, and what a gateway
writes on the whole traces with and without `overwrite`.

    python -m benchmarks.topology [--traces 300] [--seed 1] [--max-batch 10 50 256]

For each `--max-batch`: the generator's traces (every convention and fault but `slow`), their
spans in end-time order cut into requests of 1..max-batch spans (as an SDK's
BatchSpanProcessor cuts them), each request enriched by the three processors as a sidecar
does (then redacted as configs/sidecar.yaml does), and the whole traces enriched again as
configs/gateway.yaml does. Prints one JSON record per case: traces with at least one
`sieve.*` value unlike the ground truth (`wrong_traces`), and the gateway's CPU µs per span.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.generator import FaultRates, GeneratedTrace, Generator
from pipeline.component import ProcessorFactory, TracesConsumer
from pipeline.pdata import Traces
from pipeline.testing import Sink, attrs, settings
from processors import attributes, cache_tagging, fallback_chain, provider_reconciliation

ENRICH: tuple[ProcessorFactory[Any], ...] = (
    provider_reconciliation.factory,
    cache_tagging.factory,
    fallback_chain.factory,
)
SIDECAR = Path(__file__).resolve().parent.parent / "configs" / "sidecar.yaml"
FIELDS = {
    "requested": ("sieve.provider.requested", "sieve.model.requested"),
    "served": ("sieve.provider.served", "sieve.model.served"),
    "evidence": ("sieve.provider.evidence",),
    "mismatch": ("sieve.provider.mismatch",),
    "cache_hit": ("sieve.cache.hit",),
    "cache_type": ("sieve.cache.type",),
    "cache_evidence": ("sieve.cache.evidence",),
    "attempts": ("sieve.attempt.count",),
    "retries": ("sieve.retry.count",),
    "fallback": ("sieve.fallback.fired",),
    "chain": ("sieve.fallback.chain",),
}


def _chain(
    factories: tuple[ProcessorFactory[Any], ...], raws: list[dict[str, Any]], sink: Sink
) -> TracesConsumer:
    nxt: TracesConsumer = sink
    for f, raw in reversed(list(zip(factories, raws, strict=True))):
        nxt = f.create(settings(id=f.type), msgspec.convert(raw, f.config_type), nxt)
    return nxt


def sidecar_chain(sink: Sink) -> TracesConsumer:
    procs = yaml.safe_load(SIDECAR.read_text())["processors"]
    redact = [procs["attributes/redact"], procs["attributes/redact_io"]]
    factories = (*ENRICH, attributes.factory, attributes.factory)
    return _chain(factories, [{}, {}, {}, *redact], sink)


def wrong_traces(traces: Traces, truths: list[dict[str, Any]]) -> int:
    spans = {s.span_id.hex(): s for _, _, s in traces.spans()}
    bad = 0
    for t in truths:
        ok = True
        for c in t["llm_calls"]:
            a = attrs(spans[c["span_id"]])
            for name, keys in FIELDS.items():
                got = "/".join(str(a.get(k)) for k in keys) if len(keys) > 1 else a.get(keys[0])
                if got != c[name]:
                    ok = False
        for tr in t["tool_retries"]:
            if attrs(spans[tr["span_id"]]).get("sieve.retry.count") != tr["retries"]:
                ok = False
        bad += not ok
    return bad


def cut(traces: list[GeneratedTrace], max_batch: int, seed: int) -> list[bytes]:
    """The spans in end-time order, in requests of 1..max_batch spans."""
    spans = sorted(
        (
            (rs.resource, ss.scope, s)
            for t in traces
            for rs in t.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ),
        key=lambda x: x[2].end_time_unix_nano,
    )
    r = random.Random(seed)
    out: list[bytes] = []
    i = 0
    while i < len(spans):
        n = r.randint(1, max_batch)
        req = ExportTraceServiceRequest()
        for resource, scope, s in spans[i : i + n]:
            rs = req.resource_spans.add()
            rs.resource.CopyFrom(resource)
            ss = rs.scope_spans.add()
            ss.scope.CopyFrom(scope)
            ss.spans.add().CopyFrom(s)
        out.append(req.SerializeToString())
        i += n
    return out


async def case(traces: list[GeneratedTrace], max_batch: int, seed: int) -> dict[str, Any]:
    truths = [t.truth for t in traces]
    side = Sink()
    sidecar = sidecar_chain(side)
    for raw in cut(traces, max_batch, seed):
        await sidecar.consume_traces(Traces(raw=raw))
    whole = ExportTraceServiceRequest()
    for b in side.batches:
        whole.resource_spans.extend(Traces(raw=b.to_bytes()).request.resource_spans)
    encoded = whole.SerializeToString()
    record: dict[str, Any] = {
        "max_batch": max_batch,
        "traces": len(traces),
        "spans": sum(t.span_count for t in traces),
        "sidecar_requests": len(side.batches),
        "wrong_traces_sidecar": wrong_traces(Traces(raw=encoded), truths),
    }
    for mode, overwrite in (("keep", False), ("overwrite", True)):
        sink = Sink()
        gateway = _chain(ENRICH, [{"overwrite": overwrite}] * 3, sink)
        batch = Traces(raw=encoded)
        _ = batch.request  # decoded before the clock starts: decoding is not theirs
        t0 = time.process_time()
        await gateway.consume_traces(batch)
        cpu = time.process_time() - t0
        record[f"wrong_traces_gateway_{mode}"] = wrong_traces(sink.batches[0], truths)
        record[f"gateway_{mode}_us_per_span"] = round(cpu / record["spans"] * 1e6, 2)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.topology", description=__doc__)
    ap.add_argument("--traces", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-batch", type=int, nargs="+", default=[10, 50, 256])
    args = ap.parse_args(argv)
    for i, mb in enumerate(args.max_batch):
        gen = Generator(args.seed + i, rates=FaultRates.parse("all=0.1,slow=0"), warmup=0)
        traces = list(gen.traces(args.traces))
        print(json.dumps(asyncio.run(case(traces, mb, args.seed + i))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
