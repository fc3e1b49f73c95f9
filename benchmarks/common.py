"""What every benchmark case shares: its command line, the machine description, CPU
accounting, and the one JSON record it prints on its last line of stdout."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

from benchmarks.payload import Payload, load

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOADAVG_BEFORE = os.getloadavg()  # when the case's process started, before any work


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--payload", default="synthetic", help="synthetic | agent | file:PATH")
    p.add_argument("--requests", type=int, default=64, help="distinct requests in the payload")
    p.add_argument("--spans-per-request", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    p.add_argument("--repeat", type=int, default=3, help="measurements; the best is reported")
    return p


def payload_of(args: argparse.Namespace) -> Payload:
    return load(args.payload, args.requests, args.spans_per_request, args.seed)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    try:
        from google.protobuf.internal import api_implementation

        backend = api_implementation.Type()
    except ImportError:  # pragma: no cover
        backend = "?"
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "protobuf_backend": backend,
        "platform": platform.platform(),
        "loadavg_1m": os.getloadavg()[0],
    }


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def schedstat_ns(pid: int) -> tuple[int, int]:
    """Of all the threads of `pid` so far, in ns (`/proc/<pid>/task/*/schedstat`, finer
    than ticks): the time on a CPU, and the time runnable but waiting for one (the
    kernel's run-queue delay)."""
    run = wait = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                f = fh.read().split()
        except OSError:  # a thread that ended meanwhile
            continue
        run += int(f[0])
        wait += int(f[1])
    return run, wait


def wait_seconds(pid: int) -> float:
    """Time the threads of `pid` spent runnable but waiting for a CPU, in seconds."""
    return schedstat_ns(pid)[1] / 1e9


def steal_seconds(cpu: int) -> float:
    """Time the hypervisor gave CPU `cpu` to another guest (`/proc/stat`, the "steal"
    column), in seconds; 0 where the kernel does not count it."""
    with open("/proc/stat") as fh:
        for line in fh:
            f = line.split()
            if f[0] == f"cpu{cpu}":
                return int(f[8]) / CLOCK_TICKS if len(f) > 8 else 0.0
    return 0.0


def command() -> str:
    """The command line that reproduces this record: `python -m <module> <arguments>`."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    head = ["python", "-m", spec.name] if spec is not None else ["python", sys.argv[0]]
    return " ".join([*head, *sys.argv[1:]])


def emit(case: str, record: dict[str, Any]) -> None:
    """The case's one JSON record, on the last line of stdout: its figures, then the
    machine, the date, the load average (1, 5, 15 min) when the case started and when it
    ended, and the command to reproduce it."""
    out = {
        "case": case,
        **record,
        "machine": machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_before": [round(x, 2) for x in LOADAVG_BEFORE],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "command": command(),
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def pin(cpu: int) -> bool:
    """Pin this process to one CPU when the machine has it; False when it does not."""
    if (os.cpu_count() or 1) <= cpu:
        return False
    os.sched_setaffinity(0, {cpu})
    return True


def sink_config(
    sink: str, procs: dict[str, Any], log_level: str = "warn", compression: str = "none"
) -> dict[str, Any]:
    """A collector config: OTLP/gRPC in on a free port -> `procs` in order -> `otlp_grpc`
    out to the null sink at `sink` with `compression`; no metrics endpoint."""
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": procs,
        "exporters": {
            "otlp_grpc/sink": {
                "endpoint": sink,
                "tls": {"insecure": True},
                "compression": compression,
            }
        },
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": list(procs),
                    "exporters": ["otlp_grpc/sink"],
                }
            },
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": log_level}},
        },
    }
