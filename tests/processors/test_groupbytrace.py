"""groupbytrace: whole traces out, released by wait or by root, limits evict (counted, never
dropped), late spans marked, pending traces released at shutdown, deliveries held until
handed on, spans kept byte for byte."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import wirescan
from pipeline.configtypes import decode
from pipeline.errors import InvalidDataError, RefusedError
from pipeline.otlpwire import TAG_1, TAG_2, frame
from pipeline.pdata import Delivery, Traces
from pipeline.telemetry import Telemetry
from pipeline.testing import FakeHost, Sink, make_span, make_traces, settings
from pipeline.wholetraces import TraceIndex, trace_views
from processors.groupbytrace import GroupByTraceConfig, GroupByTraceProcessor

T1, T2, T3, T4 = (bytes([i]) * 16 for i in range(1, 5))


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def make(sink: Any, tel: Telemetry | None = None, **cfg: Any) -> GroupByTraceProcessor:
    cfg.setdefault("wait_duration", "30s")
    cfg.setdefault("wait_duration_after_root", "30s")
    value, errs = decode(cfg, GroupByTraceConfig, "groupbytrace")
    assert not errs and value is not None
    return GroupByTraceProcessor(settings(telemetry=tel or Telemetry()), value, sink)


async def received(sink: Sink, n_batches: int = 1) -> None:
    """Wait (at most 10 s) until the sink has `n_batches` batches."""
    async with asyncio.timeout(10):
        while len(sink.batches) < n_batches:
            sink.received.clear()
            await sink.received.wait()


def index(b: Traces) -> TraceIndex:
    idx = b.trace_index
    assert isinstance(idx, TraceIndex)
    return idx


def metric(tel: Telemetry, name: str, **labels: str) -> float:
    value = tel.registry.get_sample_value(
        name, {"processor": "test", "pipeline": "traces", **labels}
    )
    return value or 0.0


async def test_released_after_wait_duration_as_one_trace():
    sink = Sink()
    p = make(sink, wait_duration="50ms", wait_duration_after_root="50ms")
    await p.start(FakeHost())
    await p.consume_traces(make_traces([make_span("a", T1, sid(1), sid(9))]))
    await p.consume_traces(make_traces([make_span("b", T1, sid(2), sid(9))], service="other"))
    await received(sink)
    (batch,) = sink.batches
    (entry,) = index(batch).entries
    assert entry.trace_id == T1 and entry.release == "wait"
    assert trace_views(batch)[0].root is None
    assert entry.span_count == 2 == batch.span_count
    assert sorted(s.name for s in sink.spans()) == ["a", "b"]
    # two resources: both kept, each with its own spans
    services = [rs.resource.attributes[0].value.string_value for rs in batch.request.resource_spans]
    assert services == ["test-service", "other"]
    await p.shutdown()


async def test_released_early_once_the_root_arrives():
    sink = Sink()
    tel = Telemetry()
    p = make(sink, tel, wait_duration="30s", wait_duration_after_root="0s")
    await p.start(FakeHost())
    await p.consume_traces(make_traces([make_span("child", T1, sid(2), sid(1))]))
    await p.consume_traces(make_traces([make_span("root", T1, sid(1))]))
    await received(sink)
    (entry,) = index(sink.batches[0]).entries
    assert entry.release == "root" and entry.span_count == 2
    assert metric(tel, "tracesieve_groupbytrace_traces_released_total", release="root") == 1
    assert p.held_traces == 0
    await p.shutdown()


async def test_traces_released_together_share_a_batch_and_stay_aligned():
    sink = Sink()
    p = make(sink)
    spans = [make_span(f"s{i}", t, sid(i), sid(100)) for i, t in enumerate([T1, T2, T3, T1, T2])]
    await p.consume_traces(make_traces(spans))
    await p.shutdown()  # releases all three together
    (batch,) = sink.batches
    idx = index(batch)
    assert [e.trace_id for e in idx.entries] == [T1, T2, T3]
    assert [e.span_count for e in idx.entries] == [2, 2, 1]
    assert {e.release for e in idx.entries} == {"shutdown"}
    raw = batch.to_bytes()
    views = trace_views(batch)
    assert batch.to_bytes() is raw  # already aligned: nothing regrouped
    for v, e in zip(views, idx.entries, strict=True):
        assert {s[3] for s in v.spans} == {e.trace_id}
        # byte ranges cover exactly that trace's spans
        part = ExportTraceServiceRequest.FromString(raw[e.byte_start : e.byte_end])
        assert {
            s.trace_id for rs in part.resource_spans for ss in rs.scope_spans for s in ss.spans
        } == {e.trace_id}
        assert (
            sum(len(ss.spans) for rs in part.resource_spans for ss in rs.scope_spans)
            == e.span_count
        )


async def test_spans_resource_and_scope_kept_byte_for_byte():
    sink = Sink()
    p = make(sink)
    src = make_traces(
        [
            make_span("root", T1, sid(1), attributes={"k": "v", "n": 3, "l": [1, 2]}),
            make_span("child", T1, sid(2), sid(1), status=2),
        ],
        scope="my.scope",
    )
    src.mutable().resource_spans[0].schema_url = "https://schema/1"
    src.request.resource_spans[0].scope_spans[0].scope.version = "9.9"
    src.request.resource_spans[0].scope_spans[0].schema_url = "https://scope-schema"
    original = [s.SerializeToString() for _, _, s in src.spans()]
    await p.consume_traces(Traces(raw=src.to_bytes(), span_count=2))
    await p.shutdown()
    (batch,) = sink.batches
    assert [s.SerializeToString() for s in sink.spans()] == original
    rs = batch.request.resource_spans[0]
    assert rs.schema_url == "https://schema/1"
    assert rs.resource == src.request.resource_spans[0].resource
    ss = rs.scope_spans[0]
    assert (ss.scope.name, ss.scope.version, ss.schema_url) == (
        "my.scope",
        "9.9",
        "https://scope-schema",
    )


async def test_num_traces_evicts_the_oldest_and_counts_it():
    sink = Sink()
    tel = Telemetry()
    p = make(sink, tel, num_traces=2)
    await p.start(FakeHost())
    for i, t in enumerate([T1, T2, T3]):
        await p.consume_traces(make_traces([make_span(f"s{i}", t, sid(i + 1), sid(99))]))
    await received(sink)
    (entry,) = index(sink.batches[0]).entries
    assert entry.trace_id == T1 and entry.release == "num_traces"
    assert metric(tel, "tracesieve_groupbytrace_traces_evicted_total", cause="num_traces") == 1
    assert p.held_traces == 2
    await p.shutdown()
    assert sorted(s.name for s in sink.spans()) == ["s0", "s1", "s2"]  # nothing lost


async def test_memory_bound_evicts_the_oldest_and_counts_it():
    sink = Sink()
    tel = Telemetry()
    p = make(sink, tel, memory_limit_mib=1)
    await p.start(FakeHost())
    big = "x" * 300_000
    for i, t in enumerate([T1, T2, T3, T4]):
        await p.consume_traces(
            make_traces([make_span(f"s{i}", t, sid(i + 1), sid(99), attributes={"blob": big})])
        )
    await received(sink)
    entries = [e for b in sink.batches for e in index(b).entries]
    assert entries[0].trace_id == T1 and entries[0].release == "memory"
    assert metric(tel, "tracesieve_groupbytrace_traces_evicted_total", cause="memory") >= 1
    assert metric(tel, "tracesieve_groupbytrace_bytes_in_memory") <= 1 << 20
    await p.shutdown()
    assert sorted(s.name for s in sink.spans()) == ["s0", "s1", "s2", "s3"]


async def test_late_spans_pass_on_marked_late():
    sink = Sink()
    tel = Telemetry()
    p = make(sink, tel, wait_duration_after_root="0s")
    await p.start(FakeHost())
    await p.consume_traces(make_traces([make_span("root", T1, sid(1))]))
    await received(sink)
    await p.consume_traces(
        make_traces([make_span("late", T1, sid(2), sid(1)), make_span("new", T2, sid(3), sid(7))])
    )
    await received(sink, 2)
    (entry,) = index(sink.batches[1]).entries
    assert entry.trace_id == T1 and entry.release == "late" and entry.late
    assert [s.name for s in sink.batches[1].request.resource_spans[0].scope_spans[0].spans] == [
        "late"
    ]
    assert metric(tel, "tracesieve_groupbytrace_late_spans_total") == 1
    assert p.held_traces == 1  # T2 waits as a new trace
    await p.shutdown()


async def test_without_released_cache_late_spans_wait_as_a_new_trace():
    sink = Sink()
    p = make(sink, released_cache_size=0, wait_duration_after_root="0s")
    await p.start(FakeHost())
    await p.consume_traces(make_traces([make_span("root", T1, sid(1))]))
    await received(sink)
    await p.consume_traces(make_traces([make_span("late", T1, sid(2), sid(1))]))
    assert p.held_traces == 1
    await p.shutdown()
    assert index(sink.batches[1]).entries[0].release == "shutdown"


async def test_shutdown_releases_pending_traces():
    sink = Sink()
    p = make(sink)
    await p.start(FakeHost())
    await p.consume_traces(
        make_traces([make_span("a", T1, sid(1)), make_span("b", T2, sid(2), sid(5))])
    )
    assert sink.batches == []
    await p.shutdown()
    entries = [e for b in sink.batches for e in index(b).entries]
    assert {(e.trace_id, e.release) for e in entries} == {(T1, "shutdown"), (T2, "shutdown")}
    with pytest.raises(RefusedError):
        await p.consume_traces(make_traces([make_span("c", T3, sid(3))]))
    await p.shutdown()  # twice is harmless


async def test_shutdown_without_start_releases_too():
    sink = Sink()
    p = make(sink)
    await p.consume_traces(make_traces([make_span("a", T1, sid(1))]))
    await p.shutdown()
    assert [s.name for s in sink.spans()] == ["a"]


class FlakySink(Sink):
    """Refuses the first `refusals` batches."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.attempts = 0
        self.tried = asyncio.Event()

    async def consume_traces(self, traces: Traces) -> None:
        self.attempts += 1
        self.tried.set()
        if self.refusals > 0:
            self.refusals -= 1
            raise RefusedError("not now", retry_after=0.01)
        await super().consume_traces(traces)


