"""Kafka throughput: the collector pinned to one core, the broker (Tansu) and the load
generator on the other(s). One JSON record per case on stdout:

    python -m benchmarks.kafka                      # every case
    python -m benchmarks.kafka --case receiver --seconds 10 --runs 3

Cases:
- `passthrough`: OTLP/gRPC in -> nothing (debug exporter, summaries only): the baseline.
- `exporter`: OTLP/gRPC in -> kafka exporter, one message per batch.
- `exporter_by_trace`: the same with `partition_traces_by_id` (one keyed message per trace).
- `receiver`: a topic filled beforehand (one message per trace, as sidecars write it)
  -> kafka receiver -> nothing.

`spans_per_s` is wall-clock throughput of the pinned collector; `spans_per_cpu_s` divides
by the CPU time the collector used in the window (less sensitive to sharing the core).
`--profile DIR` writes py-spy collapsed stacks of the collector per case (`DIR/<case>.txt`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from typing import Any

SPANS_PER_TRACE = 16
SPANS_PER_REQUEST = 512


def _spans_request(n_traces: int, spans_per_trace: int, rnd: random.Random) -> bytes:
    """An OTLP request of agent-like spans (~600 bytes each), spans of traces interleaved
    as an SDK batch holds them."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from pipeline.testing import kv, make_span

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(
        [kv("service.name", "agent"), kv("service.version", "1.4.2"), kv("host.name", "pod-7")]
    )
    ss = rs.scope_spans.add()
    ss.scope.name = "opentelemetry.instrumentation.openai_v2"
    traces = [(rnd.randbytes(16), rnd.randbytes(8)) for _ in range(n_traces)]
    for i in range(spans_per_trace):
        for tid, root in traces:
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "chat" if i % 3 else "execute_tool",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": rnd.randint(50, 5000),
                "gen_ai.usage.output_tokens": rnd.randint(5, 800),
                "gen_ai.tool.name": f"tool_{i}",
                "http.response.status_code": 200,
                "server.address": "api.openai.com",
                "task.class": "research",
                "note": "x" * 120,
            }
            span_id = root if i == 0 else rnd.randbytes(8)
            ss.spans.append(
                make_span(f"op {i}", tid, span_id, b"" if i == 0 else root, attributes=attrs)
            )
    data: bytes = req.SerializeToString()
    return data


