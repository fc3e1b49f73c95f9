"""The two-tier topology with the shipped configs, every part real: the OTel SDK's gRPC
exporter sends labelled agent traces (benchmarks/generator.py) from two services to two
sidecars (configs/sidecar.yaml, through the CLI), they publish to Tansu keyed by trace id,
and gateways (configs/gateway.yaml plus a second --config that adds a `file` exporter)
consume the topic as one consumer group.

What test_kafka_e2e.py already covers (message format, keys, size limit) is not repeated;
these check what the topology promises: traces whose spans come through two sidecars are
whole at one gateway, enriched, classified, sampled by class and land exactly once, each on
the topic of its class; with two gateways the group splits the work by trace, never a trace
between them; a gateway killed while it holds traces loses none of them."""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from benchmarks.generator import FaultRates, GeneratedTrace, Generator, write_tool_schemas
from pipeline.pdata import Traces
from pipeline.testing import attrs, read_json_lines, spans_in, wait_for
from processors.tail_sampling import TraceHash, threshold
from tests.kafka.helpers import create_topic, metric, read_topics, scrape, spans_of, unique
from tests.processors.genai.test_generator_truth import check

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
REDACTED = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")
LOCAL = {  # every listener on a free port
    "TRACESIEVE_GRPC_ENDPOINT": "127.0.0.1:0",
    "TRACESIEVE_HTTP_ENDPOINT": "127.0.0.1:0",
    "TRACESIEVE_METRICS_ENDPOINT": "127.0.0.1:0",
    "TRACESIEVE_HEALTH_ENDPOINT": "127.0.0.1:0",
}

GROUP_TIMING = {"session_timeout": "3s", "heartbeat_interval": "500ms"}
"""A gateway killed is noticed when its session expires, and a rebalance waits for every
member's next heartbeat: the shipped 10 s / 3 s made the tests wait on the clock."""


# -- the apps: generator traces, sent by the OTel SDK from two services -------------------

_KINDS = {
    Span.SPAN_KIND_INTERNAL: SpanKind.INTERNAL,
    Span.SPAN_KIND_SERVER: SpanKind.SERVER,
    Span.SPAN_KIND_CLIENT: SpanKind.CLIENT,
    Span.SPAN_KIND_PRODUCER: SpanKind.PRODUCER,
    Span.SPAN_KIND_CONSUMER: SpanKind.CONSUMER,
}


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    return getattr(v, which)


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _context(trace_id: bytes, span_id: bytes) -> SpanContext:
    return SpanContext(
        int.from_bytes(trace_id, "big"),
        int.from_bytes(span_id, "big"),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def sdk_spans(trace: GeneratedTrace) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    """The trace as the SDK's spans of two services, in the order they end: the worker
    step's subtree (the root's second child) is the `agent-worker` service behind sidecar
    B; the root, the planner steps and the rest are `agent-app` behind sidecar A."""
    spans: list[tuple[Any, Any, Span]] = [
        (rs.resource, ss.scope, s)
        for rs in trace.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    children: dict[bytes, list[Span]] = defaultdict(list)
    for _, _, s in spans:
        children[s.parent_span_id].append(s)
    (root,) = children[b""]
    steps = sorted(children[root.span_id], key=lambda s: s.start_time_unix_nano)
    worker: set[bytes] = set()
    todo = [steps[1].span_id]
    while todo:
        sid = todo.pop()
        worker.add(sid)
        todo.extend(c.span_id for c in children[sid])
    a: list[ReadableSpan] = []
    b: list[ReadableSpan] = []
    for resource, scope, s in sorted(spans, key=lambda x: x[2].end_time_unix_nano):
        res = _attributes(resource.attributes)
        if s.span_id in worker and res.get("service.name") == "agent-app":
            res["service.name"] = "agent-worker"
        status = Status(StatusCode.UNSET)
        if s.status.code == 2:
            status = Status(StatusCode.ERROR, s.status.message)
        elif s.status.code == 1:
            status = Status(StatusCode.OK)
        span = ReadableSpan(
            name=s.name,
            context=_context(s.trace_id, s.span_id),
            parent=_context(s.trace_id, s.parent_span_id) if s.parent_span_id else None,
            resource=Resource(res),
            attributes=_attributes(s.attributes),
            events=[Event(e.name, _attributes(e.attributes), e.time_unix_nano) for e in s.events],
            kind=_KINDS[s.kind],
            status=status,
            start_time=s.start_time_unix_nano,
            end_time=s.end_time_unix_nano,
            instrumentation_scope=InstrumentationScope(scope.name),
        )
        (b if s.span_id in worker else a).append(span)
    return a, b


def send(traces: list[GeneratedTrace], endpoint_a: str, endpoint_b: str) -> tuple[int, int]:
    """Each service's spans through its own SDK BatchSpanProcessor and OTLP/gRPC exporter,
    as the apps would; the spans each sidecar was sent."""
    sdk = [
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=ep, insecure=True),
            schedule_delay_millis=100,
            max_export_batch_size=256,
        )
        for ep in (endpoint_a, endpoint_b)
    ]
    counts = [0, 0]
    for t in traces:
        for i, spans in enumerate(sdk_spans(t)):
            for s in spans:
                sdk[i].on_end(s)
            counts[i] += len(spans)
    for p in sdk:
        assert p.force_flush(30_000)
        p.shutdown()
    return counts[0], counts[1]


