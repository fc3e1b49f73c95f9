"""OTel SDK -> collector A (otlp -> kafka) -> Tansu -> collector B (kafka -> file), all real
(the collectors in the test's event loop: no process boundary is under test here)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from pipeline.testing import read_json_lines, spans_in, until, wait_for
from tests.kafka.helpers import (
    create_topic,
    metric,
    read_topics,
    spans_of,
    unique,
    workdir,
)
from tests.kafka_broker import KafkaBroker

MAX_BYTES = 20_000


def exporter_config(bootstrap: str, topic: str, **extra: object) -> dict:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {"batch": {"timeout": "50ms"}},
        "exporters": {
            "kafka": {
                "brokers": [bootstrap],
                "topic": topic,
                "partition_traces_by_id": True,
                "producer": {"max_message_bytes": MAX_BYTES, "compression": "zstd"},
                "retry_on_failure": {"initial_interval": "100ms"},
                **extra,
            }
        },
        "service": {
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["kafka"]}
            },
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


def receiver_config(bootstrap: str, topic: str, group: str, out: str, **extra: object) -> dict:
    return {
        "receivers": {
            "kafka": {
                "brokers": [bootstrap],
                "topics": [topic],
                "group_id": group,
                "initial_offset": "earliest",
                "session_timeout": "3s",
                "heartbeat_interval": "500ms",
                **extra,
            }
        },
        "exporters": {"file": {"path": out, "flush_interval": 0}},
        "service": {
            "pipelines": {"traces": {"receivers": ["kafka"], "exporters": ["file"]}},
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


def send_traces(endpoint: str, traces: int, spans: int, big: dict[int, int]) -> set[bytes]:
    """Traces through the OTel SDK; `big` maps span index -> attribute size. Returns the
    span ids sent."""
    provider = TracerProvider(resource=Resource.create({"service.name": "kafka-e2e"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, insecure=True), schedule_delay_millis=50
        )
    )
    tracer = provider.get_tracer("e2e")
    sent: set[bytes] = set()
    n = 0
    for _ in range(traces):
        with tracer.start_as_current_span("root") as root:
            sent.add(root.get_span_context().span_id.to_bytes(8, "big"))
            for _ in range(spans - 1):
                size = big.get(n, 0)
                n += 1
                with tracer.start_as_current_span(
                    "child", attributes={"payload": "x" * size} if size else None
                ) as child:
                    sent.add(child.get_span_context().span_id.to_bytes(8, "big"))
    provider.shutdown()
    return sent


async def test_sdk_to_kafka_to_collector(tmp_path, kafka_broker, service_factory):
    bs = kafka_broker.bootstrap
    topic, group = unique("e2e"), unique("g")
    await asyncio.to_thread(create_topic, bs, topic, partitions=4)
    out = str(tmp_path / "b.jsonl")
    a = await service_factory(exporter_config(bs, topic), workdir=workdir(tmp_path, "a"))
    b = await service_factory(
        receiver_config(bs, topic, group, out), workdir=workdir(tmp_path, "b")
    )
    # 40 traces of 6 spans; some spans of 8 KB (traces split over several messages) and
    # one of 30 KB, which cannot fit in any message of MAX_BYTES
    big = {i: 8000 for i in range(50)}  # the first 10 traces: 5 x 8 KB each
    big[11] = 30_000
    sent = await asyncio.to_thread(send_traces, a.endpoints["receivers::otlp/grpc"], 40, 6, big)
    assert len(sent) == 240
    expected = len(sent) - 1

    def got() -> list:
        return spans_in(read_json_lines(out))

    assert await until(lambda: len(got()) >= expected, within=40), (len(got()), b.output[-3000:])
    received = Counter(s.span_id for s in got())
    assert len(received) == expected and set(received) <= sent
    assert max(received.values()) == 1, "a span arrived twice"
    metrics_a = a.exposition()
    assert metric(metrics_a, "tracesieve_kafka_exporter_oversized_spans") == 1
    assert metric(metrics_a, "otelcol_exporter_send_failed_spans") == 1
    assert metric(metrics_a, "otelcol_exporter_sent_spans") == expected

    # what the OTel Collector's kafka receiver would read: every message is one
    # ExportTraceServiceRequest, keyed by its trace id, within max_message_bytes
    records = await asyncio.to_thread(read_topics, bs, [topic], spans=expected, timeout=20)
    seen: Counter[bytes] = Counter()
    keys_per_partition: dict[bytes, set[int]] = {}
    for r in records:
        spans = spans_of(r.value)
        assert spans, "empty message"
        trace_ids = {t for t, _ in spans}
        assert len(trace_ids) == 1, "a message holds spans of several traces"
        (tid,) = trace_ids
        assert r.key == tid.hex().encode()
        assert r.size <= MAX_BYTES
        keys_per_partition.setdefault(r.key, set()).add(r.partition)
        seen.update(s for _, s in spans)
    assert set(seen) == set(received) and max(seen.values()) == 1
    assert all(len(p) == 1 for p in keys_per_partition.values()), "a trace on two partitions"
    assert len({p for ps in keys_per_partition.values() for p in ps}) > 1
    assert len(records) > 40, "big traces were not split"
    assert os.path.exists(out)


def test_both_ends_start_before_the_broker_and_connect_once_it_is_up(tmp_path, collector_factory):
    """The exporter and the receiver share one connect/retry loop (`kafkaclient.connect`):
    each collector runs while Kafka cannot be reached, says so (rate-limited), and
    connects once the broker is up."""
    broker = KafkaBroker()  # its port chosen, nothing listening there yet
    try:
        bs = broker.bootstrap
        topic, group = unique("late-broker"), unique("g")
        out = str(tmp_path / "b.jsonl")
        a = collector_factory(exporter_config(bs, topic), workdir=workdir(tmp_path, "a"))
        b = collector_factory(
            receiver_config(bs, topic, group, out), workdir=workdir(tmp_path, "b")
        )
        for c in (a, b):
            assert wait_for(lambda c=c: f"cannot connect to Kafka {bs}" in c.output)
        broker.start()
        create_topic(bs, topic, partitions=2)
        sent = send_traces(a.endpoints["receivers::otlp/grpc"], 5, 3, {})
        assert wait_for(lambda: {s.span_id for s in spans_in(read_json_lines(out))} == sent)
        assert f"connected to Kafka {bs}" in a.output
        assert f"from Kafka {bs} as group {group}" in b.output
    finally:
        broker.stop()
