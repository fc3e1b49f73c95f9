"""Soak test: a steady load for a long time; memory must stay flat and nothing may be lost.

    python -m benchmarks.soak --max-rate 20000                # 80% of it for 10 minutes
    python -m benchmarks.soak --rate 5000 --duration 60 --json soak.json
    python -m benchmarks.soak --duration 600 --persistent     # with the on-disk queue

Topology (every process started through the CLI, as a user would):

    loadgen (OTLP/gRPC, numbered spans) -> tracesieve under test -> tracesieve backend

The collector under test runs `memory_limiter, batch` and an `otlp_grpc` exporter (or the
`--config` given, which must read OTLP/gRPC on ${env:SOAK_GRPC} and send to
${env:SOAK_BACKEND}). Without `--max-rate`/`--rate`, a 10 s flat-out run measures the
maximum first. Every `--interval` seconds a line reports the RSS of the collector under
test and the counts so far; at the end, the client's accepted spans are compared with what
the backend received (from both collectors' /metrics), after a drain.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.loadgen import GRPCSender
from pipeline.testing import Collector, free_port


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def scrape(collector: Collector) -> dict[str, float]:
    url = f"http://{collector.endpoints['telemetry/http']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name = s.name.removesuffix("_total")
            out[name] = out.get(name, 0.0) + s.value
    return out


def middle_config(persistent: str | None) -> dict[str, Any]:
    queue: dict[str, Any] = {"queue_size": 2000}
    if persistent:
        queue = {"storage": persistent, "sizer": "bytes", "queue_size": 1 << 30}
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "${env:SOAK_GRPC}"}}}},
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_mib": 1024},
            "batch": {},
        },
        "exporters": {
            "otlp_grpc": {
                "endpoint": "${env:SOAK_BACKEND}",
                "tls": {"insecure": True},
                "sending_queue": queue,
                "retry_on_failure": {"initial_interval": "200ms", "max_elapsed_time": 0},
            }
        },
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": ["otlp_grpc"],
                }
            },
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


def backend_config() -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "${env:SOAK_BACKEND}"}}}},
        "exporters": {"debug": {"verbosity": "basic", "summary_interval": "1h"}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


def _received(backend: Collector) -> float:
    return scrape(backend).get("otelcol_receiver_accepted_spans", 0.0)


def measure_max(
    target: str, backend: Collector, threads: int, spans: int, seconds: float = 10.0
) -> float:
    """Spans/s that reach the backend with the sender flat out (what the chain sustains,
    not what the receiver accepts into queues)."""
    sender = GRPCSender(target, spans_per_request=spans, threads=threads, track_ids=False, tag=9)
    sender.start()
    time.sleep(3.0)  # warm-up
    n0, t0 = _received(backend), time.monotonic()
    time.sleep(seconds)
    rate = (_received(backend) - n0) / (time.monotonic() - t0)
    sender.stop()
    return rate


def settle(backend: Collector, timeout: float = 60.0) -> None:
    """Wait until the backend stops receiving (the pipeline is drained)."""
    last, deadline = -1.0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _received(backend)
        if now == last:
            return
        last = now
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n")[0]
    )
    p.add_argument("--rate", type=float, help="spans/s to send (default: --load x --max-rate)")
    p.add_argument(
        "--max-rate", type=float, help="the collector's maximum spans/s (measured if unset)"
    )
    p.add_argument("--load", type=float, default=0.8, help="fraction of --max-rate (default 0.8)")
    p.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between reports")
    p.add_argument("--spans-per-request", type=int, default=100)
    p.add_argument("--threads", type=int, default=2, help="sender threads")
    p.add_argument("--persistent", action="store_true", help="use the on-disk sending queue")
    p.add_argument("--config", help="collector config to soak instead of the built-in one")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    work = tempfile.mkdtemp(prefix="tracesieve-soak-")
    grpc_port, backend_port = free_port(), free_port()
    env = {"SOAK_GRPC": f"127.0.0.1:{grpc_port}", "SOAK_BACKEND": f"127.0.0.1:{backend_port}"}
    if args.config:
        with open(args.config) as fh:
            middle_cfg: Any = fh.read()
    else:
        middle_cfg = yaml.safe_dump(
            middle_config(os.path.join(work, "queue") if args.persistent else None)
        )
    os.makedirs(os.path.join(work, "backend"))
    os.makedirs(os.path.join(work, "middle"))
    backend = Collector(backend_config(), env=env, workdir=os.path.join(work, "backend")).start()
    middle = Collector(middle_cfg, env=env, workdir=os.path.join(work, "middle")).start()
    target = env["SOAK_GRPC"]
    samples: list[dict[str, float]] = []
    try:
        rate = args.rate
        if rate is None:
            max_rate = args.max_rate
            if max_rate is None:
                print("measuring the maximum rate (10 s flat out)...", flush=True)
                max_rate = measure_max(target, backend, args.threads, args.spans_per_request)
                print(f"maximum: {max_rate:,.0f} spans/s reach the backend", flush=True)
                settle(backend)
            rate = args.load * max_rate
        base_client = 0.0
        base = scrape(middle)
        base_backend = scrape(backend)
        print(
            f"soak: {rate:,.0f} spans/s for {args.duration:.0f}s, "
            f"collector pid {middle.proc.pid if middle.proc else '?'}",
            flush=True,
        )
        print(
            f"{'t(s)':>6} {'rss MiB':>8} {'sent':>11} {'accepted':>11} {'exported':>11} "
            f"{'received':>11} {'refused':>8} {'queue':>7}",
            flush=True,
        )
        sender = GRPCSender(
            target,
            spans_per_request=args.spans_per_request,
            threads=args.threads,
            rate=rate,
            track_ids=False,
        ).start()
        t0 = time.monotonic()
        next_report = t0
        assert middle.proc is not None
        while True:
            now = time.monotonic()
            if now >= next_report:
                m, b = scrape(middle), scrape(backend)
                row = {
                    "t": round(now - t0, 1),
                    "rss_mib": round(rss_mib(middle.proc.pid), 1),
                    "sent": sender.stats.spans_attempted,
                    "accepted": sender.stats.accepted_count - base_client,
                    "exported": m.get("otelcol_exporter_sent_spans", 0)
                    - base.get("otelcol_exporter_sent_spans", 0),
                    "received": b.get("otelcol_receiver_accepted_spans", 0)
                    - base_backend.get("otelcol_receiver_accepted_spans", 0),
                    "refused": m.get("otelcol_receiver_refused_spans", 0)
                    - base.get("otelcol_receiver_refused_spans", 0),
                    "queue": m.get("otelcol_exporter_queue_size", 0),
                }
                samples.append(row)
                print(
                    f"{row['t']:>6.0f} {row['rss_mib']:>8.1f} {row['sent']:>11,.0f} "
                    f"{row['accepted']:>11,.0f} {row['exported']:>11,.0f} "
                    f"{row['received']:>11,.0f} {row['refused']:>8,.0f} {row['queue']:>7,.0f}",
                    flush=True,
                )
                next_report += args.interval
            if now - t0 >= args.duration:
                break
            time.sleep(min(0.5, max(0.0, next_report - time.monotonic())))
        stats = sender.stop()
        elapsed = time.monotonic() - t0
        accepted = stats.accepted_count - base_client
        # drain: everything accepted should reach the backend
        deadline = time.monotonic() + 60
        received = 0.0
        while time.monotonic() < deadline:
            received = scrape(backend).get("otelcol_receiver_accepted_spans", 0) - base_backend.get(
                "otelcol_receiver_accepted_spans", 0
            )
            if received >= accepted:
                break
            time.sleep(0.2)
        m = scrape(middle)
        rss = [s["rss_mib"] for s in samples]
        settled = rss[len(rss) // 4 :] or rss
        result = {
            "rate_target": rate,
            "rate_achieved": accepted / elapsed if elapsed else 0.0,
            "duration_s": elapsed,
            "sent": stats.spans_attempted,
            "accepted": accepted,
            "received_by_backend": received,
            "lost": max(0.0, accepted - received),
            "refused_requests": dict(stats.refused),
            "exporter_send_failed": m.get("otelcol_exporter_send_failed_spans", 0),
            "rss_mib_first": rss[0] if rss else None,
            "rss_mib_after_warmup": settled[0] if settled else None,
            "rss_mib_last": rss[-1] if rss else None,
            "rss_mib_max": max(rss) if rss else None,
            "samples": samples,
        }
        print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(result, fh, indent=2)
        return 0 if result["lost"] == 0 else 1
    finally:
        middle.stop()
        backend.stop()


if __name__ == "__main__":
    sys.exit(main())