def _pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of a process."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), cpus)
    except (OSError, AttributeError):
        pass


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(address: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{", name + "_total ", name + "_total{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _collector(config: dict[str, Any], cpus: set[int]) -> Any:
    from pipeline.testing import Collector

    c = Collector(config, workdir=tempfile.mkdtemp(prefix="bench-kafka-"))
    try:
        c.start(timeout=60)
    except BaseException:
        c.stop()  # a collector that did not get ready must not outlive the benchmark
        raise
    assert c.proc is not None
    _pin(c.proc.pid, cpus)
    return c


async def _load(endpoint: str, payloads: list[bytes], stop: asyncio.Event, conc: int) -> None:
    import grpc

    async with grpc.aio.insecure_channel(endpoint) as ch:
        call = ch.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )

        async def worker(i: int) -> None:
            k = i
            while not stop.is_set():
                try:
                    await call(payloads[k % len(payloads)], timeout=10)
                    k += conc
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.005)  # UNAVAILABLE: the queue is full

        await asyncio.gather(*(worker(i) for i in range(conc)))


PROFILE: str | None = None  # --profile: a py-spy flame graph of the collector per case
QUEUE_SIZE = 100  # --queue-size: the exporter's sending queue (requests)
LINGER = "10ms"  # --linger: producer.linger


def _profiler(pid: int, seconds: float, name: str) -> Any:
    if PROFILE is None:
        return None
    import subprocess

    os.makedirs(PROFILE, exist_ok=True)
    out = os.path.join(PROFILE, f"{name}.txt")  # collapsed stacks (flamegraph.pl input)
    cmd = ["py-spy", "record", "-p", str(pid), "-d", str(int(seconds)), "-o", out, "-r", "200"]
    cmd += ["-f", "raw"]
    exe = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return subprocess.Popen([exe, *cmd[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _measure(
    address: str, pid: int, counter: str, seconds: float, warmup: float, name: str = ""
) -> tuple[float, float, float]:
    """(spans, wall seconds, cpu seconds) of `counter` over a window after `warmup`."""
    time.sleep(warmup)
    prof = _profiler(pid, seconds, name)
    n0, c0, t0 = _metric(address, counter), _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    n1, c1, t1 = _metric(address, counter), _cpu_seconds(pid), time.monotonic()
    if prof is not None:
        prof.wait()
    return n1 - n0, t1 - t0, c1 - c0


def _otlp_case(
    case: str, bootstrap: str, seconds: float, cpus: set[int], load_cpus: set[int]
) -> dict[str, Any]:
    rnd = random.Random(1)
    n_traces = SPANS_PER_REQUEST // SPANS_PER_TRACE
    # 128 distinct requests: 4096 trace ids cycle, more than any cache of them keeps
    payloads = [_spans_request(n_traces, SPANS_PER_TRACE, rnd) for _ in range(128)]
    topic = f"bench-{case}-{os.getpid()}-{time.monotonic_ns()}"
    if case == "passthrough":
        exporter: dict[str, Any] = {"debug": {"summary_interval": "60s"}}
        counter = "otelcol_receiver_accepted_spans"
    else:
        exporter = {
            "kafka": {
                "brokers": [bootstrap],
                "topic": topic,
                "partition_traces_by_id": case == "exporter_by_trace",
                "sending_queue": {"queue_size": QUEUE_SIZE},
                "producer": {"linger": LINGER},
            }
        }
        counter = "otelcol_exporter_sent_spans"
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": exporter,
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": list(exporter)}},
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }
    if case != "passthrough":
        from tests.kafka.helpers import create_topic

        create_topic(bootstrap, topic, partitions=4)
    c = _collector(config, cpus)
    try:
        stop = asyncio.Event()
        endpoint = c.endpoints["receivers::otlp/grpc"]
        address = c.endpoints["telemetry/http"]
        result: dict[str, tuple[float, float, float]] = {}

        async def run() -> None:
            load = asyncio.ensure_future(_load(endpoint, payloads, stop, conc=8))
            loop = asyncio.get_running_loop()
            result["m"] = await loop.run_in_executor(
                None, _measure, address, c.proc.pid, counter, seconds, 2.0, case
            )
            stop.set()
            await load

        _pin(os.getpid(), load_cpus)
        asyncio.run(run())
        spans, wall, cpu = result["m"]
    finally:
        c.stop()
    return {
        "case": case,
        "spans": int(spans),
        "seconds": round(wall, 2),
        "spans_per_s": round(spans / wall),
        "collector_cpu_s": round(cpu, 2),
        "spans_per_cpu_s": round(spans / cpu) if cpu else None,
        "request_spans": SPANS_PER_REQUEST,
        "trace_spans": SPANS_PER_TRACE,
    }


def _fill(bootstrap: str, topic: str, spans: int) -> None:
    """Write `spans` spans as one keyed message per trace (what sidecars write)."""
    from aiokafka import AIOKafkaProducer

    from pipeline import wiresplit
    from tests.kafka.helpers import create_topic

    create_topic(bootstrap, topic, partitions=4)
    rnd = random.Random(2)
    msgs: list[tuple[bytes, bytes]] = []
    for _ in range(8):
        raw = _spans_request(SPANS_PER_REQUEST // SPANS_PER_TRACE, SPANS_PER_TRACE, rnd)
        for tid, refs in wiresplit.by_trace(wiresplit.parse(raw)).items():
            msgs.append((tid.hex().encode(), wiresplit.build(refs)))

    async def run() -> None:
        p = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, acks=1
        )
        await p.start()
        try:
            n = 0
            futs = []
            while n < spans:
                key, value = msgs[(n // SPANS_PER_TRACE) % len(msgs)]
                futs.append(await p.send(topic, value, key=key))
                n += SPANS_PER_TRACE
                if len(futs) >= 2000:
                    await asyncio.gather(*futs)
                    futs = []
            await asyncio.gather(*futs)
        finally:
            await p.stop()

    asyncio.run(run())


def _receiver_case(bootstrap: str, spans: int, cpus: set[int]) -> dict[str, Any]:
    topic = f"bench-receiver-{os.getpid()}-{time.monotonic_ns()}"
    _fill(bootstrap, topic, spans)
    config = {
        "receivers": {
            "kafka": {
                "brokers": [bootstrap],
                "topics": [topic],
                "group_id": f"bench-{os.getpid()}-{time.monotonic_ns()}",
                "initial_offset": "earliest",
            }
        },
        "exporters": {"debug": {"summary_interval": "60s"}},
        "service": {
            "pipelines": {"traces": {"receivers": ["kafka"], "exporters": ["debug"]}},
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }
    c = _collector(config, cpus)
    try:
        address = c.endpoints["telemetry/http"]
        pid = c.proc.pid
        counter = "otelcol_receiver_accepted_spans"
        deadline = time.monotonic() + 300
        while _metric(address, counter) == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        n0, c0, t0 = _metric(address, counter), _cpu_seconds(pid), time.monotonic()
        prof = _profiler(pid, 5, "receiver")
        n1 = n0
        while n1 < spans and time.monotonic() < deadline:
            time.sleep(0.05)
            n1 = _metric(address, counter)
        c1, t1 = _cpu_seconds(pid), time.monotonic()
        if prof is not None:
            prof.wait()
    finally:
        c.stop()
    wall, cpu = t1 - t0, c1 - c0
    got = n1 - n0
    return {
        "case": "receiver",
        "spans": int(got),
        "seconds": round(wall, 2),
        "spans_per_s": round(got / wall),
        "collector_cpu_s": round(cpu, 2),
        "spans_per_cpu_s": round(got / cpu) if cpu else None,
        "trace_spans": SPANS_PER_TRACE,
    }


CASES = ("passthrough", "exporter", "exporter_by_trace", "receiver")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kafka", description=__doc__)
    ap.add_argument("--case", choices=(*CASES, "all"), default="all")
    ap.add_argument("--seconds", type=float, default=8.0, help="measuring window (OTLP cases)")
    ap.add_argument("--spans", type=int, default=400_000, help="spans in the topic (receiver)")
    ap.add_argument("--runs", type=int, default=1, help="runs per case; the best is reported")
    ap.add_argument("--cpu", type=int, default=0, help="the core the collector is pinned to")
    ap.add_argument("--profile", metavar="DIR", help="write a py-spy flame graph per case here")
    ap.add_argument("--queue-size", type=int, default=100, help="exporter sending queue")
    ap.add_argument("--linger", default="10ms", help="exporter producer.linger")
    args = ap.parse_args(argv)
    global PROFILE, QUEUE_SIZE, LINGER
    PROFILE, QUEUE_SIZE, LINGER = args.profile, args.queue_size, args.linger
    from tests.kafka_broker import KafkaBroker

    ncpu = os.cpu_count() or 1
    cpus = {args.cpu}
    others = set(range(ncpu)) - cpus or cpus
    broker = KafkaBroker().start()
    assert broker.proc is not None
    _pin(broker.proc.pid, others)
    try:
        for case in CASES if args.case == "all" else (args.case,):
            runs = []
            for _ in range(args.runs):
                if case == "receiver":
                    runs.append(_receiver_case(broker.bootstrap, args.spans, cpus))
                else:
                    runs.append(_otlp_case(case, broker.bootstrap, args.seconds, cpus, others))
            best = max(runs, key=lambda r: r["spans_per_s"])
            best["runs"] = [r["spans_per_s"] for r in runs]
            best["benchmark"] = "kafka"
            best["cpus"] = ncpu
            print(json.dumps(best), flush=True)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
