"""`passthrough`: OTLP/gRPC in -> batch -> otlp_grpc out, through a real collector.

The collector is `tracesieve run` in its own process pinned to CPU 0 (`taskset -c 0`).
This process, pinned to CPU 1, is both the load generator and the sink:

- load: pre-encoded requests from the payload, sent raw over `--channels` gRPC channels
  by `--concurrency` workers, closed loop (each sends its next request when the last
  is answered);
- sink: a null OTLP/gRPC TraceService server that parses every request it gets and
  counts the spans; throughput is counted there, after the whole pipeline.

Reported: spans/s at the sink (the best of `--repeat` windows), the collector's CPU use
in that window (from /proc; 1.0 = the whole core), and spans per collector CPU-second,
which is the figure least disturbed by other work on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.common import cpu_seconds, emit, parser, payload_of, pin
from benchmarks.payload import Payload

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EXPORT = f"/{SERVICE}/Export"
RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
_GRPC_EP = re.compile(r"OTLP/gRPC on grpc://(\S+)")


class Sink:
    """A null OTLP/gRPC server: parses each request and counts its spans."""

    def __init__(self) -> None:
        self.spans = 0
        self.requests = 0
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self) -> str:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 256 << 20)])
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(self._export)}
        )
        server.add_generic_rpc_handlers((handler,))
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        return f"127.0.0.1:{self.port}"

    async def _export(self, raw: bytes, context: Any) -> bytes:
        msg = ExportTraceServiceRequest.FromString(raw)
        self.spans += sum(len(ss.spans) for rs in msg.resource_spans for ss in rs.scope_spans)
        self.requests += 1
        return b""

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)


Source = Callable[[int], Iterator[tuple[bytes, int]]]
"""What a load worker sends: worker index -> endless (encoded request, span count)."""


def cycling(payload: Payload) -> Source:
    """The payload's requests in turn, each worker starting at its own offset."""
    work = list(zip(payload.requests, payload.span_counts, strict=True))
    return lambda i: itertools.cycle(work[i % len(work) :] + work[: i % len(work)])


class Load:
    """Closed-loop senders over a few channels."""

    def __init__(self, endpoint: str, source: Source, channels: int, concurrency: int) -> None:
        opts = [("grpc.max_send_message_length", -1)]
        self._channels = [
            grpc.aio.insecure_channel(endpoint, options=[*opts, ("grpc.channel_id", i)])
            for i in range(channels)
        ]
        self._calls = [
            ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
            for ch in self._channels
        ]
        self._source = source
        self.concurrency = concurrency
        self.accepted_spans = 0
        self.errors: Counter[str] = Counter()
        self._stop = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker(i)) for i in range(self.concurrency)]

    async def _worker(self, i: int) -> None:
        call = self._calls[i % len(self._calls)]
        work = self._source(i)
        while not self._stop:
            raw, n = next(work)
            try:
                await call(raw, timeout=30)
            except grpc.aio.AioRpcError as err:
                self.errors[err.code().name] += 1
                await asyncio.sleep(0.05)  # refused: back off a little, as clients do
                continue
            self.accepted_spans += n

    async def stop(self) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ch in self._channels:
            await ch.close()


def collector_config(sink: str, args: Any) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {"batch": {"send_batch_size": args.batch_size, "timeout": "200ms"}},
        "exporters": {
            "otlp_grpc/sink": {
                "endpoint": sink,
                "tls": {"insecure": True},
                "compression": args.compression,
            }
        },
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["otlp_grpc/sink"],
                }
            },
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
        },
    }


class CollectorProcess:
    """The server under test, pinned to `cpu`; it prints its gRPC endpoint and a line
    with "tracesieve is ready", as `tracesieve run` does."""

    def __init__(
        self,
        cmd: list[str],
        cpu: int,
        workdir: str,
        root: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        """`root`: the checkout to run (default: this one); `env`: added variables."""
        if (os.cpu_count() or 1) > cpu and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu), *cmd]
        root = root or os.path.dirname(os.path.dirname(RESULTS))  # importable from any cwd
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=workdir
        )
        self.lines: list[str] = []
        self.endpoint: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            m = _GRPC_EP.search(line)
            if m:
                self.endpoint = m.group(1)
            if "tracesieve is ready" in line:
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 60) -> str:
        self._ready.wait(timeout)
        if self.endpoint is None or self.proc.poll() is not None:
            raise SystemExit("collector did not start:\n" + "".join(self.lines))
        return self.endpoint

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


