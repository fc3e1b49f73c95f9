"""`processors`: each processor alone on pre-decoded batches, µs of CPU per span.

The GenAI enrichment processors (each alone, and the three together) through
`benchmarks.processors` on whole generator traces (decode not timed); `groupbytrace` and
`tail_sampling` through `benchmarks.memory` (groupbytrace: taking decoded requests apart,
holding and releasing whole traces; tail_sampling: four policies on the batches
groupbytrace releases); `cleanliness` on the same batches as the enrichment processors,
when that processor is there. The decode cost of the same batches is given for scale.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from typing import Any

from benchmarks import memory
from benchmarks import processors as genai
from benchmarks.common import emit


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
    cases = dict(genai.CASES)
    if importlib.util.find_spec("processors.cleanliness") is not None:
        cleanliness = importlib.import_module("processors.cleanliness")
        cases["cleanliness"] = (cleanliness.factory,)
    for case in cases:
        genai.CASES.setdefault(case, cases[case])
        r = genai.run(case, encoded, args.repeat)
        runs[case] = r
        figures[case] = r["us_per_span"]
    source = memory.load_source("benchmarks.cases.memory:agent")
    for r in memory.throughput(source, args.spans, args.repeat):
        if r["input"] == "decoded":
            runs["groupbytrace"] = r
            figures["groupbytrace"] = round(1e6 / r["spans_per_s"], 3)
    for r in memory.sampling_throughput(source, args.spans, args.repeat):
        runs["tail_sampling"] = r
        figures["tail_sampling"] = round(1e6 / r["spans_per_s"], 3)
    emit(
        "processors",
        {
            "us_per_span": figures,
            "spans": runs["genai_all"]["spans"],
            "runs": runs,
            "note": "GenAI cases and cleanliness: CPU time; groupbytrace and tail_sampling: wall time",
        },
    )


if __name__ == "__main__":
    main()
