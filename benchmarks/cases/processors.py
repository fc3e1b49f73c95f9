"""`processors`: each processor alone on pre-decoded batches, µs of CPU per span.

The GenAI enrichment processors (each alone, and the three together) through
`benchmarks.processors` on whole generator traces (decode not timed); `groupbytrace` and
`tail_sampling` through `benchmarks.memory` (groupbytrace: taking decoded requests apart,
holding and releasing whole traces; tail_sampling: four policies on the batches
groupbytrace releases, and `tail_sampling_alone` holding the traces itself); `cleanliness` (when it is there) alone with the generator's tool
schemas on whole-trace batches as groupbytrace releases them (`benchmarks.accuracy`). The decode cost of the same batches is given for scale.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from typing import Any

from benchmarks import memory
from benchmarks import processors as genai
from benchmarks.common import emit


def cleanliness_cost(traces: int, seed: int, repeat: int) -> dict[str, Any]:
    """`cleanliness` alone (it builds the GenAI index itself, as when no enrichment
    processor runs before it), with the generator's tool schemas, on whole-trace batches
    as `groupbytrace` releases them (`benchmarks.accuracy`); wall time, min of `repeat`."""
    import tempfile

    from benchmarks.generator import FaultRates, Generator, write_tool_schemas

    accuracy = importlib.import_module("benchmarks.accuracy")
    gen = list(Generator(seed, rates=FaultRates()).traces(traces))
    spans = sum(t.span_count for t in gen)
    with tempfile.TemporaryDirectory(prefix="tracesieve-schemas-") as schemas:
        write_tool_schemas(schemas)
        best = min(accuracy.classify(gen, {"tool_schemas": schemas})[1] for _ in range(repeat))
    return {
        "case": "cleanliness",
        "spans": spans,
        "traces": traces,
        "us_per_span": round(best / spans * 1e6, 3),
        "repeat": repeat,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--traces", type=int, default=2000, help="generator traces (GenAI cases)")
    p.add_argument("--per-batch", type=int, default=50, help="whole traces per batch")
    p.add_argument("--spans", type=int, default=200_000, help="spans (groupbytrace, sampling)")
    p.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    encoded = genai.make_batches(args.traces, args.per_batch, args.seed)
    figures: dict[str, Any] = {"decode": genai.decode_cost(encoded, args.repeat)["us_per_span"]}
    runs: dict[str, Any] = {}
    for case in genai.CASES:
        r = genai.run(case, encoded, args.repeat)
        runs[case] = r
        figures[case] = r["us_per_span"]
    if importlib.util.find_spec("benchmarks.accuracy") is not None:
        runs["cleanliness"] = cleanliness_cost(args.traces, args.seed, args.repeat)
        figures["cleanliness"] = runs["cleanliness"]["us_per_span"]
    source = memory.load_source("benchmarks.cases.memory:agent")
    for r in memory.throughput(source, args.spans, args.repeat):
        if r["input"] == "decoded":
            runs["groupbytrace"] = r
            figures["groupbytrace"] = round(1e6 / r["spans_per_s"], 3)
    for r in memory.sampling_throughput(source, args.spans, args.repeat):
        # on groupbytrace's batches, and alone (holding the traces itself)
        key = "tail_sampling" if r["bench"] == "tail_sampling.throughput" else "tail_sampling_alone"
        runs[key] = r
        figures[key] = round(1e6 / r["spans_per_s"], 3)
    emit(
        "processors",
        {
            "us_per_span": figures,
            "spans": runs["genai_all"]["spans"],
            "runs": runs,
            "note": "GenAI cases: CPU time; cleanliness, groupbytrace and tail_sampling: wall time",
        },
    )


if __name__ == "__main__":
    main()