ConfigFn = Callable[[str, Any], dict[str, Any]]
"""(sink endpoint, arguments) -> the collector's configuration."""


async def run(
    args: Any,
    target: str = "collector",
    config_fn: ConfigFn = collector_config,
    source: Source | None = None,
    describe: dict[str, Any] | None = None,
    case: str = "passthrough",
) -> dict[str, Any]:
    """Start the sink, `args.processes` collectors (one per CPU from `args.collector_cpu`;
    more than one share a fixed gRPC port with SO_REUSEPORT), then the closed-loop load;
    after `args.warmup` seconds, `args.repeat` windows of `args.duration` seconds each,
    counted at the sink. With `args.profile`, py-spy records the (first) collector for
    one more window afterwards, so the measured windows are not disturbed."""
    if source is None:
        payload = payload_of(args)
        source, describe = cycling(payload), payload.describe()
    sink = Sink()
    sink_ep = await sink.start()
    workdir = tempfile.mkdtemp(prefix="tracesieve-bench-")
    processes = getattr(args, "processes", 1)
    if target == "collector":
        # the collector's log level must still print its endpoints: keep info for start-up
        config = config_fn(sink_ep, args)
        config["service"]["telemetry"]["logs"]["level"] = "info"
        if processes > 1:
            from pipeline.testing import free_port

            grpc_cfg = config["receivers"]["otlp"]["protocols"]["grpc"]
            grpc_cfg["endpoint"] = f"127.0.0.1:{free_port()}"
            grpc_cfg["reuse_port"] = True
        path = os.path.join(workdir, "collector.yaml")
        with open(path, "w") as fh:
            yaml.safe_dump(config, fh)
        cmd = [sys.executable, "-m", "pipeline", "run", "--config", path]
    else:  # a bare receiver: spans are counted as answered, there is no sink
        cmd = [sys.executable, "-m", "benchmarks.cases.receive_floor", "--serve"]
    loop = asyncio.get_running_loop()
    colls: list[CollectorProcess] = []
    codes: list[int] = []
    try:
        for k in range(processes):
            colls.append(CollectorProcess(cmd, args.collector_cpu + k, workdir))
            # one at a time: the second must bind the port the first holds
            endpoint = await loop.run_in_executor(None, colls[-1].wait_ready)
        load = Load(endpoint, source, args.channels, args.concurrency)
        load.start()

        def counted() -> int:
            return sink.spans if target == "collector" else load.accepted_spans

        def ccpu() -> float:
            return sum(cpu_seconds(c.proc.pid) for c in colls)

        t_end = time.monotonic() + args.warmup
        while time.monotonic() < t_end or counted() == 0:
            await asyncio.sleep(0.1)
            if time.monotonic() > t_end + 30:
                raise SystemExit("nothing arrived at the sink:\n" + "".join(colls[0].lines))
        windows: list[dict[str, float]] = []
        per_process: list[list[float]] = []
        for _ in range(args.repeat):
            s0, a0, c0, l0, t0 = (
                counted(),
                load.accepted_spans,
                ccpu(),
                cpu_seconds(),
                time.monotonic(),
            )
            p0 = [cpu_seconds(c.proc.pid) for c in colls]
            r0 = sink.requests
            await asyncio.sleep(args.duration)
            dt = time.monotonic() - t0
            cpu = ccpu() - c0
            per_process.append(
                [(cpu_seconds(c.proc.pid) - p) / dt for c, p in zip(colls, p0, strict=True)]
            )
            windows.append(
                {
                    "spans_per_s": (counted() - s0) / dt,
                    "accepted_per_s": (load.accepted_spans - a0) / dt,
                    "collector_cpu": cpu / dt,
                    "load_cpu": (cpu_seconds() - l0) / dt,
                    "spans_per_cpu_s": (counted() - s0) / cpu if cpu else 0.0,
                    # at the sink: how big the collector's exports are
                    "spans_per_export": (counted() - s0) / max(1, sink.requests - r0),
                }
            )
        profile: dict[str, Any] | None = None
        if getattr(args, "profile", None):
            profile = await loop.run_in_executor(
                None, _profile, colls[0].proc.pid, args, case, counted
            )
        await load.stop()
    finally:
        for c in colls:
            codes.append(await loop.run_in_executor(None, c.stop))
        await sink.stop()
    i_best = max(range(len(windows)), key=lambda i: windows[i]["spans_per_s"])
    best = windows[i_best]
    record = {
        "spans_per_s": round(best["spans_per_s"]),
        "spans_per_collector_cpu_s": round(best["spans_per_cpu_s"]),
        "collector_cpu": round(best["collector_cpu"], 3),
        "load_process_cpu": round(best["load_cpu"], 3),
        "accepted_per_s": round(best["accepted_per_s"]),
        "windows": [{k: round(v, 3) for k, v in w.items()} for w in windows],
        "errors": dict(load.errors),
        "collector_exit": max(codes, key=abs),
        "concurrency": args.concurrency,
        "channels": args.channels,
        "compression": args.compression,
        "batch_size": getattr(args, "batch_size", None),
        "pinned": {"collector": args.collector_cpu, "load_and_sink": args.load_cpu},
        **(describe or {}),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repeat": args.repeat,
    }
    if processes > 1:
        record["processes"] = processes
        record["process_cpu"] = [round(x, 3) for x in per_process[i_best]]
        record["pinned"]["collector"] = list(
            range(args.collector_cpu, args.collector_cpu + processes)
        )
    if profile is not None:
        record["profile"] = profile
    return record


