"""Cost of the GenAI enrichment processors, in microseconds per span, on pre-decoded batches
of generator traces (the agent-trace mix: every convention, default fault rates).

    python -m benchmarks.processors [--traces 3000] [--per-batch 50] [--repeat 5]

Prints one JSON record per case: each processor alone, and the three together (in pipeline
order, sharing one index per batch); `us_per_span` is CPU time of this process (read it on a
shared machine), `wall_us_per_span` wall time. Decoding is not timed (each batch is decoded
just before it is processed). Min of `--repeat` runs. A first record gives the decode cost
of the same batches, for scale.

The processors read and write the batch's encoding (`pipeline.wirescan`), not the decoded
message: what they write is spliced into the encoding when the next stage asks for the
bytes. That splice is timed here (`to_bytes()` inside the timed region), so the figure is
the whole cost of a batch passing through.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from typing import Any

from benchmarks.generator import FaultRates, Generator, batches
from pipeline.component import ProcessorFactory, TracesConsumer
from pipeline.pdata import Traces
from pipeline.testing import settings
from processors import cache_tagging, fallback_chain, provider_reconciliation

CASES: dict[str, tuple[ProcessorFactory[Any], ...]] = {
    "provider_reconciliation": (provider_reconciliation.factory,),
    "cache_tagging": (cache_tagging.factory,),
    "fallback_chain": (fallback_chain.factory,),
    "genai_all": (
        provider_reconciliation.factory,
        cache_tagging.factory,
        fallback_chain.factory,
    ),
}


def make_batches(traces: int, per_batch: int, seed: int) -> list[bytes]:
    gen = Generator(seed, rates=FaultRates())
    return [req.SerializeToString() for req, _ in batches(gen.traces(traces), per_batch)]


def _chain(factories: tuple[ProcessorFactory[Any], ...]) -> TracesConsumer:
    nxt: TracesConsumer = _Null()
    for f in reversed(factories):
        nxt = f.create(settings(id=f.type), f.config_type(), nxt)
    return nxt


class _Null:
    mutates_data = False

    async def consume_traces(self, traces: Traces) -> None:
        pass


async def _run_once(first: TracesConsumer, encoded: list[bytes]) -> tuple[float, float, int]:
    """Each batch is decoded (not timed), processed (timed), then dropped, as in a pipeline
    where a few batches are alive at a time (holding all of them would inflate the cost of
    the garbage collector's passes)."""
    wall = cpu = 0.0
    spans = 0
    gc.collect()
    for raw in encoded:
        t = Traces.decode(raw)
        _ = t.request
        spans += t.span_count
        w0, c0 = time.perf_counter(), time.process_time()
        await first.consume_traces(t)
        t.to_bytes()
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        del t
    return wall, cpu, spans


def run(case: str, encoded: list[bytes], repeat: int) -> dict[str, Any]:
    """Min over `repeat` runs of wall time and of this process's CPU time (the CPU figure
    is the one to read on a shared machine)."""
    best_wall = best_cpu = float("inf")
    spans = 0
    for _ in range(repeat):
        first = _chain(CASES[case])
        wall, cpu, spans = asyncio.run(_run_once(first, encoded))
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    return {
        "case": case,
        "spans": spans,
        "batches": len(encoded),
        "us_per_span": round(best_cpu / spans * 1e6, 3),
        "wall_us_per_span": round(best_wall / spans * 1e6, 3),
        "repeat": repeat,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.processors")
    ap.add_argument("--traces", type=int, default=3000)
    ap.add_argument("--per-batch", type=int, default=50, help="whole traces per batch")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="default: all")
    args = ap.parse_args(argv)
    encoded = make_batches(args.traces, args.per_batch, args.seed)
    print(json.dumps(decode_cost(encoded, args.repeat)), flush=True)
    for case in args.case or list(CASES):
        print(json.dumps(run(case, encoded, args.repeat)), flush=True)
    return 0


def decode_cost(encoded: list[bytes], repeat: int) -> dict[str, Any]:
    """Decoding the same batches, for scale: the brief measured 0.75 us/span on a quiet
    machine, so `us_per_span / decode` compares runs on machines of different speed."""
    best = float("inf")
    spans = 0
    for _ in range(repeat):
        t0 = time.process_time()
        decoded = [Traces.decode(b) for b in encoded]
        best = min(best, time.process_time() - t0)
        spans = sum(t.span_count for t in decoded)
    return {"case": "decode", "spans": spans, "us_per_span": round(best / spans * 1e6, 3)}


__all__ = ["CASES", "decode_cost", "main", "make_batches", "run"]

if __name__ == "__main__":
    sys.exit(main())
