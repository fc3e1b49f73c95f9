"""Health, as Kubernetes probes and gRPC clients see it: the health_check extension
answers 200 while running and 503 while draining; the OTLP gRPC port serves the
standard gRPC health service."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pipeline.testing import OTLPServer, export_grpc, sample_request, wait_for


def health(endpoint: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://{endpoint}/", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def grpc_health(endpoint: str, service: str = "") -> int:
    with grpc.insecure_channel(endpoint) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def test_health_ready_then_draining(collector_factory):
    with OTLPServer() as down:
        down.hold()
        c = collector_factory(
            {
                "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
                "exporters": {"otlp_grpc": {"endpoint": down.endpoint, "tls": {"insecure": True}}},
                "extensions": {"health_check": {"endpoint": "127.0.0.1:0"}},
                "service": {
                    "extensions": ["health_check"],
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp_grpc"]}},
                    "telemetry": {"metrics": {"level": "none"}},
                },
            }
        )
        hc = c.endpoints["extensions::health_check/http"]
        grpc_ep = c.endpoints["receivers::otlp/grpc"]
        status, body = health(hc)
        assert status == 200 and body["status"] == "Server available"
        serving = health_pb2.HealthCheckResponse.SERVING
        assert grpc_health(grpc_ep) == serving
        svc = "opentelemetry.proto.collector.trace.v1.TraceService"
        assert grpc_health(grpc_ep, svc) == serving

        export_grpc(grpc_ep, sample_request(1, 5))  # queued; the downstream holds it
        assert wait_for(lambda: down.calls >= 1)
        c.signal(signal.SIGTERM)
        # draining: not ready, while the queued spans are still on their way
        assert wait_for(lambda: health(hc)[0] == 503)
        assert health(hc)[1]["status"] == "Server not available"
        assert down.span_count == 0
        down.release()
        assert c.stop() == 0
        assert down.span_count == 5
