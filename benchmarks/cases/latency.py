"""`latency`: the latency the collector adds on the span-local path, at half of its
measured maximum throughput.

The span-local path is what every span goes through without waiting for its trace:
OTLP/gRPC in -> `provider_reconciliation`, `cache_tagging`, `fallback_chain` -> `otlp_grpc`
out to a null sink (no `batch`, no `groupbytrace`: those hold spans on purpose). The
collector is `tracesieve run` pinned to CPU 0; load and sink share this process on CPU 1.

In each of `--rounds` rounds:

1. the maximum: closed loop (as `agent_pipeline`) for `--max-duration` seconds, at the sink;
2. through the collector at half that rate (open loop: a request every interval, whatever
   the answers), for `--duration / --rounds` seconds;
3. the baseline: the same requests straight to the sink at the same rate, for as long.

Each round's rate comes from the maximum measured just before it, and the collector's
phase follows that measurement at once: on a shared machine whose speed drifts within
seconds, a calibration made earlier would leave the collector at another load than half.

A probe on each of the two CPUs (`benchmarks.pauses`) notes when the machine itself
stopped: a round in which either CPU paused for more than 10 ms (`--pause-threshold-ms`)
during its through or its baseline phase is *disturbed*, and rounds run on (up to
`--max-rounds` in all) until `--rounds` are not.

Latency is per trace: from just before its request is sent to when the sink receives its
spans. Reported: p50/p99/max through the collector and of the baseline, the difference
(`added_*`: what the collector adds over one direct hop), pooled over the undisturbed
rounds (top level) and over all rounds (`all_rounds`), and each round's figures
(`rounds`: with its `pauses` and `disturbed`, and `cpu_per_span_vs_max`, the collector's
CPU a span in its phase over its CPU a span at the maximum: what open loop costs over
closed loop).

With `--profile txt --native`, py-spy then records the collector through one more phase
at the last round's rate (not counted in the latencies): results/profiles/latency.txt,
summarised in latency.top.txt.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import yaml

from benchmarks.cases import passthrough
from benchmarks.common import (
    cpu_seconds,
    emit,
    parser,
    pin,
    sink_config,
    steal_seconds,
    wait_seconds,
)
from benchmarks.pauses import add_threshold_argument, probes_for
from pipeline import wirescan


def config(sink: str, args: Any) -> dict[str, Any]:
    procs: dict[str, Any] = {
        "provider_reconciliation": {},
        "cache_tagging": {},
        "fallback_chain": {},
    }
    return sink_config(sink, procs, log_level="info", compression=args.compression)


SLOW = 0.05  # seconds: latencies above this are grouped into stalls


def stalls(slow: list[tuple[float, float]], start: float) -> list[dict[str, float]]:
    """Slow traces grouped by when they were sent (within 0.5 s of each other): each group
    is one stall of the path; when it began (seconds into the window) and how long."""
    out: list[dict[str, float]] = []
    for t0, lat in sorted(slow):
        if out and t0 - (start + out[-1]["at_s"] + out[-1]["span_s"]) < 0.5:
            g = out[-1]
            g["span_s"] = round(t0 - start - g["at_s"], 3)
            g["traces"] += 1
            g["worst_ms"] = max(g["worst_ms"], round(lat * 1000, 1))
        else:
            out.append(
                {
                    "at_s": round(t0 - start, 3),
                    "span_s": 0.0,
                    "traces": 1,
                    "worst_ms": round(lat * 1000, 1),
                }
            )
    return out


class TimedSink(passthrough.Sink):
    """The null sink, noting when each trace id arrives (first arrival).

    It reads a request with the collector's own C scanner (`wirescan`): checked as
    protobuf's decoder would, trace ids taken from the encoding. Decoding it with
    protobuf and walking every span in Python cost the load's core 0.7 ms a request
    (0.15 ms this way), delaying the next send by as much whenever the two coincided:
    that delay landed in the latencies measured."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[bytes, float] = {}
        self.latencies: list[float] = []
        self.slow: list[tuple[float, float]] = []  # (sent at, latency) over SLOW seconds
        self.recording = False

    async def _export(self, raw: bytes, context: Any) -> bytes:
        now = time.perf_counter()
        n, _ = wirescan.validate(raw)  # WireError (an answer of UNKNOWN) if malformed
        self.spans += n
        if self.recording:
            for scope in wirescan.group(raw)[0]:
                for tid in scope[2]:
                    t0 = self.sent.pop(tid, None)
                    if t0 is not None:
                        self.latencies.append(now - t0)
                        if now - t0 > SLOW:
                            self.slow.append((t0, now - t0))
        self.requests += 1
        return b""


