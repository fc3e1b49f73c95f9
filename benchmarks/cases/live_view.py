"""`live_view`: what the live view costs the agent pipeline, with a page watching.

Two collectors run the agent pipeline (`agent_pipeline`'s processors: groupbytrace, the
enrichment processors, cleanliness with the generator's tool schemas, tail_sampling) to a
null sink: A without the `live_view` exporter, B with it, and a page's event stream
(`GET /api/stream`, read here as a browser's EventSource reads it) open on B all along.
Both collectors are `tracesieve run` pinned to CPU 0; the load, the sink and the stream's
reader share CPU 1.

One open-loop load of whole generator traces (fresh trace ids) at `--traces-per-s`
(default 1,000 a second), sent to A and B in turn, a slice each (`--slice` seconds) in
ABBA order, as `benchmarks.ab` does: a drift of the shared machine's speed falls on both
alike. After each slice the load waits `--settle` seconds, longer than groupbytrace holds
a trace plus the view's `interval`, so that a slice's CPU is all of its traces' work. Per
slice: the collector's CPU time (all threads, schedstat) per request; a pair of slices in
which the machine paused (`benchmarks.pauses`) is left out.

Reported: B/A, the CPU of a trace with the view over without it (the median over the
pairs of slices, and the middle half of the ratios); each side's CPU a trace and its share
of a core while loaded; the latency p50/p99 of each; what the page's stream delivered
(events, traces, `gap`s) and the view's own count of what it held, evicted and dropped.
The view's budget is 5%: B/A ≤ 1.05.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from typing import Any

import aiohttp
import yaml

from benchmarks import ab
from benchmarks.cases import agent_pipeline, passthrough
from benchmarks.common import emit, pin
from benchmarks.pauses import add_threshold_argument, probes_for

_VIEW = re.compile(r"live view on (http://\S+/)")


def config(sink: str, args: Any, view: bool) -> dict[str, Any]:
    cfg = agent_pipeline.config(sink, args)
    cfg["service"]["telemetry"]["logs"]["level"] = "info"  # endpoints printed at start
    if view:
        cfg["exporters"]["live_view"] = {"endpoint": "127.0.0.1:0"}
        cfg["service"]["pipelines"]["traces"]["exporters"].append("live_view")
    return cfg


class Page:
    """A page's event stream on the view, read to the end as a browser reads it (events
    are counted, not decoded: decoding them would take the load's CPU)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events = 0
        self.traces = 0
        self.gaps = 0
        self.bytes = 0
        self.error = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
            async with (
                aiohttp.ClientSession(timeout=timeout) as s,
                s.get(f"{self.url}api/stream") as r,
            ):
                async for line in r.content:
                    self.bytes += len(line)
                    if line.startswith(b"event: "):
                        self.events += 1
                        if line.startswith(b"event: gap"):
                            self.gaps += 1
                    elif line.startswith(b"data: ["):
                        self.traces += line.count(b'"trace_id"')
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported, not fatal: the figures say what was read
            self.error = repr(exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "events": self.events,
            "traces": self.traces,
            "gaps": self.gaps,
            "bytes": self.bytes,
        }
        if self.error:
            out["error"] = self.error
        return out


