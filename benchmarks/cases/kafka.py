"""`kafka`: OTLP/gRPC in -> `kafka` exporter, and a `kafka` receiver -> pipeline, through
`benchmarks.kafka` (its `exporter` and `receiver` cases, and `exporter_by_trace` with
`--by-trace`): the collector pinned to CPU 0, a Tansu broker (tests/kafka_broker.py) and
the load on the other core. Throughput in spans/s at the exporter's sent-spans counter,
and at the receiver's accepted-spans counter for a topic filled beforehand.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from benchmarks.common import emit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=8.0, help="measuring window (exporter)")
    p.add_argument("--spans", type=int, default=300_000, help="spans in the topic (receiver)")
    p.add_argument("--by-trace", action="store_true", help="also partition_traces_by_id")
    p.add_argument("--cpu", type=int, default=0, help="the core the collector is pinned to")
    args = p.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, root)  # tests.kafka_broker, tests.kafka.helpers
    from benchmarks import kafka
    from tests.kafka_broker import KafkaBroker

    ncpu = os.cpu_count() or 1
    cpus = {args.cpu} if ncpu > args.cpu else {0}
    others = set(range(ncpu)) - cpus or cpus
    broker = KafkaBroker().start()
    assert broker.proc is not None
    kafka._pin(broker.proc.pid, others)
    runs: dict[str, Any] = {}
    try:
        for case in ("exporter", "exporter_by_trace") if args.by_trace else ("exporter",):
            runs[case] = kafka._otlp_case(case, broker.bootstrap, args.seconds, cpus, others)
        runs["receiver"] = kafka._receiver_case(broker.bootstrap, args.spans, cpus)
    finally:
        broker.stop()
    emit(
        "kafka",
        {
            "spans_per_s": runs["exporter"]["spans_per_s"],
            "exporter_spans_per_s": runs["exporter"]["spans_per_s"],
            "receiver_spans_per_s": runs["receiver"]["spans_per_s"],
            "runs": runs,
            "request_spans": kafka.SPANS_PER_REQUEST,
            "trace_spans": kafka.SPANS_PER_TRACE,
            "pinned": {"collector": sorted(cpus), "broker_and_load": sorted(others)},
        },
    )


if __name__ == "__main__":
    main()
