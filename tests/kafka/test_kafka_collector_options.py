"""The kafka components' Collector options against the real broker, through the CLI:
headers from client metadata and static `record_headers`, the topic from a metadata
key, `record_partitioner`, and the receiver's `traces.topic` (singular) with
`header_extraction`."""

from __future__ import annotations

import asyncio
import os

from aiokafka import AIOKafkaProducer

from pipeline.testing import (
    attrs,
    export_grpc,
    make_span,
    make_traces,
    read_json_lines,
    spans_in,
    wait_for,
)
from tests.kafka.helpers import create_topic, read_topics, spans_of, unique, workdir


def test_headers_topic_from_metadata_and_round_robin(tmp_path, kafka_broker, collector_factory):
    bs = kafka_broker.bootstrap
    run = unique("meta")
    tenant_topic = f"{run}-acme"
    fallback = f"{run}-fallback"
    create_topic(bs, tenant_topic, partitions=3)
    create_topic(bs, fallback, partitions=1)
    c = collector_factory(
        {
            "receivers": {
                "otlp": {
                    "protocols": {"grpc": {"endpoint": "127.0.0.1:0", "include_metadata": True}}
                }
            },
            "exporters": {
                "kafka": {
                    "brokers": [bs],
                    "include_metadata_keys": ["x-tenant"],
                    "record_headers": {"x-source": "sieve"},
                    "traces": {"topic": fallback, "topic_from_metadata_key": "x-tenant"},
                    "record_partitioner": {"round_robin": {}},
                    "sending_queue": {"enabled": False},
                }
            },
            "service": {
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["kafka"]}},
                "telemetry": {"metrics": {"level": "none"}},
            },
        },
        workdir=workdir(tmp_path, "c"),
    )
    ep = c.endpoints["receivers::otlp/grpc"]
    for i in range(6):
        batch = make_traces([make_span(f"acme-{i}", os.urandom(16), os.urandom(8))])
        export_grpc(ep, batch.to_bytes(), metadata=(("x-tenant", tenant_topic),))
    export_grpc(ep, make_traces([make_span("nobody", os.urandom(16), os.urandom(8))]).to_bytes())
    acme = read_topics(bs, [tenant_topic], until=6)
    assert len(acme) == 6
    for r in acme:
        assert dict(r.headers) == {"x-source": b"sieve", "x-tenant": tenant_topic.encode()}
        assert r.key is None
    assert {r.partition for r in acme} == {0, 1, 2}  # round robin over the partitions
    (other,) = read_topics(bs, [fallback], until=1)
    assert dict(other.headers) == {"x-source": b"sieve"}  # no metadata: no header
    assert len(spans_of(other.value)) == 1


def test_receiver_singular_topic_and_header_extraction(tmp_path, kafka_broker, collector_factory):
    bs = kafka_broker.bootstrap
    topic = unique("hx")
    create_topic(bs, topic, partitions=1)
    out = str(tmp_path / "spans.jsonl")
    collector_factory(
        {
            "receivers": {
                "kafka": {
                    "brokers": [bs],
                    "group_id": unique("g"),
                    "initial_offset": "earliest",
                    "group_rebalance_strategy": "range",
                    "traces": {"topic": topic},
                    "header_extraction": {"extract_headers": True, "headers": ["x-tenant"]},
                }
            },
            "exporters": {"file": {"path": out, "flush_interval": 0}},
            "service": {
                "pipelines": {"traces": {"receivers": ["kafka"], "exporters": ["file"]}},
                "telemetry": {"metrics": {"level": "none"}},
            },
        },
        workdir=workdir(tmp_path, "c"),
    )

    async def produce() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bs)
        await p.start()
        try:
            for tenant in ("acme", None):
                value = make_traces([make_span(f"from-{tenant}", os.urandom(16), os.urandom(8))])
                headers = [("x-tenant", tenant.encode()), ("x-other", b"no")] if tenant else []
                await (await p.send(topic, value.to_bytes(), headers=headers))
        finally:
            await p.stop()

    asyncio.run(produce())
    assert wait_for(lambda: os.path.exists(out) and len(spans_in(read_json_lines(out))) == 2)
    for batch in read_json_lines(out):
        for rs in batch.resource_spans:
            res = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    if s.name == "from-acme":
                        assert res["kafka.header.x-tenant"] == "acme"
                        assert "kafka.header.x-other" not in res  # only the headers named
                    else:
                        assert not any(k.startswith("kafka.header.") for k in res)
                    assert "x-tenant" not in attrs(s)
