"""Shared pieces of the fault tests: two-collector setups (a tracesieve in the middle, a
second tracesieve as the backend writing what it gets to a file) and /metrics scraping."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.loadgen import read_proto_file, span_ids


def backend_config(port: int, out: str, http_port: int | None = None) -> dict[str, Any]:
    """The far end: OTLP/gRPC (and OTLP/HTTP) in on fixed ports (it is restarted), spans
    to a file."""
    protocols: dict[str, Any] = {"grpc": {"endpoint": f"127.0.0.1:{port}"}}
    if http_port is not None:
        protocols["http"] = {"endpoint": f"127.0.0.1:{http_port}"}
    return {
        "receivers": {"otlp": {"protocols": protocols}},
        "exporters": {"file": {"path": out, "format": "proto", "flush_interval": 0}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
            "telemetry": {"metrics": {"level": "none"}},
            "shutdown_timeout": "10s",
        },
    }


def middle_config(
    grpc_port: int,
    backend_port: int,
    *,
    queue: dict[str, Any] | None = None,
    http: bool = False,
    processors: list[str] | None = None,
    exporter: str = "otlp_grpc",
    retry: tuple[str, str] = ("100ms", "500ms"),
) -> dict[str, Any]:
    """The collector under test: OTLP in, `exporter` (otlp_grpc, or otlp_http with
    `backend_port` the backend's HTTP port) out to the backend, retrying fast and forever
    (`retry`: initial and maximum interval), /metrics on a free port."""
    protocols: dict[str, Any] = {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}
    if http:
        protocols["http"] = {"endpoint": "127.0.0.1:0"}
    common: dict[str, Any] = {
        "timeout": "2s",
        "retry_on_failure": {
            "initial_interval": retry[0],
            "max_interval": retry[1],
            "max_elapsed_time": 0,
        },
        "sending_queue": queue or {},
    }
    if exporter == "otlp_http":
        common["endpoint"] = f"http://127.0.0.1:{backend_port}"
    else:
        common["endpoint"] = f"127.0.0.1:{backend_port}"
        common["tls"] = {"insecure": True}
    return {
        "receivers": {"otlp": {"protocols": protocols}},
        "processors": {"batch": {"timeout": "20ms", "send_batch_size": 512}},
        "exporters": {exporter: common},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": processors or [],
                    "exporters": [exporter],
                }
            },
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
            "shutdown_timeout": "20s",
        },
    }


def metrics(collector: Any) -> dict[str, float]:
    """Every sample on the collector's /metrics, keyed `name{label="v",...}`."""
    url = f"http://{collector.endpoints['telemetry/http']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def metric_sum(values: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for key, v in values.items():
        if key.split("{", 1)[0] not in (name, f"{name}_total"):
            continue
        if all(f'{k}="{val}"' in key for k, val in labels.items()):
            total += v
    return total


def received(path: str) -> Any:
    return span_ids(read_proto_file(path))