async def view_stats(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{url}api/stats") as r:
        got: dict[str, Any] = await r.json()
    return {k: got[k] for k in ("held", "seq", "evicted", "dropped_spans", "unreadable_spans")}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.generator import LoadStream

    templates = LoadStream(args.seed, templates=args.templates).templates
    spans_per_trace = sum(t[2] for t in templates) / len(templates)
    args.rate = args.traces_per_s * spans_per_trace  # spans/s, as `benchmarks.ab` sends
    sink = ab.SliceSink()
    sink_ep = await sink.start()
    sides: dict[str, passthrough.CollectorProcess] = {}
    for side, view in (("A", False), ("B", True)):
        wd = tempfile.mkdtemp(prefix=f"tracesieve-live-view-{side}-")
        path = os.path.join(wd, "collector.yaml")
        with open(path, "w") as fh:
            yaml.safe_dump(config(sink_ep, args, view), fh)
        cmd = [sys.executable, "-m", "pipeline", "run", "--config", path]
        # one hash seed for both: a process's own seed moves its CPU by a few %
        sides[side] = passthrough.CollectorProcess(
            cmd, args.collector_cpu, wd, env={"PYTHONHASHSEED": "0"}
        )
    loop = asyncio.get_running_loop()
    probes = probes_for([args.collector_cpu, args.load_cpu], args)
    page: Page | None = None
    try:
        eps = {k: await loop.run_in_executor(None, c.wait_ready) for k, c in sides.items()}
        found = [m.group(1) for ln in sides["B"].lines if (m := _VIEW.search(ln))]
        if not found:
            raise SystemExit("B printed no live view address:\n" + "".join(sides["B"].lines))
        url = found[0]
        if not args.no_page:
            page = Page(url)
            page.start()
        with probes:
            pids = {k: c.proc.pid for k, c in sides.items()}
            t0 = time.monotonic()
            slices, errors = await ab.alternate(args, sink, eps, pids)
            wall = time.monotonic() - t0
        for sl in slices:
            sl["paused"] = probes.summary(*sl.pop("window"))["count"] > 0
        stats = await view_stats(url)
    finally:
        if page is not None:
            await page.stop()
        codes = [await loop.run_in_executor(None, c.stop) for c in sides.values()]
        await sink.stop()
    args.a_env = args.b_env = []
    args.a_root = args.b_root = ""
    out = ab.summarize(slices, sink.by_slice, errors, args)
    per_request = args.spans_per_request / spans_per_trace  # traces a request, on average
    for side in ("A", "B"):
        ms = out[side]["cpu_ms_per_request"]
        out[side]["cpu_ms_per_trace"] = round(ms / per_request, 4) if ms is not None else None
        mine = [s for s in slices if s["side"] == side and not s["paused"]]
        # the share of a core while loaded: the slice's CPU over the slice's length
        out[side]["core_share"] = (
            round(sum(s["cpu_ns"] for s in mine) / 1e9 / (args.slice * len(mine)), 3)
            if mine
            else None
        )
    del out["a"], out["b"]
    ratio = out["cpu_b_over_a"]["median"]
    return {
        "traces_per_s": args.traces_per_s,
        "spans_per_s": round(args.rate),
        "spans_per_trace": round(spans_per_trace, 1),
        "view_cost": round(ratio - 1, 4) if ratio is not None else None,
        "budget": 0.05,
        **out,
        "page": page.record() if page is not None else None,
        "view": stats,
        "seconds": round(wall, 1),
        "settle_s": args.settle,
        "processors": list(agent_pipeline.processors(args)),
        "spans_per_request": args.spans_per_request,
        "pinned": {"collectors": args.collector_cpu, "load_sink_and_page": args.load_cpu},
        "collector_exit": max(codes, key=abs),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--traces-per-s", type=float, default=1000.0, help="whole traces a second")
    p.add_argument("--slice", type=float, default=3.0, help="seconds per slice")
    p.add_argument("--pairs", type=int, default=10, help="pairs of slices (AB or BA)")
    p.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds after a slice before its CPU is read (groupbytrace's wait + the view's)",
    )
    p.add_argument("--no-page", action="store_true", help="no page's stream open on B")
    p.add_argument("--templates", type=int, default=500, help="distinct generator traces")
    p.add_argument("--spans-per-request", type=int, default=512)
    p.add_argument("--wait-duration", default="200ms", help="groupbytrace wait_duration")
    p.add_argument("--wait-after-root", default="50ms", help="... wait_duration_after_root")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--compression", default="none")
    p.add_argument("--collector-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    add_threshold_argument(p, "its pair is left out")
    args = p.parse_args()
    if not pin(args.load_cpu):
        args.load_cpu = args.collector_cpu
    emit("live_view", passthrough.serve(run(args)))


if __name__ == "__main__":
    main()