async def test_deliveries_are_held_until_the_trace_is_handed_on():
    sink = FlakySink(refusals=2)
    p = make(sink, wait_duration_after_root="0s")
    await p.start(FakeHost())
    done: list[bool] = []
    d1, d2 = Delivery(done.append), Delivery(done.append)
    b1 = make_traces([make_span("child", T1, sid(2), sid(1)), make_span("x", T2, sid(3), sid(8))])
    b1.deliveries = (d1,)
    b2 = make_traces([make_span("root", T1, sid(1))])
    b2.deliveries = (d2,)
    for b in (b1, b2):
        await p.consume_traces(b)
        b.release()  # the receiver's own share
    await received(sink)
    # T1 went out after two refusals: d2 is done; d1 still has spans (T2) held here
    assert sink.attempts == 3
    assert done == [True]
    assert [s.name for s in sink.spans()] == ["child", "root"]
    await p.shutdown()
    assert done == [True, True]
    assert [s.name for s in sink.spans()] == ["child", "root", "x"]


async def test_downstream_failure_releases_deliveries_as_failed():
    class Broken(Sink):
        async def consume_traces(self, traces: Traces) -> None:
            raise ValueError("boom")

    p = make(Broken())
    done: list[bool] = []
    b = make_traces([make_span("a", T1, sid(1))])
    b.deliveries = (Delivery(done.append),)
    await p.consume_traces(b)
    b.release()
    await p.shutdown()
    assert done == [False]