PROFILES = os.path.join(RESULTS, "profiles")


def _profile(
    pid: int,
    args: Any,
    case: str,
    counted: Callable[[], int],
    seconds: int | None = None,
) -> dict[str, Any]:
    """py-spy on the collector for `seconds` (default: one window, `args.duration`) after the
    measured ones, written to
    results/profiles/<case>.<txt|svg|json> (`--profile txt|svg|json`: collapsed stacks,
    flame graph, speedscope); with `txt`, also <case>.top.txt, the functions with the
    largest share of samples (`benchmarks.profiles`). With `--native`, C frames too (py-spy
    then pauses the process while sampling)."""
    from benchmarks import profiles

    os.makedirs(PROFILES, exist_ok=True)
    out = os.path.join(PROFILES, f"{case}.{args.profile}")
    fmt = {"svg": "flamegraph", "txt": "raw"}.get(args.profile, "speedscope")
    exe = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    seconds = seconds or max(1, int(args.duration))
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(seconds)]
    cmd += ["--rate", "100", "--format", fmt, "--output", out]
    cmd += ["--native"] if args.native else ["--nonblocking"]
    s0, t0 = counted(), time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    rate = (counted() - s0) / (time.monotonic() - t0)
    info: dict[str, Any] = {
        "path": os.path.relpath(out, os.path.dirname(os.path.dirname(RESULTS))),
        "spans_per_s": round(rate),
        "seconds": seconds,
    }
    if res.returncode != 0 or not os.path.exists(out):
        info["error"] = (res.stderr or res.stdout)[-500:]
        return info
    if fmt == "raw":
        top = profiles.summarize(out)
        with open(os.path.join(PROFILES, f"{case}.top.txt"), "w") as fh:
            fh.write(profiles.render(top))
        info["samples"] = top["samples"]
        info["top_self"] = top["self"][:10]
        info["top_python"] = top["python"][:10]
        info["idle_samples"] = top["idle_samples"]
        info["top_total"] = top["total"][:20]
        info["top_native"] = top["total_native"][:12]
    return info


def add_arguments(
    p: argparse.ArgumentParser, concurrency: int = 64, channels: int = 8, compression: str = "none"
) -> None:
    p.add_argument("--concurrency", type=int, default=concurrency, help="requests in flight")
    p.add_argument("--channels", type=int, default=channels, help="gRPC channels (connections)")
    p.add_argument("--collector-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--profile", choices=["svg", "txt", "json"], help="py-spy the collector")
    p.add_argument("--native", action="store_true", help="with --profile: C frames too")
    p.add_argument(
        "--compression",
        default=compression,
        choices=["none", "gzip"],
        help="the otlp_grpc exporter's compression, to the sink",
    )


def serve(coro: Any) -> dict[str, Any]:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    with runner:
        record: dict[str, Any] = runner.run(coro)
    return record


def main(case: str = "passthrough", target: str = "collector", doc: str = "") -> None:
    p = parser(doc or __doc__ or "")
    add_arguments(p)
    p.add_argument("--batch-size", type=int, default=8192, help="batch send_batch_size")
    args = p.parse_args()
    if not pin(args.load_cpu):
        args.load_cpu = None
    emit(case, serve(run(args, target, case=case)))


if __name__ == "__main__":
    main()
