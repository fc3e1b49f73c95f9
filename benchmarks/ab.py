"""Interleaved A/B: two collectors on the span-local path (the `latency` case's config)
under one open-loop load that alternates between them, compared slice by slice.

On a shared VM the speed of a core moves by ±25% within minutes, so a run of A and then
a run of B measures the minutes as much as the change. Here A and B run side by side,
both pinned to the collector's CPU and idle but for their own slices; the load goes to
one at a time, switching every `--slice` seconds in ABBA order, so that a drift of the
machine's speed falls on both alike. Per slice: the collector's CPU time (all threads,
from /proc schedstat, in ns) per request, and the latency of each trace sent in it (from
just before its request is sent to its arrival at the sink, as in `latency`). A slice in
which the machine paused (`benchmarks.pauses`: a probe on each CPU) is left out, with
the slice it is paired with.

    python -m benchmarks.ab --b-env GRPC_EXPERIMENTS=-event_engine_listener
    python -m benchmarks.ab --b-root /tmp/other-checkout   # another commit, built in place

Printed (JSON): per side the mean CPU per request and the pooled latency p50/p99; B/A,
the median of the per-pair CPU ratios with the middle half of them; and the pairs left
out for a pause (`paused_pairs`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import grpc
import yaml

from benchmarks.cases import latency, passthrough
from benchmarks.common import pin, schedstat_ns
from benchmarks.pauses import add_threshold_argument, probes_for
from pipeline import wirescan


def cpu_ns(pid: int) -> int:
    """CPU time of all the threads of `pid` so far, in ns (schedstat: finer than ticks)."""
    return schedstat_ns(pid)[0]


class SliceSink(passthrough.Sink):
    """The null sink, noting each trace's latency under the slice it was sent in."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[bytes, tuple[float, int]] = {}  # trace id -> (sent at, slice)
        self.by_slice: dict[int, list[float]] = {}

    async def _export(self, raw: bytes, context: Any) -> bytes:
        now = time.perf_counter()
        n, _ = wirescan.validate(raw)
        self.spans += n
        for scope in wirescan.group(raw)[0]:
            for tid in scope[2]:
                got = self.sent.pop(tid, None)
                if got is not None:
                    self.by_slice.setdefault(got[1], []).append(now - got[0])
        self.requests += 1
        return b""


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sink = SliceSink()
    sink_ep = await sink.start()
    sides: dict[str, passthrough.CollectorProcess] = {}
    for side, env, root in (("A", args.a_env, args.a_root), ("B", args.b_env, args.b_root)):
        wd = tempfile.mkdtemp(prefix=f"tracesieve-ab-{side}-")
        path = os.path.join(wd, "collector.yaml")
        with open(path, "w") as fh:
            yaml.safe_dump(latency.config(sink_ep, args), fh)
        cmd = [sys.executable, "-m", "pipeline", "run", "--config", path]
        # one hash seed for both: a process's own seed moves its CPU by a few %
        env_vars = {"PYTHONHASHSEED": "0", **dict(kv.split("=", 1) for kv in env)}
        sides[side] = passthrough.CollectorProcess(cmd, args.collector_cpu, wd, root, env_vars)
    loop = asyncio.get_running_loop()
    probes = probes_for([args.collector_cpu, args.load_cpu], args)
    try:
        eps = {k: await loop.run_in_executor(None, c.wait_ready) for k, c in sides.items()}
        with probes:
            pids = {k: c.proc.pid for k, c in sides.items()}
            slices, errors = await alternate(args, sink, eps, pids)
        for sl in slices:
            sl["paused"] = probes.summary(*sl.pop("window"))["count"] > 0
    finally:
        for c in sides.values():
            await loop.run_in_executor(None, c.stop)
        await sink.stop()
    return summarize(slices, sink.by_slice, errors, args)