async def test_a_malformed_batch_is_refused_and_nothing_is_held():
    p = make(Sink())
    with pytest.raises(InvalidDataError):
        await p.consume_traces(Traces(raw=b"\x0a\x05\x12\x03\x12\xff\x01", span_count=1))
    assert p.held_spans == 0


@pytest.mark.parametrize("group", [wirescan.group, wirescan._py_group], ids=["c", "python"])
def test_spans_are_grouped_by_trace_id_and_root_in_any_field_order(group):
    tid, span_id, parent = T1, sid(1), sid(2)
    canonical = (
        frame(TAG_1, tid) + frame(TAG_2, span_id) + frame(b"\x22", parent) + frame(b"\x2a", b"n")
    )
    shuffled = (
        frame(b"\x2a", b"n") + frame(b"\x22", parent) + frame(TAG_2, span_id) + frame(TAG_1, tid)
    )
    with_state = (
        frame(TAG_1, tid) + frame(TAG_2, span_id) + frame(b"\x1a", b"k=v") + frame(b"\x2a", b"n")
    )
    with_state_parent = with_state[:-3] + frame(b"\x22", parent) + frame(b"\x2a", b"n")
    empty_parent = (
        frame(TAG_1, tid) + frame(TAG_2, span_id) + frame(b"\x22", b"") + frame(b"\x2a", b"n")
    )
    bare = frame(TAG_1, tid) + frame(TAG_2, span_id)
    cases = [
        (canonical, False),
        (shuffled, False),
        (with_state, True),
        (with_state_parent, False),
        (empty_parent, True),
        (bare, True),
    ]
    resource = frame(TAG_1, frame(TAG_1, b"k"))
    for span, root in cases:
        other = frame(TAG_1, T2) + frame(TAG_2, sid(9)) + frame(b"\x22", sid(8))
        scope_spans = frame(TAG_2, span) + frame(TAG_2, other) + frame(TAG_2, span)
        raw = frame(TAG_1, resource + frame(TAG_2, scope_spans))
        (((res, url), (scope, surl), by_tid),), rooted = group(raw)
        assert (res, url, scope, surl) == (resource, b"", b"", b"")
        assert list(by_tid) == [tid, T2]
        assert by_tid[tid] == (frame(TAG_2, span) * 2, 2)
        assert by_tid[T2] == (frame(TAG_2, other), 1)
        assert rooted == ({tid} if root else set())


