"""`memory`: process RSS against spans held in `groupbytrace` (100,000 and 1,000,000 by
default), each N in a fresh process (`benchmarks.memory`'s `--child-hold`): a processor
that releases nothing holds N spans of the agent-trace generator's mix; reported are the
RSS, the baseline before, bytes per held span and the processor's own estimate.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from benchmarks import memory
from benchmarks.common import emit

TARGET_MIB = 1536  # for 1,000,000 held spans


def agent(n_spans: int, seed: int = 1) -> Iterator[bytes]:
    """`benchmarks.memory`'s source interface over the generator: requests of ~512 spans,
    whole traces with fresh trace ids."""
    from benchmarks.generator import LoadStream

    for raw, _ in LoadStream(seed).requests(n_spans, 512):
        yield raw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--spans", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--source", default="benchmarks.cases.memory:agent", help="module:function")
    args = p.parse_args()
    held: list[dict[str, Any]] = memory.memory(args.source, args.spans)
    for h in held:
        h.pop("target", None)
    largest = max(held, key=lambda h: h["held_spans"])
    emit(
        "memory",
        {
            "held_spans": largest["held_spans"],
            "rss_mib": largest["rss_mib"],
            "rss_per_span_bytes": largest["rss_per_span_bytes"],
            "target": f"<= {TARGET_MIB} MiB RSS for 1,000,000 held spans",
            "runs": held,
            "source": args.source,
        },
    )


if __name__ == "__main__":
    main()