async def alternate(
    args: argparse.Namespace, sink: SliceSink, eps: dict[str, str], pids: dict[str, int]
) -> tuple[list[dict[str, Any]], int]:
    """Open loop at `args.rate`, to A and B in turn (ABBA), a slice each; the first two
    slices warm both sides and are dropped."""
    loop = asyncio.get_running_loop()
    requests = latency.stream(args)
    slices: list[dict[str, Any]] = []
    errors = 0
    order = ["A", "B", "B", "A"]
    with latency.gc_paused():
        chans = {k: grpc.aio.insecure_channel(ep) for k, ep in eps.items()}
        calls = {
            k: ch.unary_unary(
                passthrough.EXPORT, request_serializer=None, response_deserializer=None
            )
            for k, ch in chans.items()
        }
        inflight: set[asyncio.Task[Any]] = set()

        async def one(side: str, raw: bytes) -> None:
            nonlocal errors
            try:
                await calls[side](raw, timeout=30)
            except grpc.aio.AioRpcError:
                errors += 1

        for i in range(2 * args.pairs + 2):
            side = order[i % 4]
            c0, sent, w0 = cpu_ns(pids[side]), 0, time.monotonic()
            t_next = time.perf_counter()
            t_end = t_next + args.slice
            while (now := time.perf_counter()) < t_end:
                if t_next > now:
                    await asyncio.sleep(t_next - now)
                raw, n, tids = next(requests)
                t = time.perf_counter()
                if i >= 2:
                    for tid in tids:
                        sink.sent[tid] = (t, i - 2)
                task = loop.create_task(one(side, raw))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                sent += 1
                t_next += n / args.rate
            await asyncio.gather(*inflight)  # the slice's requests answered
            # and exported: its CPU all counted (a case whose collectors hold spans, e.g.
            # in groupbytrace, waits longer: `args.settle`)
            await asyncio.sleep(getattr(args, "settle", 0.1))
            if i >= 2:
                cpu = cpu_ns(pids[side]) - c0
                window = (w0, time.monotonic())
                slices.append({"side": side, "requests": sent, "cpu_ns": cpu, "window": window})
        for ch in chans.values():
            await ch.close()
    return slices, errors


def summarize(
    slices: list[dict[str, Any]], by_slice: dict[int, list[float]], errors: int, args: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rate": args.rate,
        "slice_s": args.slice,
        "errors": errors,
        "a": {"env": args.a_env, "root": args.a_root},
        "b": {"env": args.b_env, "root": args.b_root},
    }
    per_req = [s["cpu_ns"] / max(1, s["requests"]) / 1e6 for s in slices]  # ms a request
    # pairs of neighbouring slices (AB or BA), kept when the machine paused in neither
    pairs = [
        k
        for k in range(0, len(slices) - 1, 2)
        if not (slices[k].get("paused") or slices[k + 1].get("paused"))
    ]
    out["paused_pairs"] = len(slices) // 2 - len(pairs)
    kept = [k + j for k in pairs for j in (0, 1)]
    for side in ("A", "B"):
        idx = [k for k in kept if slices[k]["side"] == side]
        lat = sorted(x for k in idx for x in by_slice.get(k, ()))
        out[side] = {
            "cpu_ms_per_request": (
                round(statistics.fmean(per_req[k] for k in idx), 4) if idx else None
            ),
            **latency.percentiles(lat),
            "traces": len(lat),
        }
    ratios = sorted(
        per_req[k + 1] / per_req[k] if slices[k]["side"] == "A" else per_req[k] / per_req[k + 1]
        for k in pairs
    )
    q = len(ratios) // 4
    out["cpu_b_over_a"] = {
        "median": round(statistics.median(ratios), 4) if ratios else None,
        "middle_half": [round(ratios[q], 4), round(ratios[-1 - q], 4)] if ratios else [],
        "pairs": len(ratios),
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rate", type=float, default=110_000, help="spans/s, open loop")
    p.add_argument("--slice", type=float, default=1.0, help="seconds per slice")
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--a-env", nargs="*", default=[], metavar="K=V", help="variables for A")
    p.add_argument("--b-env", nargs="*", default=[], metavar="K=V", help="variables for B")
    p.add_argument("--a-root", default="", help="checkout to run as A (default: this one)")
    p.add_argument("--b-root", default="", help="checkout to run as B (default: this one)")
    p.add_argument("--templates", type=int, default=500)
    p.add_argument("--spans-per-request", type=int, default=512)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--compression", default="none")
    add_threshold_argument(p, "its pair is left out")
    p.add_argument("--collector-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    args = p.parse_args()
    pin(args.load_cpu)
    print(json.dumps(passthrough.serve(run(args)), indent=1))


if __name__ == "__main__":
    main()