async def test_a_span_in_another_field_order_joins_its_trace():
    sink = Sink()
    p = make(sink)
    root = make_span("root", T1, sid(1))
    encoded = root.SerializeToString()
    # same span, its fields in reverse order (valid protobuf, not canonical)
    fields = []
    pos = 0
    while pos < len(encoded):
        start = pos
        tag = encoded[pos]
        pos += 1
        wire = tag & 7
        if wire == 2:
            n = encoded[pos]
            pos += 1 + n
        elif wire == 1:
            pos += 8
        elif wire == 0:
            while encoded[pos] & 0x80:
                pos += 1
            pos += 1
        fields.append(encoded[start:pos])
    reversed_span = b"".join(reversed(fields))
    ss = frame(TAG_2, frame(TAG_2, reversed_span))
    child = make_traces([make_span("child", T1, sid(2), sid(1))])
    await p.consume_traces(Traces(raw=frame(TAG_1, ss), span_count=1))
    await p.consume_traces(child)
    await p.shutdown()
    (batch,) = sink.batches
    (entry,) = index(batch).entries
    assert entry.span_count == 2
    assert trace_views(batch)[0].root is not None


def test_config_checks():
    _, errs = decode(
        {"wait_duration": "1s", "wait_duration_after_root": "2s"}, GroupByTraceConfig, "g"
    )
    assert errs == ["g::wait_duration_after_root: must not be longer than wait_duration"]
    cfg, errs = decode({"num_workers": 4}, GroupByTraceConfig, "g")  # an OTel option, accepted
    assert not errs and cfg is not None and cfg.wait_duration.seconds == 1.0
    assert cfg.num_traces == 1_000_000