def labelled_traces(n: int, seed: int) -> list[GeneratedTrace]:
    # every fault but `slow`: the timing median of a task class needs 20 traces first
    # (per gateway), more than a test sends
    g = Generator(seed, rates=FaultRates.parse("all=0.1,slow=0"), warmup=0)
    return list(g.traces(n))


# -- the tiers, from the shipped configs ------------------------------------------------


def sidecar(collector_factory: Any, bs: str, topic: str, name: str, tmp: Path) -> Any:
    return collector_factory(
        (ROOT / "configs/sidecar.yaml").read_text(),
        env={**LOCAL, "TRACESIEVE_KAFKA_BROKERS": bs, "TRACESIEVE_SPANS_TOPIC": topic},
        workdir=str(tmp / name),
    )


def gateway(
    collector_factory: Any,
    bs: str,
    topic: str,
    group: str,
    prefix: str,
    out: str,
    tmp: Path,
    keep_noisy: str | None = None,
) -> Any:
    """configs/gateway.yaml as shipped, plus a second config file that adds a `file`
    exporter beside the per-class topics and the generator's tool schemas, and a shorter
    consumer-group timing (GROUP_TIMING) than the shipped 10 s session."""
    name = Path(out).stem
    os.makedirs(tmp / name, exist_ok=True)
    schemas = tmp / "tool-schemas"
    if not schemas.exists():
        write_tool_schemas(str(schemas))
    overlay = tmp / name / "with-file.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "receivers": {"kafka": GROUP_TIMING},
                "processors": {"cleanliness": {"tool_schemas": str(schemas)}},
                "exporters": {"file": {"path": out, "flush_interval": "0s"}},
                "service": {"pipelines": {"traces": {"exporters": ["kafka/by_class", "file"]}}},
            }
        )
    )
    env = {
        **LOCAL,
        "TRACESIEVE_KAFKA_BROKERS": bs,
        "TRACESIEVE_SPANS_TOPIC": topic,
        "TRACESIEVE_GATEWAY_GROUP": group,
        "TRACESIEVE_TRACES_TOPIC_PREFIX": prefix,
    }
    if keep_noisy is not None:
        env["TRACESIEVE_KEEP_NOISY"] = keep_noisy
    return collector_factory(
        (ROOT / "configs/gateway.yaml").read_text(),
        env=env,
        extra_args=["--config", str(overlay)],
        workdir=str(tmp / name),
    )


def check_classes(spans: list[Span], truths: list[dict[str, Any]]) -> Counter[str]:
    """Every trace's root span carries the class and reasons its ground truth gives."""
    roots = {s.trace_id.hex(): attrs(s) for s in spans if not s.parent_span_id}
    classes: Counter[str] = Counter()
    for t in truths:
        a = roots[t["trace_id"]]
        where = f"{t['convention']}/{t['stack']} faults={t['faults']}"
        assert a.get("sieve.trace.class") == t["expected"]["class"], where
        assert sorted(a.get("sieve.trace.reasons") or []) == sorted(t["expected"]["reasons"])
        classes[t["expected"]["class"]] += 1
    return classes


def exported(out: str) -> list[Span]:
    return spans_in(read_json_lines(out))


def as_traces(spans_from: list[str]) -> Traces:
    req = ExportTraceServiceRequest()
    for out in spans_from:
        for r in read_json_lines(out):
            req.resource_spans.extend(r.resource_spans)
    return Traces(req)


def decisions(c: Any) -> float:
    return metric(scrape(c.endpoints["telemetry/http"]), "tracesieve_tail_sampling_decisions_total")


def owned(c: Any) -> float:
    text = scrape(c.endpoints["telemetry/http"])
    return metric(text, "otelcol_kafka_receiver_partition_start") - metric(
        text, "otelcol_kafka_receiver_partition_close"
    )


# -- tests ---------------------------------------------------------------------------------


