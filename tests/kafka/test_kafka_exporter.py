"""The kafka exporter's options against the real broker: every compression codec, the
JSON encoding (read back by the kafka receiver), routing traces to topics by attribute."""

from __future__ import annotations

import asyncio
import os

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import otlpjson
from pipeline.testing import kv, make_span, read_json_lines, spans_in, until
from tests.kafka.helpers import otlp_send, read_topics, spans_of, unique, workdir

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def trace(cls: str | None, *, root: bool = True, on_resource: str | None = None, n: int = 3):
    """A request with one trace of `n` spans; `cls` on the root span (or, without a root,
    on every span), `on_resource` as a resource attribute."""
    tid = os.urandom(16)
    root_id = os.urandom(8)
    attrs = {"sieve.trace.class": cls} if cls is not None else {}
    spans = []
    if root:
        spans.append(make_span("task", tid, root_id, attributes=attrs))
    for _ in range(n - len(spans)):
        spans.append(
            make_span("step", tid, os.urandom(8), root_id, attributes=None if root else attrs)
        )
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "agent"))
    if on_resource is not None:
        rs.resource.attributes.append(kv("sieve.trace.class", on_resource))
    ss = rs.scope_spans.add()
    ss.scope.name = "test"
    ss.spans.extend(spans)
    return tid, {s.span_id for s in spans}, req


async def test_codecs_json_and_routing(tmp_path, kafka_broker, service_factory):
    bs = kafka_broker.bootstrap
    run = unique("x")
    exporters: dict[str, dict] = {
        f"kafka/{c}": {
            "brokers": [bs],
            "topic": f"{run}-{c}",
            "producer": {"compression": c},
            "partition_traces_by_id": c == "zstd",
        }
        for c in CODECS
    }
    exporters["kafka/json"] = {
        "brokers": [bs],
        "traces": {"topic": f"{run}-json", "encoding": "otlp_json"},
        "partition_traces_by_id": True,
    }
    exporters["kafka/routed"] = {
        "brokers": [bs],
        "topic": f"{run}-unclassified",
        "topic_from_attribute": "sieve.trace.class",
        "topic_prefix": f"{run}-agent-traces.",
    }
    a = await service_factory(
        {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
            "exporters": exporters,
            "service": {
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": list(exporters)}},
                "telemetry": {"metrics": {"level": "none"}},
            },
        },
        workdir=workdir(tmp_path, "a"),
    )
    cases = {
        "clean": trace("clean"),
        "noisy": trace("noisy"),
        "failed-rootless": trace("failed", root=False),  # no root: the first span decides
        "resource": trace(None, on_resource="corrupted"),  # only the resource has it
        "none": trace(None),
        "invalid": trace("no spaces allowed"),  # not a topic name: the default topic
    }
    # one request holding every trace: the routed exporter splits it by topic
    req = ExportTraceServiceRequest()
    for _, _, r in cases.values():
        req.MergeFrom(r)
    everything = {s for _, ids, _ in cases.values() for s in ids}
    endpoint = a.endpoints["receivers::otlp/grpc"]
    assert (
        await asyncio.to_thread(otlp_send, endpoint, req.SerializeToString()) == grpc.StatusCode.OK
    )

    # every codec: every span, readable with opentelemetry-proto alone
    topics = [f"{run}-{c}" for c in CODECS]
    records = await asyncio.to_thread(read_topics, bs, topics, until=len(CODECS) + 5, timeout=20)
    for t in topics:
        got = [s for r in records if r.topic == t for _, s in spans_of(r.value)]
        assert sorted(got) == sorted(everything), t
    keyed = [r for r in records if r.topic == f"{run}-zstd"]
    assert len(keyed) == len(cases) and all(r.key for r in keyed)

    # otlp_json: one message per trace, keyed, OTLP JSON (hex ids)
    json_records = await asyncio.to_thread(
        read_topics, bs, [f"{run}-json"], until=len(cases), timeout=20
    )
    assert len(json_records) == len(cases)
    for r in json_records:
        assert r.value.startswith(b"{")
        decoded = otlpjson.decode(r.value)
        tids = {s.trace_id for s in spans_in([decoded])}
        assert tids == {bytes.fromhex(r.key.decode())}

    # routing: root span, else first span, else resource; else the default topic
    expect = {
        f"{run}-agent-traces.clean": cases["clean"][1],
        f"{run}-agent-traces.noisy": cases["noisy"][1],
        f"{run}-agent-traces.failed": cases["failed-rootless"][1],
        f"{run}-agent-traces.corrupted": cases["resource"][1],
        f"{run}-unclassified": cases["none"][1] | cases["invalid"][1],
    }
    routed = await asyncio.to_thread(read_topics, bs, list(expect), until=len(expect), timeout=20)
    for t, ids in expect.items():
        got = {s for r in routed if r.topic == t for _, s in spans_of(r.value)}
        assert got == ids, t

    # the kafka receiver reads the JSON topic back
    out = str(tmp_path / "json.jsonl")
    await service_factory(
        {
            "receivers": {
                "kafka": {
                    "brokers": [bs],
                    "traces": {"topics": [f"{run}-json"], "encoding": "otlp_json"},
                    "group_id": unique("g"),
                    "initial_offset": "earliest",
                }
            },
            "exporters": {"file": {"path": out, "flush_interval": 0}},
            "service": {
                "pipelines": {"traces": {"receivers": ["kafka"], "exporters": ["file"]}},
                "telemetry": {"metrics": {"level": "none"}},
            },
        },
        workdir=workdir(tmp_path, "b"),
    )
    assert await until(lambda: len(spans_in(read_json_lines(out))) >= len(everything), within=30)
    assert {s.span_id for s in spans_in(read_json_lines(out))} == everything
