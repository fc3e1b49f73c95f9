"""tail_sampling holding traces itself, as the OTel Collector's does, with groupbytrace's
machinery: spans of a trace sent in several requests are decided together after
`decision_wait` from the first span (`decision_wait_after_root_received` sooner once the
root is in); `num_traces` bounds what is held (the oldest decided early, counted); late
spans follow the cached decision at once, or wait for a decision of their own without
one; pending traces at shutdown are decided, or dropped with
`drop_pending_traces_on_shutdown`; `block_on_overflow` refuses (retryably) instead of
evicting. Whole traces released by a groupbytrace before it are not held again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipeline.errors import RefusedError
from pipeline.pdata import Traces
from pipeline.telemetry import Telemetry
from pipeline.testing import FakeHost, Sink, attrs, make_span, make_traces, settings
from pipeline.wholetraces import TraceIndex, aligned
from processors.groupbytrace import GroupByTraceConfig, GroupByTraceProcessor
from tests.processors.test_tail_sampling import (
    metric,
    processor,
    received,
    sid,
    tid,
    trace,
    whole,
)

KEEPERS = [
    {
        "name": "keepers",
        "type": "string_attribute",
        "string_attribute": {"key": "keep", "values": ["yes"]},
    }
]
ALL = [{"name": "all", "type": "always_sample"}]


def index(b: Traces) -> TraceIndex:
    idx = b.trace_index
    assert isinstance(idx, TraceIndex)
    return idx


async def started(policies: list[dict[str, Any]], tel: Telemetry | None = None, **cfg: Any):  # type: ignore[no-untyped-def]
    p, sink = processor(policies, tel=tel, **cfg)
    await p.start(FakeHost())
    return p, sink


async def test_spans_of_a_trace_in_several_requests_are_decided_together():
    p, sink = await started(KEEPERS, decision_wait="200ms")
    root, child = trace(1, child_attrs={"keep": "yes"})
    other_root, other_child = trace(2)
    # four requests: two traces' spans interleaved, from two services
    await p.consume_traces(make_traces([other_child]))
    await p.consume_traces(make_traces([child], service="worker"))
    await p.consume_traces(make_traces([other_root]))
    await p.consume_traces(make_traces([root]))
    assert p.held_traces == 2 and not sink.batches  # held, nothing decided yet
    await received(sink)
    (batch,) = sink.batches
    # trace 1 decided on all its spans (the attribute is on the child, from the second
    # request); trace 2 not sampled
    assert [(e.trace_id, e.span_count) for e in index(batch).entries] == [(tid(1), 2)]
    names = {s.name: attrs(s) for s in sink.spans()}
    assert names["root"]["sieve.sampling.policy"] == "keepers"
    assert "sieve.sampling.policy" not in names["child"]
    services = sorted(
        rs.resource.attributes[0].value.string_value for rs in batch.request.resource_spans
    )
    assert services == ["test-service", "worker"]
    assert p.held_traces == 0
    await p.shutdown()


async def test_decision_wait_counts_from_the_first_span():
    # the Collector's decision_wait runs from a trace's first span: later spans do not
    # push the decision back (groupbytrace's wait_duration does, from the last span)
    p, _ = processor(ALL, decision_wait="30s")
    g = GroupByTraceProcessor(settings(), GroupByTraceConfig(), Sink())
    for holder in (p, g):
        await holder.consume_traces(make_traces([make_span("a", tid(1), sid(1), sid(9))]))
        first = holder._traces[tid(1)].last
        await holder.consume_traces(make_traces([make_span("b", tid(1), sid(2), sid(9))]))
        moved = holder._traces[tid(1)].last != first
        assert moved == (holder is g)
        await holder.shutdown()


async def test_the_root_brings_the_decision_forward():
    tel = Telemetry()
    p, sink = await started(ALL, tel, decision_wait="60s", decision_wait_after_root_received="50ms")
    child, root = make_span("c", tid(1), sid(2), sid(1)), make_span("r", tid(1), sid(1))
    await p.consume_traces(make_traces([child]))
    await p.consume_traces(make_traces([make_span("x", tid(2), sid(3), sid(9))]))  # no root
    await p.consume_traces(make_traces([root]))
    await received(sink)  # long before the 60s decision_wait
    (batch,) = sink.batches
    assert [(e.trace_id, e.release, e.span_count) for e in index(batch).entries] == [
        (tid(1), "root", 2)
    ]
    assert p.held_traces == 1  # the rootless trace waits for decision_wait
    assert metric(tel, "tracesieve_tail_sampling_traces_released_total", release="root") == 1
    await p.shutdown()


async def test_without_decision_wait_after_root_received_a_root_changes_nothing():
    p, _ = processor(ALL, decision_wait="60s")  # 0s: off, as the Collector's default
    await p.consume_traces(make_traces([make_span("r", tid(1), sid(1))]))
    assert list(p._waiting) == [tid(1)] and not p._rooted
    # a root due later than the first span's deadline does not move it either
    q, _ = processor(ALL, decision_wait="1s", decision_wait_after_root_received="5s")
    await q.consume_traces(make_traces([make_span("r", tid(1), sid(1))]))
    assert list(q._waiting) == [tid(1)] and not q._rooted
    await p.shutdown()
    await q.shutdown()


async def test_num_traces_bounds_what_is_held_the_oldest_decided_early_and_counted():
    tel = Telemetry()
    p, sink = await started(ALL, tel, decision_wait="60s", num_traces=2)
    for n in (1, 2, 3):
        await p.consume_traces(make_traces([make_span("s", tid(n), sid(n), sid(99))]))
    await received(sink)
    (batch,) = sink.batches
    assert [(e.trace_id, e.release) for e in index(batch).entries] == [(tid(1), "num_traces")]
    assert p.held_traces == 2
    assert metric(tel, "tracesieve_tail_sampling_traces_evicted_total", cause="num_traces") == 1
    assert metric(tel, "tracesieve_tail_sampling_traces_in_memory") == 2
    await p.shutdown()  # the rest decided at shutdown, nothing lost
    assert {s.trace_id for s in sink.spans()} == {tid(1), tid(2), tid(3)}


async def test_late_spans_follow_the_cached_decision_at_once():
    tel = Telemetry()
    # roots: decided soon after they arrive; anything held as a new trace waits 60s
    p, sink = await started(
        KEEPERS, tel, decision_wait="60s", decision_wait_after_root_received="10ms"
    )
    await p.consume_traces(make_traces([*trace(1, root_attrs={"keep": "yes"}), *trace(2)]))
    await received(sink)
    assert {s.trace_id for s in sink.spans()} == {tid(1)}
    late = [
        make_span("late1", tid(1), sid(50), sid(2)),
        make_span("late2", tid(2), sid(51), sid(4), attributes={"keep": "yes"}),
    ]
    await p.consume_traces(make_traces(late))
    await received(sink, 2)  # at once, not after decision_wait
    assert p.held_traces == 0
    assert [s.name for _, _, s in sink.batches[1].spans()] == ["late1"]  # late2: not sampled
    assert index(sink.batches[1]).entries[0].release == "late"
    late1 = next(s for s in sink.spans() if s.name == "late1")
    assert attrs(late1)["sieve.sampling.policy"] == "keepers"
    assert metric(tel, "tracesieve_tail_sampling_late_spans_total", decision="sampled") == 1
    assert metric(tel, "tracesieve_tail_sampling_late_spans_total", decision="not_sampled") == 1
    assert metric(tel, "tracesieve_tail_sampling_cached_decisions_total", decision="sampled") == 1
    await p.shutdown()


async def test_without_a_decision_cache_late_spans_wait_for_a_decision_of_their_own():
    p, sink = await started(
        KEEPERS,
        decision_wait="50ms",
        decision_cache={"sampled_cache_size": 0, "non_sampled_cache_size": 0},
    )
    # decided together: trace 1 sampled, trace 2 not
    await p.consume_traces(make_traces([*trace(1, root_attrs={"keep": "yes"}), *trace(2)]))
    await received(sink)
    assert {s.trace_id for s in sink.spans()} == {tid(1)} and p.held_traces == 0
    late = make_span("late2", tid(2), sid(51), sid(4), attributes={"keep": "yes"})
    await p.consume_traces(make_traces([late]))
    assert p.held_traces == 1  # a new decision_wait, as the Collector after eviction
    await received(sink, 2)
    assert [s.name for _, _, s in sink.batches[1].spans()] == ["late2"]  # decided afresh
    await p.shutdown()


@pytest.mark.parametrize("drop_pending", [False, True])
async def test_pending_traces_at_shutdown(drop_pending):
    tel = Telemetry()
    p, sink = await started(
        ALL, tel, decision_wait="60s", drop_pending_traces_on_shutdown=drop_pending
    )
    await p.consume_traces(make_traces([*trace(1), *trace(2)]))
    await p.shutdown()
    dropped = metric(tel, "tracesieve_tail_sampling_traces_dropped_on_shutdown_total")
    if drop_pending:
        assert not sink.batches and dropped == 2
        spans = metric(tel, "otelcol_processor_dropped_spans_total", otel_signal="traces")
        assert spans == 4  # counted, not lost silently
    else:
        assert {s.trace_id for s in sink.spans()} == {tid(1), tid(2)} and dropped == 0


async def test_block_on_overflow_refuses_instead_of_evicting():
    p, sink = await started(ALL, decision_wait="60s", num_traces=1, block_on_overflow=True)
    await p.consume_traces(make_traces(trace(1)))
    with pytest.raises(RefusedError, match="block_on_overflow"):
        await p.consume_traces(make_traces(trace(2)))
    assert p.held_traces == 1 and not sink.batches
    await p.shutdown()


async def test_whole_traces_from_groupbytrace_are_decided_at_once_not_held_again():
    tel = Telemetry()
    p, sink = processor(ALL, tel=tel, decision_wait="60s")  # not even started
    await p.consume_traces(await whole(*trace(1), *trace(2)))
    assert p.held_traces == 0
    assert {s.trace_id for s in sink.spans()} == {tid(1), tid(2)}
    assert metric(tel, "otelcol_processor_incoming_items_total", otel_signal="traces") == 4
    assert metric(tel, "otelcol_processor_outgoing_items_total", otel_signal="traces") == 4
    assert metric(tel, "tracesieve_tail_sampling_traces_released_total", release="wait") == 0


async def test_a_batch_part_whole_part_not_is_split():
    # whole traces from a groupbytrace merged with spans a routing connector regrouped
    # (indexed, but released by no holder)
    released = await whole(*trace(1))
    raw = make_traces(trace(2))
    aligned(raw)
    assert [e.release for e in index(raw).entries] == [""]
    p, sink = await started(ALL, decision_wait="50ms")
    await p.consume_traces(Traces.merge([released, raw]))
    assert [e.trace_id for b in sink.batches for e in index(b).entries] == [tid(1)]
    assert p.held_traces == 1  # trace 2 waits for its decision_wait
    await received(sink, 2)
    assert [e.trace_id for e in index(sink.batches[1]).entries] == [tid(2)]
    await p.shutdown()


class RefusesOnce(Sink):
    """Refuses (retryably) the first batch it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = asyncio.Event()

    async def consume_traces(self, traces: Traces) -> None:
        if not self.refused.is_set():
            self.refused.set()
            raise RefusedError("not now", retry_after=0.05)
        await super().consume_traces(traces)


async def test_refused_downstream_the_decided_traces_wait_and_go_on_later():
    sink = RefusesOnce()
    p, _ = processor(KEEPERS, sink=sink, decision_wait="20ms")
    await p.start(FakeHost())
    await p.consume_traces(make_traces([*trace(1, root_attrs={"keep": "yes"}), *trace(2)]))
    async with asyncio.timeout(10):
        await sink.refused.wait()
    await received(sink)
    assert len(sink.batches) == 1 and {s.trace_id for s in sink.spans()} == {tid(1)}
    await p.shutdown()
