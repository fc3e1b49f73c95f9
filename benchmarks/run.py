"""Run the benchmarks (`make bench`): each case in its own subprocess, printing one JSON
record, saved to `benchmarks/results/<case>.json`; then the tables in docs/benchmarks.md and
the headline figures in README.md are regenerated from the results (`benchmarks.report`).

    python -m benchmarks.run                        # every case, ~10 minutes (make bench)
    python -m benchmarks.run --case agent_pipeline  # some cases (repeat --case, or list them)
    python -m benchmarks.run --quick                # a tiny load: checks the machinery only
    python -m benchmarks.run --case floor -- --payload synthetic   # arguments for the case

Cases (every one's module docstring says exactly what it measures):
  floor           protobuf decode + encode of the same requests, no network (per CPU-second)
  receive_floor   a bare grpc.aio server that only decodes: the least a Python receiver pays
  passthrough     OTLP/gRPC in -> batch -> otlp_grpc out to a null sink
  agent_pipeline  OTLP in -> groupbytrace -> provider_reconciliation, cache_tagging,
                  fallback_chain -> cleanliness (when there) -> tail_sampling -> null sink
  kafka           OTLP -> kafka exporter; kafka receiver -> pipeline (a Tansu broker)
  processors      each processor alone on pre-decoded batches, µs per span
  latency         added latency p50/p99 on the span-local path at half the maximum
  memory          RSS against spans held in groupbytrace (100k, 1M)
  accuracy        cleanliness: confusion matrix and macro-F1 on generator traces (when there)
  two_process     the agent pipeline in two processes on one port (SO_REUSEPORT) vs one
  live_view       the agent pipeline with the live view (a page's stream open) vs without,
                  at 1,000 traces/s, interleaved A/B slices: the view's CPU cost
  audit           tracesieve audit on a 1M-span dump, protobuf and JSON lines, vs the decode floor
  audit_dataset   tracesieve audit with --dataset vs without, on a dump whose LLM calls carry
                  their conversations: what writing the training set costs

Collectors run pinned to CPU 0 (`taskset -c 0`), the load generator and sink on CPU 1;
the load is the agent-trace generator's mix over OTLP/gRPC, closed loop, several streams.
Quick runs never touch docs/benchmarks.md or README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")

_AGENT = ["--payload", "agent", "--spans-per-request", "512"]
_QUICK_NET = ["--duration", "0.5", "--warmup", "1", "--repeat", "1"]
_QUICK_AGENT = [*_QUICK_NET, "--templates", "20", "--spans-per-request", "64"]

# name -> (module, arguments for `make bench`, arguments for --quick)
CASES: dict[str, tuple[str, list[str], list[str]]] = {
    "floor": (
        "benchmarks.cases.floor",
        [*_AGENT, "--duration", "6", "--warmup", "1", "--repeat", "3"],
        [
            *("--payload", "agent", "--requests", "4", "--spans-per-request", "64"),
            *("--duration", "0.3", "--warmup", "0.1", "--repeat", "1"),
        ],
    ),
    "receive_floor": (
        "benchmarks.cases.receive_floor",
        [*_AGENT, "--duration", "8", "--warmup", "2", "--repeat", "2"],
        ["--payload", "agent", "--requests", "4", "--spans-per-request", "64", *_QUICK_NET],
    ),
    "passthrough": (
        "benchmarks.cases.passthrough",
        [*_AGENT, "--duration", "8", "--warmup", "2", "--repeat", "2"],
        ["--payload", "agent", "--requests", "4", "--spans-per-request", "64", *_QUICK_NET],
    ),
    "agent_pipeline": (
        "benchmarks.cases.agent_pipeline",
        ["--duration", "10", "--warmup", "5", "--repeat", "3", "--profile", "txt", "--native"],
        _QUICK_AGENT,
    ),
    "kafka": (
        "benchmarks.cases.kafka",
        ["--seconds", "8", "--spans", "400000"],
        ["--seconds", "1", "--spans", "40000"],
    ),
    "processors": (
        "benchmarks.cases.processors",
        [],
        ["--traces", "40", "--spans", "3000", "--repeat", "1"],
    ),
    "latency": (
        "benchmarks.cases.latency",
        ["--duration", "20", "--rounds", "4", "--profile", "txt", "--native"],
        [
            *("--max-duration", "0.5", "--duration", "1", "--warmup", "0.5", "--rounds", "2"),
            *("--max-rounds", "2"),
            *("--templates", "20", "--spans-per-request", "64"),
        ],
    ),
    "memory": ("benchmarks.cases.memory", [], ["--spans", "2000", "10000"]),
    "accuracy": ("benchmarks.accuracy", ["--traces", "10000"], ["--traces", "300"]),
    "audit": (
        "benchmarks.cases.audit",
        ["--spans", "1000000"],
        ["--spans", "20000", "--templates", "100"],
    ),
    "audit_dataset": (
        "benchmarks.cases.audit",
        ["--dataset", "--spans", "1000000", "--repeat", "2"],
        ["--dataset", "--spans", "20000", "--templates", "100"],
    ),
    "two_process": (
        "benchmarks.cases.two_process",
        ["--duration", "10", "--repeat", "2"],
        _QUICK_AGENT,
    ),
    "live_view": (
        "benchmarks.cases.live_view",
        ["--traces-per-s", "1000", "--slice", "3", "--pairs", "12"],
        [
            *("--traces-per-s", "100", "--slice", "0.5", "--pairs", "2"),
            *("--settle", "0.6", "--templates", "20"),
            # machinery only: no pair left out as paused, however busy the machine
            *("--pause-threshold-ms", "60000"),
        ],
    ),
}


def available() -> list[str]:
    """Cases whose module is there (`accuracy` comes with the cleanliness processor)."""
    return [n for n, (mod, _, _) in CASES.items() if importlib.util.find_spec(mod) is not None]


def command(name: str, quick: bool, extra: list[str]) -> list[str]:
    module, full, small = CASES[name]
    return [sys.executable, "-m", module, *(small if quick else full), *extra]


def run_case(name: str, quick: bool, extra: list[str], timeout: float) -> dict[str, Any]:
    cmd = command(name, quick, extra)
    before = [round(x, 2) for x in os.getloadavg()]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (ROOT, os.environ.get("PYTHONPATH")))),
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"case {name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    record: dict[str, Any] = json.loads(lines[-1])
    # for a case that does not say them itself (benchmarks.accuracy): seen from here
    record.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    record.setdefault("loadavg_before", before)
    record.setdefault("loadavg_after", [round(x, 2) for x in os.getloadavg()])
    record.setdefault("command", " ".join(["python", *cmd[1:]]))
    return record


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("cases", nargs="*", metavar="CASE", help="cases to run (default: all)")
    p.add_argument("--case", action="append", default=[], metavar="NAME", help="a case to run")
    p.add_argument("--quick", "--smoke", action="store_true", help="a tiny load (machinery only)")
    p.add_argument("--results", default=RESULTS, help="where <case>.json go")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    p.add_argument(
        "--doc",
        default=None,
        help="benchmarks page to update (default: docs/benchmarks.md when "
        "the results go to benchmarks/results and the run is not --quick)",
    )
    p.add_argument(
        "--readme",
        default=None,
        help="README.md file whose headline figures to update (default: ours, as for --doc)",
    )
    p.add_argument(
        "--no-docs", action="store_true", help="leave docs/benchmarks.md and README.md alone"
    )
    args = p.parse_args(argv)
    have = available()
    names = [*args.cases, *args.case] or have
    for n in names:
        if n not in CASES:
            p.error(f"unknown case {n!r}: choose from {', '.join(CASES)}")
        if n not in have:
            p.error(f"case {n!r}: its module {CASES[n][0]} is not there")
    if extra and len(names) != 1:
        p.error("arguments after -- need exactly one case")
    os.makedirs(args.results, exist_ok=True)
    run_id = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        print(
            f"running {name}: {' '.join(command(name, args.quick, extra)[1:])}",
            file=sys.stderr,
            flush=True,
        )
        t0 = time.monotonic()
        record = run_case(name, args.quick, extra, args.timeout)
        record["run_id"] = run_id
        record["quick"] = args.quick
        record["seconds"] = round(time.monotonic() - t0, 1)
        records[name] = record
        with open(os.path.join(args.results, f"{name}.json"), "w") as fh:
            json.dump(record, fh, indent=2)
            fh.write("\n")
    from benchmarks import report

    print(report.table(report.load(args.results)))
    doc, readme = args.doc, args.readme
    if not args.quick and os.path.abspath(args.results) == RESULTS:
        doc = doc or report.DOC
        readme = readme or report.README_MD
    if (doc or readme) and not args.no_docs:
        report.update(doc, args.results, readme)
        done = " and ".join(p for p in (doc, readme) if p)
        print(f"updated the benchmark figures in {done}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
