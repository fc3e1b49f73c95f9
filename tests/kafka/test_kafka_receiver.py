"""The kafka receiver against the real broker: undecodable messages are skipped (counted,
dead-lettered) without stalling; offsets are committed only for data that was exported.
The collectors run in the test's event loop (no process boundary is under test); the
Kafka clients of the checks run in threads."""

from __future__ import annotations

import asyncio
import os

from pipeline.testing import make_span, make_traces, read_json_lines, spans_in, until
from tests.kafka.helpers import (
    committed,
    create_topic,
    kafka_receiver,
    metric,
    produce,
    read_topics,
    spans_of,
    unique,
    workdir,
)
from tests.kafka_broker import KafkaBroker


def good_message(spans: int = 5) -> tuple[bytes, set[bytes]]:
    tid = os.urandom(16)
    ss = [make_span(f"s{i}", tid, os.urandom(8)) for i in range(spans)]
    return make_traces(ss).to_bytes(), {s.span_id for s in ss}


async def offsets_are(bs: str, group: str, topic: str, partitions: int, want: dict) -> bool:  # type: ignore[type-arg]
    return await asyncio.to_thread(committed, bs, group, topic, partitions) == want


async def test_garbage_is_counted_dead_lettered_and_skipped(
    tmp_path, kafka_broker, service_factory
):
    bs = kafka_broker.bootstrap
    topic, dlq, group = unique("mixed"), unique("dlq"), unique("g")
    await asyncio.to_thread(create_topic, bs, topic, partitions=2)
    good = [good_message() for _ in range(20)]
    truncated = good[0][0][:-7]
    garbage = [
        b"\xff\xff\xff\xff\xff",  # not protobuf
        truncated,  # a good message cut short
        b'{"resourceSpans": "not protobuf"}',  # JSON where protobuf is expected
        b"plain text that protobuf may well parse",  # parses, but holds no resource_spans
    ]
    values, parts = [], []
    for i, (v, _) in enumerate(good):
        values.append(v)
        parts.append(i % 2)
        if i % 5 == 2:
            values.append(garbage[i // 5])
            parts.append(i % 2)
    await asyncio.to_thread(produce, bs, topic, values, parts)
    out = str(tmp_path / "out.jsonl")
    c = await service_factory(
        {
            "receivers": {"kafka": kafka_receiver(bs, topic, group, dead_letter_topic=dlq)},
            "exporters": {"file": {"path": out, "flush_interval": 0}},
            "service": {
                "pipelines": {"traces": {"receivers": ["kafka"], "exporters": ["file"]}},
                "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
            },
        },
        workdir=workdir(tmp_path, "b"),
    )
    expected = set().union(*(ids for _, ids in good))
    assert await until(lambda: len(spans_in(read_json_lines(out))) >= len(expected), within=30)
    assert {s.span_id for s in spans_in(read_json_lines(out))} == expected
    text = c.exposition()
    assert metric(text, "otelcol_kafka_receiver_unmarshal_failed_spans") == len(garbage)
    assert metric(text, "otelcol_kafka_receiver_messages") == len(values)
    assert metric(text, "otelcol_receiver_accepted_spans", receiver="kafka") == len(expected)
    assert "undecodable message" in c.output and f"{topic}/" in c.output
    # the dead-letter topic holds the garbage as it was, with where it came from
    dead = await asyncio.to_thread(read_topics, bs, [dlq], until=len(garbage), timeout=20)
    assert sorted(r.value for r in dead) == sorted(garbage)
    for r in dead:
        headers = dict(r.headers)
        assert headers["tracesieve.source"].startswith(f"{topic}/".encode())
        assert headers["tracesieve.error"]
    # nothing stalls: every partition is committed to its end
    ends = {0: parts.count(0), 1: parts.count(1)}
    assert await until(lambda: offsets_are(bs, group, topic, 2, ends), within=15)


async def test_offsets_wait_for_export(tmp_path, kafka_broker, service_factory):
    """Data held by a batch processor, then by an exporter whose Kafka is down, is not
    committed; once that Kafka is up and has it, the offsets are committed."""
    bs = kafka_broker.bootstrap
    topic, group, out_topic = unique("held"), unique("g"), unique("out")
    await asyncio.to_thread(create_topic, bs, topic, partitions=2)
    msgs = [good_message() for _ in range(10)]
    await asyncio.to_thread(
        produce, bs, topic, [v for v, _ in msgs], [i % 2 for i in range(len(msgs))]
    )
    expected = set().union(*(ids for _, ids in msgs))
    downstream = KafkaBroker()  # not started yet: the exporter's Kafka is down
    b = await service_factory(
        {
            "receivers": {"kafka": kafka_receiver(bs, topic, group)},
            "processors": {"batch": {"timeout": "1s"}},
            "exporters": {
                "kafka": {
                    "brokers": [downstream.bootstrap],
                    "topic": out_topic,
                    "timeout": "1s",
                    "retry_on_failure": {"initial_interval": "100ms", "max_interval": "200ms"},
                }
            },
            "service": {
                "pipelines": {
                    "traces": {
                        "receivers": ["kafka"],
                        "processors": ["batch"],
                        "exporters": ["kafka"],
                    }
                },
                "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
            },
        },
        workdir=workdir(tmp_path, "b"),
    )

    def value(name: str, **labels: str) -> float:
        return metric(b.exposition(), name, **labels)

    # taken by the pipeline, then held by the batch processor ...
    assert await until(lambda: value("otelcol_receiver_accepted_spans") == len(expected), 30)
    assert await offsets_are(bs, group, topic, 2, {0: None, 1: None})
    # ... then by the exporter, which cannot send
    assert await until(lambda: value("otelcol_processor_outgoing_items") == len(expected), 10)
    assert await until(lambda: "cannot connect to Kafka" in b.output, within=10)
    assert await offsets_are(bs, group, topic, 2, {0: None, 1: None})
    assert value("tracesieve_kafka_receiver_committed_offset") == 0
    try:
        await asyncio.to_thread(downstream.start)
        records = await asyncio.to_thread(
            read_topics, downstream.bootstrap, [out_topic], spans=len(expected), timeout=30
        )
        assert {s for r in records for _, s in spans_of(r.value)} == expected
        assert await until(lambda: offsets_are(bs, group, topic, 2, {0: 5, 1: 5}), within=15)
    finally:
        await asyncio.to_thread(downstream.stop)


async def test_refused_data_pauses_the_partition_and_is_offered_again(
    tmp_path, kafka_broker, service_factory
):
    """A full exporter queue refuses; the receiver pauses those partitions, offers the
    same data again with backoff (not in a tight loop), and resumes once it is taken."""
    bs = kafka_broker.bootstrap
    topic, group, out_topic = unique("refuse"), unique("g"), unique("out")
    await asyncio.to_thread(create_topic, bs, topic, partitions=4)
    msgs = [good_message() for _ in range(40)]
    await asyncio.to_thread(
        produce, bs, topic, [v for v, _ in msgs], [i % 4 for i in range(len(msgs))]
    )
    expected = set().union(*(ids for _, ids in msgs))
    downstream = KafkaBroker()
    b = await service_factory(
        {
            "receivers": {
                "kafka": kafka_receiver(
                    bs,
                    topic,
                    group,
                    error_backoff={"initial_interval": "200ms", "max_interval": "1s"},
                )
            },
            "exporters": {
                "kafka": {
                    "brokers": [downstream.bootstrap],
                    "topic": out_topic,
                    "timeout": "1s",
                    "retry_on_failure": {"initial_interval": "100ms", "max_interval": "200ms"},
                    "sending_queue": {"queue_size": 1, "num_consumers": 1},
                }
            },
            "service": {
                "pipelines": {"traces": {"receivers": ["kafka"], "exporters": ["kafka"]}},
                "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
            },
        },
        workdir=workdir(tmp_path, "b"),
    )

    def value(name: str, **labels: str) -> float:
        return metric(b.exposition(), name, **labels)

    assert await until(lambda: value("tracesieve_kafka_receiver_paused_partitions") >= 2, 30)
    assert await until(lambda: value("tracesieve_kafka_receiver_redelivered_spans") > 0, 10)
    # backoff, not a tight loop: over a few seconds, a handful of attempts per partition
    refusals = value("otelcol_receiver_requests", outcome="refused")
    assert await until(lambda: "cannot connect to Kafka" in b.output, within=10)
    assert refusals < 60, refusals
    assert await offsets_are(bs, group, topic, 4, {p: None for p in range(4)})
    try:
        await asyncio.to_thread(downstream.start)
        records = await asyncio.to_thread(
            read_topics, downstream.bootstrap, [out_topic], spans=len(expected), timeout=40
        )
        assert {s for r in records for _, s in spans_of(r.value)} == expected
        assert await until(lambda: value("tracesieve_kafka_receiver_paused_partitions") == 0, 15)
        assert await until(
            lambda: offsets_are(bs, group, topic, 4, {p: 10 for p in range(4)}), within=15
        )
    finally:
        await asyncio.to_thread(downstream.stop)