def test_two_sidecars_to_one_gateway(tmp_path, kafka_broker, collector_factory):
    bs = kafka_broker.bootstrap
    topic, group, prefix = unique("spans"), unique("gw"), unique("traces") + "."
    create_topic(bs, topic, partitions=PARTITIONS)
    out = str(tmp_path / "gateway.jsonl")
    gw = gateway(collector_factory, bs, topic, group, prefix, out, tmp_path)  # noisy: 25%
    side_a = sidecar(collector_factory, bs, topic, "sidecar-a", tmp_path)
    side_b = sidecar(collector_factory, bs, topic, "sidecar-b", tmp_path)

    traces = labelled_traces(40, seed=5)
    n_a, n_b = send(
        traces, side_a.endpoints["receivers::otlp/grpc"], side_b.endpoints["receivers::otlp/grpc"]
    )
    assert n_a + n_b == sum(t.span_count for t in traces) and n_a > 0 and n_b > 0
    assert side_a.stop() == 0 and side_b.stop() == 0  # a clean stop delivers to Kafka

    # what the cleanliness policy keeps: every trace but 75% of the noisy ones, chosen by
    # the trace id hash (the same at every gateway)
    sampled = TraceHash("")
    kept = [
        t
        for t in traces
        if t.truth["expected"]["class"] != "noisy" or sampled.sampled(t.trace_id, threshold(25))
    ]
    dropped = [t for t in traces if t not in kept]
    assert kept and dropped, "the sample should keep some noisy traces and drop others"
    sent = {bytes.fromhex(c) for t in kept for c in _span_ids(t)}
    assert wait_for(lambda: len(exported(out)) >= len(sent), timeout=60), (
        len(exported(out)),
        len(sent),
        gw.output[-3000:],
    )
    assert wait_for(lambda: decisions(gw) >= len(traces), timeout=20)
    time.sleep(0.5)  # a duplicate or a dropped trace's span, if any, would come right behind
    spans = exported(out)
    counts = Counter(s.span_id for s in spans)
    assert set(counts) == sent, "spans lost, or spans of dropped traces exported"
    assert max(counts.values()) == 1, "a span arrived twice"

    # both services' spans of each trace met in the gateway, which decided on whole traces
    text = scrape(gw.endpoints["telemetry/http"])
    decided = metric(text, "tracesieve_tail_sampling_decisions_total")
    late = metric(text, "tracesieve_groupbytrace_late_spans_total")
    assert decided == len(traces)
    assert metric(text, "tracesieve_tail_sampling_decisions_total", decision="sampled") == len(kept)
    services = {service_of(rs) for req in read_json_lines(out) for rs in req.resource_spans}
    assert {"agent-app", "agent-worker"} <= services

    # enriched and classified as the ground truth says; prompts gone
    check(as_traces([out]), [t.truth for t in kept])
    classes = check_classes(spans, [t.truth for t in kept])
    for s in spans:
        a = attrs(s)
        assert len(a) == len(s.attributes), "a key written twice (sidecar and gateway)"
        assert not any(k in a for k in REDACTED)
        if a.get("openinference.span.kind") != "TOOL":  # tool results stay, for cleanliness
            assert "output.value" not in a and "input.value" not in a

    # each kept trace, whole, on the topic of its class
    topics = [prefix + c for c in ("clean", "noisy", "corrupted", "failed", "unclassified")]
    records = read_topics(bs, topics, spans=len(sent), timeout=30)
    on_topic: dict[bytes, set[str]] = defaultdict(set)
    in_topics: Counter[bytes] = Counter()
    for r in records:
        for tid, sid in spans_of(r.value):
            on_topic[tid].add(r.topic)
            in_topics[sid] += 1
    assert in_topics == counts
    for t in kept:
        assert on_topic[t.trace_id] == {prefix + t.truth["expected"]["class"]}
    print(
        f"\n{sum(t.span_count for t in traces)} spans of {len(traces)} traces: {n_a} via "
        f"sidecar A, {n_b} via B; {len(kept)} traces kept ({dict(classes)}), "
        f"{len(dropped)} noisy dropped; {decided:.0f} decisions, {late:.0f} late spans"
    )


