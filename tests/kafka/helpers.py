"""Helpers for Kafka tests: topics, an independent consumer, metrics scraping."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def kafka_receiver(bs: str, topic: str, group: str, **extra: object) -> dict[str, object]:
    """A kafka receiver's config reading `topic` from the start, quick to join its group
    and to commit; `extra` adds or overrides settings."""
    return {
        "brokers": [bs],
        "topics": [topic],
        "group_id": group,
        "initial_offset": "earliest",
        "session_timeout": "3s",
        "heartbeat_interval": "500ms",
        "autocommit": {"interval": "200ms"},
        **extra,
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, name: str, partitions: int = 4) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()

    asyncio.run(run())


def produce(
    bootstrap: str, topic: str, values: list[bytes], partitions: list[int] | None = None
) -> None:
    """Write messages (to the given partitions, else as the default partitioner does)."""

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 << 20)
        await p.start()
        try:
            futs = [
                await p.send(topic, v, partition=(partitions[i] if partitions else None))
                for i, v in enumerate(values)
            ]
            await asyncio.gather(*futs)
        finally:
            await p.stop()

    asyncio.run(run())


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    size: int  # the record's serialized size as the broker stores it (approx. per aiokafka)


def read_topics(
    bootstrap: str,
    topics: list[str],
    until: int = 1 << 30,
    timeout: float = 30.0,
    spans: int | None = None,
) -> list[Record]:
    """Everything on the topics from the beginning, without a group, until `until`
    records (or records holding `spans` spans) have been read, or `timeout`."""

    async def run() -> list[Record]:
        c = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await c.start()
        out: list[Record] = []
        try:
            end = time.monotonic() + timeout
            seen = 0
            while len(out) < until and time.monotonic() < end:
                if spans is not None and seen >= spans:
                    break
                batch = await c.getmany(timeout_ms=200)
                for msgs in batch.values():
                    for m in msgs:
                        if spans is not None:
                            seen += len(spans_of(m.value))
                        out.append(
                            Record(
                                m.topic,
                                m.partition,
                                m.offset,
                                m.key,
                                m.value,
                                list(m.headers),
                                max(0, m.serialized_key_size) + max(0, m.serialized_value_size),
                            )
                        )
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    """The group's committed offsets, asked of the broker by a client outside the group."""

    async def run() -> dict[int, int | None]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            return {p: await c.committed(TopicPartition(topic, p)) for p in range(partitions)}
        finally:
            await c.stop()

    return asyncio.run(run())


def spans_of(value: bytes) -> list[tuple[bytes, bytes]]:
    """(trace id, span id) of every span in a message, decoded with opentelemetry-proto."""
    req = ExportTraceServiceRequest.FromString(value)
    return [
        (s.trace_id, s.span_id)
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) not in (name, f"{name}_total"):
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def workdir(base: object, name: str) -> str:
    """A fresh directory for one collector (its config and files)."""
    import os

    path = os.path.join(str(base), name)
    os.makedirs(path, exist_ok=True)
    return path


EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def otlp_send(endpoint: str, payload: bytes, timeout: float = 10.0) -> object:
    """One OTLP/gRPC Export call; the status code (grpc.StatusCode.OK on success)."""
    import grpc

    with grpc.insecure_channel(endpoint) as ch:
        call = ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        try:
            call(payload, timeout=timeout)
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK
