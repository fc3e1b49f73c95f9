"""Run the benchmarks: each case in its own subprocess, one JSON record each, saved to
`benchmarks/results/<case>.json`, and a table at the end.

    python -m benchmarks.run                       # every case (make bench)
    python -m benchmarks.run passthrough           # some cases
    python -m benchmarks.run --smoke               # a tiny load: checks the machinery only
    python -m benchmarks.run -- --payload agent    # arguments after -- go to every case

Cases: `floor` (protobuf decode + encode of the payload, the least any collector that
parses OTLP pays), `receive_floor` (a bare grpc.aio server that decodes each request:
the least a Python OTLP/gRPC receiver pays) and `passthrough` (OTLP/gRPC in -> batch ->
otlp_grpc out through a real collector pinned to CPU 0, load and sink on CPU 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

CASES = {
    "floor": "benchmarks.cases.floor",
    "receive_floor": "benchmarks.cases.receive_floor",
    "passthrough": "benchmarks.cases.passthrough",
}
SMOKE = ["--duration", "0.3", "--warmup", "0.1", "--repeat", "1", "--requests", "4"]
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def run_case(name: str, extra: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", CASES[name], *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"case {name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    record: dict[str, Any] = json.loads(lines[-1])
    return record


def table(records: dict[str, dict[str, Any]]) -> str:
    rows = [("case", "spans/s", "collector CPU", "spans/CPU-s", "µs/CPU/span", "payload")]
    for name, r in records.items():
        per_cpu = r.get("spans_per_collector_cpu_s") or r.get("spans_per_cpu_s") or 0
        rows.append(
            (
                name,
                f"{r['spans_per_s']:,.0f}" if "collector_cpu" in r else "-",
                f"{r['collector_cpu']:.0%}" if "collector_cpu" in r else "-",
                f"{per_cpu:,.0f}",
                f"{1e6 / per_cpu:.2f}" if per_cpu else "-",
                f"{r.get('payload')} ({r.get('spans_per_request')} spans/req, {r.get('bytes_per_span')} B/span)",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    if "floor" in records and "passthrough" in records:
        floor = records["floor"]["spans_per_cpu_s"]
        pt = records["passthrough"]["spans_per_collector_cpu_s"]
        out.append(f"passthrough / floor, both per CPU-second: {pt / floor:.2f}")
    if "receive_floor" in records and "passthrough" in records:
        rf = records["receive_floor"]["spans_per_collector_cpu_s"]
        pt = records["passthrough"]["spans_per_collector_cpu_s"]
        out.append(f"passthrough / receive_floor, both per CPU-second: {pt / rf:.2f}")
    m = next(iter(records.values()))["machine"]
    out.append(
        f"machine: {m['cpu']} x{m['cpus']}, Python {m['python']}, protobuf {m['protobuf_backend']}, "
        f"load average {m['loadavg_1m']:.2f} at the end"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("cases", nargs="*", choices=[*CASES, []], help="default: all")
    p.add_argument("--smoke", action="store_true", help="a tiny load, to check the machinery")
    p.add_argument("--results", default=RESULTS, help="where <case>.json go")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    args = p.parse_args(argv)
    names = args.cases or list(CASES)
    if args.smoke:
        extra = [*SMOKE, *extra]
    os.makedirs(args.results, exist_ok=True)
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        record = run_case(name, extra, args.timeout)
        records[name] = record
        path = os.path.join(args.results, f"{name}.json")
        with open(path, "w") as fh:
            json.dump(record, fh, indent=2)
            fh.write("\n")
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