def test_two_gateways_share_the_traces_never_split_one(tmp_path, kafka_broker, collector_factory):
    bs = kafka_broker.bootstrap
    topic, group, prefix = unique("spans"), unique("gw"), unique("traces") + "."
    create_topic(bs, topic, partitions=PARTITIONS)
    outs = [str(tmp_path / "gateway-1.jsonl"), str(tmp_path / "gateway-2.jsonl")]
    gws = [
        gateway(collector_factory, bs, topic, group, prefix, o, tmp_path, keep_noisy="keep")
        for o in outs
    ]
    # the group has settled: each gateway owns some of the partitions, all are owned
    assert wait_for(
        lambda: all(owned(g) > 0 for g in gws) and sum(owned(g) for g in gws) == PARTITIONS,
        timeout=60,
    ), [owned(g) for g in gws]
    side_a = sidecar(collector_factory, bs, topic, "sidecar-a", tmp_path)
    side_b = sidecar(collector_factory, bs, topic, "sidecar-b", tmp_path)

    traces = labelled_traces(40, seed=6)
    sent = {bytes.fromhex(c) for t in traces for c in _span_ids(t)}
    send(traces, side_a.endpoints["receivers::otlp/grpc"], side_b.endpoints["receivers::otlp/grpc"])
    assert side_a.stop() == 0 and side_b.stop() == 0

    def total() -> int:
        return sum(len(exported(o)) for o in outs)

    assert wait_for(lambda: total() >= len(sent), timeout=60), (total(), len(sent))
    time.sleep(0.5)
    per_gateway = [exported(o) for o in outs]
    counts = Counter(s.span_id for spans in per_gateway for s in spans)
    assert set(counts) == sent and max(counts.values()) == 1
    traces_at = [{s.trace_id for s in spans} for spans in per_gateway]
    assert all(traces_at), "one gateway got nothing"
    assert not traces_at[0] & traces_at[1], "a trace was split between the gateways"
    decided = [decisions(g) for g in gws]
    assert decided == [len(traces_at[0]), len(traces_at[1])], "a trace decided twice"
    print(
        f"\n{len(sent)} spans of {len(traces)} traces: gateway 1 got {len(traces_at[0])} "
        f"traces, gateway 2 {len(traces_at[1])}; decisions {decided}"
    )
    check(as_traces(outs), [t.truth for t in traces])
    check_classes([s for spans in per_gateway for s in spans], [t.truth for t in traces])


def _span_ids(t: GeneratedTrace) -> list[str]:
    return [s.span_id.hex() for rs in t.resource_spans for ss in rs.scope_spans for s in ss.spans]


def service_of(rs: Any) -> str:
    return str(_attributes(rs.resource.attributes).get("service.name"))


def test_a_gateway_killed_while_holding_traces(tmp_path, kafka_broker, collector_factory):
    """SIGKILL a gateway while `groupbytrace` holds traces it read: their messages were not
    committed, so the other gateway reads them again and exports them whole; nothing is
    lost, duplicates (exported but not yet committed at the kill) are counted."""
    bs = kafka_broker.bootstrap
    topic, group, prefix = unique("spans"), unique("gw"), unique("traces") + "."
    create_topic(bs, topic, partitions=PARTITIONS)
    outs = [str(tmp_path / "gateway-1.jsonl"), str(tmp_path / "gateway-2.jsonl")]
    gws = [
        gateway(collector_factory, bs, topic, group, prefix, o, tmp_path, keep_noisy="keep")
        for o in outs
    ]
    assert wait_for(
        lambda: all(owned(g) > 0 for g in gws) and sum(owned(g) for g in gws) == PARTITIONS,
        timeout=60,
    ), [owned(g) for g in gws]
    side_a = sidecar(collector_factory, bs, topic, "sidecar-a", tmp_path)
    side_b = sidecar(collector_factory, bs, topic, "sidecar-b", tmp_path)
    a, b = side_a.endpoints["receivers::otlp/grpc"], side_b.endpoints["receivers::otlp/grpc"]

    traces = labelled_traces(60, seed=7)
    send(traces[:30], a, b)
    assert wait_for(lambda: len(exported(outs[0])) > 0, timeout=30), "gateway 1 got nothing"
    send(traces[30:], a, b)

    def held(g: Any) -> float:
        return metric(
            scrape(g.endpoints["telemetry/http"]), "tracesieve_groupbytrace_traces_in_memory"
        )

    assert wait_for(lambda: held(gws[0]) > 0, timeout=20, interval=0.02)
    holding = held(gws[0])
    gws[0].kill()
    assert side_a.stop() == 0 and side_b.stop() == 0
    assert wait_for(lambda: owned(gws[1]) == PARTITIONS, timeout=60), "no takeover"

    sent = {bytes.fromhex(c) for t in traces for c in _span_ids(t)}

    def everywhere() -> Counter[bytes]:
        return Counter(s.span_id for o in outs for s in exported(o))

    assert wait_for(lambda: sent <= set(everywhere()), timeout=60), (
        f"{len(sent - set(everywhere()))} spans lost"
    )
    counts = everywhere()
    assert set(counts) == sent
    # every trace is whole in the output of one gateway (never assembled from both)
    per_gateway = [defaultdict(set) for _ in outs]
    for i, o in enumerate(outs):
        for s in exported(o):
            per_gateway[i][s.trace_id].add(s.span_id)
    for t in traces:
        ids = {bytes.fromhex(c) for c in _span_ids(t)}
        assert any(g.get(t.trace_id) == ids for g in per_gateway), "a trace only in pieces"
    duplicates = sum(n - 1 for n in counts.values())
    print(
        f"\n{len(sent)} spans of {len(traces)} traces; gateway 1 killed holding "
        f"{holding:.0f} traces; {duplicates} spans exported twice, 0 lost"
    )