def stream(args: Any) -> Iterator[tuple[bytes, int, list[bytes]]]:
    """(request, spans, its trace ids): whole generator traces with fresh trace ids."""
    import random

    from benchmarks.generator import LoadStream

    ls = LoadStream(args.seed, templates=args.templates)
    r = random.Random(args.seed)
    parts: list[bytes] = []
    tids: list[bytes] = []
    n = i = 0
    while True:
        tid, body, count, _ = ls.templates[i % len(ls.templates)]
        i += 1
        new = r.getrandbits(128).to_bytes(16, "big")
        parts.append(body.replace(tid, new))
        tids.append(new)
        n += count
        if n >= args.spans_per_request:
            yield b"".join(parts), n, tids
            parts, tids, n = [], [], 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """This process's cyclic GC collected and frozen, then off until the block ends: a
    full collection here took 29 ms mid-run, a stall of the sender and the sink alike,
    which the collector's latencies then carried."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def open_loop(
    endpoint: str,
    sink: TimedSink,
    requests: Iterator[tuple[bytes, int, list[bytes]]],
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    """Send at `rate` spans/s for `seconds` (after one second unrecorded), a request every
    interval whether or not the last was answered; latencies recorded at the sink (with
    this process's GC paused)."""
    with gc_paused():
        async with grpc.aio.insecure_channel(endpoint) as ch:
            call = ch.unary_unary(
                passthrough.EXPORT, request_serializer=None, response_deserializer=None
            )
            inflight: set[asyncio.Task[Any]] = set()
            errors = 0
            sent_spans = 0

            async def one(raw: bytes) -> None:
                nonlocal errors
                try:
                    await call(raw, timeout=30)
                except grpc.aio.AioRpcError:
                    errors += 1

            sink.latencies.clear()
            sink.slow.clear()
            sink.sent.clear()
            start = time.perf_counter()
            recorded_from = time.monotonic() + 1.0
            t_next = start
            end = start + 1.0 + seconds
            while True:
                now = time.perf_counter()
                if now >= end:
                    break
                if t_next > now:
                    await asyncio.sleep(t_next - now)
                raw, n, tids = next(requests)
                recording = time.perf_counter() >= start + 1.0
                sink.recording = sink.recording or recording
                t = time.perf_counter()
                if recording:
                    for tid in tids:
                        sink.sent[tid] = t
                    sent_spans += n
                task = asyncio.get_running_loop().create_task(one(raw))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                t_next += n / rate
            await asyncio.gather(*inflight)
            answered = time.monotonic()
            await asyncio.sleep(0.5)  # the last spans reach the sink
            sink.recording = False
        lat = sorted(sink.latencies)
        return {
            "rate_sent": round(sent_spans / seconds),
            "traces": len(lat),
            "lost_or_late": len(sink.sent),
            "errors": errors,
            **percentiles(lat),
            "over_50ms": len(sink.slow),
            "stalls": stalls(sink.slow, start + 1.0),
            "latencies": lat,  # dropped by `run` once pooled
            "window": (recorded_from, answered),  # popped by `run`
        }


def pooled(phases: list[dict[str, Any]], index: list[int] | None = None) -> dict[str, Any]:
    """One summary of a phase over rounds (latencies pooled, counts summed); `index`: the
    rounds' numbers (default: 0, 1, ...)."""
    index = index if index is not None else list(range(len(phases)))
    lat = sorted(x for ph in phases for x in ph["latencies"])
    out: dict[str, Any] = {
        "rate_sent": round(sum(ph["rate_sent"] for ph in phases) / max(1, len(phases))),
        **{k: sum(ph[k] for ph in phases) for k in ("traces", "lost_or_late", "errors")},
        **percentiles(lat),
        "over_50ms": sum(ph["over_50ms"] for ph in phases),
        "stalls": [
            {"round": i, **st} for i, ph in zip(index, phases, strict=True) for st in ph["stalls"]
        ],
    }
    if phases and "collector_cpu" in phases[0]:
        out["collector_cpu"] = round(sum(ph["collector_cpu"] for ph in phases) / len(phases), 3)
    return out


def percentiles(lat: list[float]) -> dict[str, float | None]:
    if not lat:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}

    def q(p: float) -> float:
        return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 3)

    return {"p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": round(1000 * lat[-1], 3)}


