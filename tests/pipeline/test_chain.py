"""Two collectors chained, each started through the CLI: A receives OTLP, batches and
exports to B's OTLP receiver; B writes a file. Nothing is lost or altered on the way."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.testing import (
    export_grpc,
    export_http,
    read_json_lines,
    sample_request,
    span_index,
    spans_in,
    wait_for,
)


def downstream(out: str) -> dict[str, Any]:
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0"},
                    "http": {"endpoint": "127.0.0.1:0"},
                }
            }
        },
        "exporters": {"file": {"path": out, "flush_interval": 0}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
            "telemetry": {"metrics": {"level": "none"}},
        },
    }


def edge(exporter: dict[str, Any]) -> dict[str, Any]:
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0"},
                    "http": {"endpoint": "127.0.0.1:0"},
                }
            }
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_mib": 4000},
            "batch": {"timeout": "50ms", "send_batch_size": 64, "send_batch_max_size": 100},
        },
        "exporters": exporter,
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": list(exporter),
                }
            },
            "telemetry": {"metrics": {"level": "none"}},
        },
    }


@pytest.mark.parametrize(
    "variant", ["otlp_grpc", "otlp_grpc-none", "otlp_http-proto", "otlp_http-json"]
)
def test_two_collectors_chained(tmp_path, collector_factory, variant):
    out = str(tmp_path / "b.jsonl")
    b = collector_factory(downstream(out))
    kind, _, opt = variant.partition("-")
    if kind == "otlp_grpc":
        exporter = {
            "otlp_grpc/b": {
                "endpoint": b.endpoints["receivers::otlp/grpc"],
                "tls": {"insecure": True},
                "compression": opt or "gzip",
            }
        }
    else:
        exporter = {
            "otlp_http/b": {
                "endpoint": f"http://{b.endpoints['receivers::otlp/http']}",
                "encoding": opt,
            }
        }
    a = collector_factory(edge(exporter))
    sent = [sample_request(seed, n_spans=37, services=3) for seed in range(12)]
    for i, req in enumerate(sent):
        if i % 2:
            export_grpc(a.endpoints["receivers::otlp/grpc"], req)
        else:
            status, _, body = export_http(
                a.endpoints["receivers::otlp/http"], req.SerializeToString()
            )
            assert status == 200, body
    total = sum(len(spans_in([r])) for r in sent)
    assert wait_for(lambda: len(spans_in(read_json_lines(out))) >= total)
    assert a.stop() == 0 and b.stop() == 0
    got = read_json_lines(out)
    assert span_index(got) == span_index(sent)  # span by span, with resource and scope
    # batch capped the size of what went between the two
    assert max(len(spans_in([r])) for r in got) <= 100