def test_collector_stop_releases_pending_traces(tmp_path, collector_factory):
    """Through the CLI: a trace still waiting when the collector is told to stop is
    released, sampled and written before it exits."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from pipeline.testing import read_json_lines, spans_in, wait_for

    out = str(tmp_path / "out.jsonl")
    c = collector_factory(
        {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
            "processors": {
                "groupbytrace": {"wait_duration": "1h", "wait_duration_after_root": "1h"},
                "tail_sampling": {"policies": [{"name": "all", "type": "always_sample"}]},
            },
            "exporters": {"file": {"path": out, "flush_interval": 0}},
            "service": {
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["groupbytrace", "tail_sampling"],
                        "exporters": ["file"],
                    }
                },
                "telemetry": {"metrics": {"level": "none"}},
            },
        }
    )
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=c.endpoints["receivers::otlp/grpc"], insecure=True)
        )
    )
    with provider.get_tracer("t").start_as_current_span("root"):
        pass
    provider.shutdown()
    assert read_json_lines(out) == []
    assert c.stop() == 0
    assert wait_for(lambda: len(spans_in(read_json_lines(out))) == 1, timeout=5)
    (span,) = spans_in(read_json_lines(out))
    assert span.name == "root"
    assert any(kv.key == "sieve.sampling.policy" for kv in span.attributes)


# -- property: whatever the batches, every span comes out once, byte for byte, with its
# resource and scope, each trace whole and contiguous ---------------------------------------


_span = st.tuples(
    st.integers(0, 5),  # trace
    st.booleans(),  # root?
    st.sampled_from([0, 1, 100, 200, 20_000]),  # attribute size: 1-, 2- and 3-byte lengths
    st.integers(0, 2),  # resource
    st.integers(0, 1),  # scope
    st.booleans(),  # trace_state?
)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_span, min_size=1, max_size=12), min_size=1, max_size=5))
def test_any_batches_come_out_whole_and_intact(batches):
    async def run() -> tuple[list[Traces], list[tuple[bytes, bytes, bytes, bytes]]]:
        sink = Sink()
        p = make(sink)
        sent = []
        n = 0
        for batch in batches:
            req = ExportTraceServiceRequest()
            for t, root, size, r, sc, state in batch:
                n += 1
                span = make_span(
                    f"s{n}",
                    bytes([t + 1]) * 16,
                    sid(n),
                    b"" if root else sid(1000 + t),
                    attributes={"a": "x" * size},
                )
                if state:
                    span.trace_state = "k=v"
                rs = req.resource_spans.add()
                rs.resource.attributes.add(key="service.name").value.string_value = f"svc{r}"
                ss = rs.scope_spans.add()
                ss.scope.name = f"scope{sc}"
                ss.spans.append(span)
                sent.append(
                    (
                        span.trace_id,
                        rs.resource.SerializeToString(),
                        ss.scope.SerializeToString(),
                        span.SerializeToString(),
                    )
                )
            await p.consume_traces(Traces(raw=req.SerializeToString(), span_count=len(batch)))
        await p.shutdown()
        return sink.batches, sent

    out_batches, sent = asyncio.run(run())
    got = []
    for b in out_batches:
        raw = b.to_bytes()
        idx = index(b)
        assert idx.raw is raw and idx.entries[-1].byte_end == len(raw)
        for e, v in zip(idx.entries, trace_views(b), strict=True):
            part = ExportTraceServiceRequest.FromString(raw[e.byte_start : e.byte_end])
            spans = [
                (rs, ss, s) for rs in part.resource_spans for ss in rs.scope_spans for s in ss.spans
            ]
            assert {s.trace_id for _, _, s in spans} == {e.trace_id}
            assert len(spans) == e.span_count == v.span_count
            assert (v.root is not None) == any(not s.parent_span_id for _, _, s in spans)
            got += [
                (
                    s.trace_id,
                    rs.resource.SerializeToString(),
                    ss.scope.SerializeToString(),
                    s.SerializeToString(),
                )
                for rs, ss, s in spans
            ]
        assert len({e.trace_id for e in idx.entries}) == len(idx.entries)
    assert sorted(got) == sorted(sent)