async def run(args: Any) -> dict[str, Any]:
    sink = TimedSink()
    sink_ep = await sink.start()
    workdir = tempfile.mkdtemp(prefix="tracesieve-bench-")
    path = os.path.join(workdir, "collector.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(config(sink_ep, args), fh)
    cmd = [sys.executable, "-m", "pipeline", "run", "--config", path]
    coll = passthrough.CollectorProcess(cmd, args.collector_cpu, workdir)
    loop = asyncio.get_running_loop()
    requests = stream(args)
    seconds = args.duration / args.rounds
    rounds: list[dict[str, Any]] = []
    profile: dict[str, Any] | None = None
    bases: list[dict[str, Any]] = []
    throughs: list[dict[str, Any]] = []
    probes = probes_for([c for c in (args.collector_cpu, args.load_cpu) if c is not None], args)
    try:
        endpoint = await loop.run_in_executor(None, coll.wait_ready)
        probes.start()
        most = max(args.rounds, args.max_rounds)
        while sum(not r["disturbed"] for r in rounds) < args.rounds and len(rounds) < most:
            # 1. the maximum, closed loop
            load = passthrough.Load(
                endpoint,
                lambda i: ((raw, n) for raw, n, _ in requests),
                args.channels,
                args.concurrency,
            )
            load.start()
            await asyncio.sleep(args.warmup if not rounds else 1.0)
            s0, c0, t0 = sink.spans, cpu_seconds(coll.proc.pid), time.monotonic()
            await asyncio.sleep(args.max_duration)
            dt = time.monotonic() - t0
            max_rate = (sink.spans - s0) / dt
            max_cpu = (cpu_seconds(coll.proc.pid) - c0) / dt
            await load.stop()
            await asyncio.sleep(1.0)  # drain
            rate = max_rate * args.fraction
            # 2. through the collector, right after its maximum was measured
            pid = coll.proc.pid
            c0, w0, st0 = cpu_seconds(pid), wait_seconds(pid), steal_seconds(args.collector_cpu)
            t0 = time.monotonic()
            through = await open_loop(endpoint, sink, requests, rate, seconds)
            dt = time.monotonic() - t0
            through["collector_cpu"] = round((cpu_seconds(pid) - c0) / dt, 3)
            # what took the collector's core from it: its threads' run-queue wait, and the
            # hypervisor's steal from that core (both as a fraction of the phase)
            wait = round((wait_seconds(pid) - w0) / dt, 4)
            steal = round((steal_seconds(args.collector_cpu) - st0) / dt, 4)
            # 3. the baseline: straight to the sink
            base = await open_loop(sink_ep, sink, requests, rate, seconds)
            # the machine's own pauses in either phase, seen by the probes
            paused = [probes.summary(*ph.pop("window")) for ph in (through, base)]
            bases.append(base)
            throughs.append(through)
            rounds.append(
                {
                    "max_spans_per_s": round(max_rate),
                    "max_collector_cpu": round(max_cpu, 3),
                    "spans_per_s": round(rate),
                    "collector_cpu": through["collector_cpu"],
                    "collector_wait": wait,
                    "steal": steal,
                    # CPU a span at this rate over CPU a span at the maximum: what open
                    # loop costs over closed loop (on a VM, partly the idle core's wake-up)
                    "cpu_per_span_vs_max": _ratio(
                        through["collector_cpu"] * max_rate, max_cpu * rate
                    ),
                    "p50_ms": through["p50_ms"],
                    "p99_ms": through["p99_ms"],
                    "added_p50_ms": _diff(through, base, "p50_ms"),
                    "added_p99_ms": _diff(through, base, "p99_ms"),
                    "pauses": {"through": paused[0], "baseline": paused[1]},
                    "disturbed": any(x["count"] for x in paused),
                }
            )
        if args.profile:
            profile = await profiled(coll.proc.pid, endpoint, sink, requests, rate, seconds, args)
    finally:
        probes.stop()
        code = await loop.run_in_executor(None, coll.stop)
        await sink.stop()
    clean = [i for i, r in enumerate(rounds) if not r["disturbed"]]
    through_all, base_all = pooled(throughs), pooled(bases)
    through_ok = pooled([throughs[i] for i in clean], clean)
    base_ok = pooled([bases[i] for i in clean], clean)
    for ph in throughs + bases:
        del ph["latencies"]
    return {
        "spans_per_s": round(sum(r["spans_per_s"] for r in rounds) / len(rounds)),
        "max_spans_per_s": round(sum(r["max_spans_per_s"] for r in rounds) / len(rounds)),
        "max_collector_cpu": round(sum(r["max_collector_cpu"] for r in rounds) / len(rounds), 3),
        "fraction_of_max": args.fraction,
        "cpu_per_span_vs_max": _mean([r["cpu_per_span_vs_max"] for r in rounds]),
        # over the rounds no machine pause disturbed (None when there were none)
        "undisturbed_rounds": len(clean),
        "p50_ms": through_ok["p50_ms"],
        "p99_ms": through_ok["p99_ms"],
        "added_p50_ms": _diff(through_ok, base_ok, "p50_ms"),
        "added_p99_ms": _diff(through_ok, base_ok, "p99_ms"),
        "through_collector": through_ok,
        "baseline_direct": base_ok,
        # over every round, disturbed or not
        "all_rounds": {
            "rounds": len(rounds),
            "p50_ms": through_all["p50_ms"],
            "p99_ms": through_all["p99_ms"],
            "added_p50_ms": _diff(through_all, base_all, "p50_ms"),
            "added_p99_ms": _diff(through_all, base_all, "p99_ms"),
            "through_collector": through_all,
            "baseline_direct": base_all,
        },
        "rounds": rounds,
        "pause_probe": {
            "cpus": probes.cpus,
            "interval_ms": probes.interval * 1000,
            "threshold_ms": probes.threshold * 1000,
        },
        "collector_exit": code,
        "processors": ["provider_reconciliation", "cache_tagging", "fallback_chain"],
        "payload": "agent (benchmarks.generator.LoadStream)",
        "spans_per_request": args.spans_per_request,
        "compression": args.compression,
        "pinned": {"collector": args.collector_cpu, "load_and_sink": args.load_cpu},
        "duration_s": args.duration,
        **({"profile": profile} if profile is not None else {}),
    }


async def profiled(
    pid: int,
    endpoint: str,
    sink: TimedSink,
    requests: Iterator[tuple[bytes, int, list[bytes]]],
    rate: float,
    seconds: float,
    args: Any,
) -> dict[str, Any]:
    """py-spy on the collector through one more open-loop phase at the last round's rate,
    after the measured ones (with `--native` py-spy pauses the process to sample it, so
    these latencies are not reported): what the collector does at half load."""
    loop = asyncio.get_running_loop()
    n = max(1, int(seconds))
    spy = loop.run_in_executor(
        None, passthrough._profile, pid, args, "latency", lambda: sink.spans, n
    )
    await open_loop(endpoint, sink, requests, rate, n + 1.0)  # outlasts py-spy's start
    profile = await spy
    profile["rate_sent"] = round(rate)
    return profile


def _ratio(x: float, y: float) -> float | None:
    return round(x / y, 3) if y > 0 else None


def _mean(xs: list[float | None]) -> float | None:
    known = [x for x in xs if x is not None]
    return round(sum(known) / len(known), 3) if known else None


def _diff(a: dict[str, Any], b: dict[str, Any], k: str) -> float | None:
    x, y = a.get(k), b.get(k)
    return round(x - y, 3) if x is not None and y is not None else None


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--templates", type=int, default=500)
    p.add_argument(
        "--max-duration", type=float, default=4.0, help="seconds at the maximum, each round"
    )
    p.add_argument(
        "--rounds", type=int, default=4, help="undisturbed rounds (maximum, through, baseline)"
    )
    p.add_argument(
        "--max-rounds",
        type=int,
        default=8,
        help="rounds in all at most, disturbed ones (a machine pause) included "
        "(never fewer than --rounds)",
    )
    add_threshold_argument(p, "its round is disturbed")
    p.add_argument("--fraction", type=float, default=0.5, help="of the maximum, for latency")
    passthrough.add_arguments(p, concurrency=32, channels=8)
    p.set_defaults(spans_per_request=512, warmup=2.0, duration=20.0, repeat=1)
    args = p.parse_args()
    if not pin(args.load_cpu):
        args.load_cpu = None
    emit("latency", passthrough.serve(run(args)))


if __name__ == "__main__":
    main()
