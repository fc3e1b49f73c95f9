"""The batch processor: size and timeout triggers, the max-size split, back-pressure when
downstream refuses, and the flush at shutdown; every batch it holds is released."""

from __future__ import annotations

import asyncio

from pipeline.configtypes import decode
from pipeline.errors import RefusedError
from pipeline.pdata import Delivery, Traces
from pipeline.testing import FakeHost, Sink, make_span, make_traces, settings
from processors.batch import BatchConfig, BatchProcessor


def batch_of(n: int, seed: int = 0) -> Traces:
    return make_traces(
        make_span(f"s{seed}-{i}", bytes([seed + 1]) * 16, (seed * 1000 + i + 1).to_bytes(8, "big"))
        for i in range(n)
    )


def processor(sink: Sink, **cfg: object) -> BatchProcessor:
    config, errors = decode(cfg, BatchConfig, "processors::batch")
    assert not errors and config is not None
    return BatchProcessor(settings("processor", "batch"), config, sink)


async def test_size_trigger_merges_without_decoding():
    sink = Sink()
    p = processor(sink, send_batch_size=10, timeout="10s")
    await p.start(FakeHost())
    for seed in range(4):
        await p.consume_traces(Traces(raw=batch_of(3, seed).to_bytes(), span_count=3))
    # 12 >= 10: one batch went out at once, merged from the encodings
    assert [b.span_count for b in sink.batches] == [12]
    assert not sink.batches[0].is_decoded
    assert sorted(s.name for s in sink.spans()) == sorted(
        f"s{seed}-{i}" for seed in range(4) for i in range(3)
    )
    await p.shutdown()


async def test_timeout_trigger_sends_a_partial_batch():
    sink = Sink()
    p = processor(sink, send_batch_size=1000, timeout="50ms")
    await p.start(FakeHost())
    await p.consume_traces(batch_of(5))
    assert sink.span_count == 0
    await asyncio.wait_for(sink.received.wait(), 5)
    assert sink.span_count == 5
    # the timer is armed again for the next data
    sink.received.clear()
    await p.consume_traces(batch_of(2, 1))
    await asyncio.wait_for(sink.received.wait(), 5)
    assert sink.span_count == 7
    await p.shutdown()


async def test_max_size_splits():
    sink = Sink()
    p = processor(sink, send_batch_size=4, send_batch_max_size=4, timeout="10s")
    await p.start(FakeHost())
    await p.consume_traces(batch_of(10))
    await p.shutdown()
    assert [b.span_count for b in sink.batches] == [4, 4, 2]


async def test_refusal_keeps_data_then_refuses_clients_then_delivers():
    sink = Sink()
    sink.refuse = True
    p = processor(sink, send_batch_size=5, timeout="20ms")
    await p.start(FakeHost())
    outcomes: list[bool] = []
    accepted = 0
    refused = False
    for seed in range(30):
        t = batch_of(5, seed)
        t.deliveries = (Delivery(outcomes.append),)
        try:
            await p.consume_traces(t)
        except RefusedError:
            refused = True
            t.release(False)
            break
        t.deliveries[0].release()
        accepted += 5
    assert refused, "back-pressure never reached the client"
    assert accepted == 20  # 4 x send_batch_size held, then refusals
    sink.refuse = False
    for _ in range(200):
        if sink.span_count >= accepted:
            break
        await asyncio.sleep(0.05)
    assert sink.span_count == accepted
    await p.shutdown()
    assert outcomes.count(True) == 4 and outcomes.count(False) == 1


async def test_shutdown_flushes_and_releases():
    sink = Sink()
    p = processor(sink, send_batch_size=1000, timeout="1h")
    await p.start(FakeHost())
    outcomes: list[bool] = []
    t = batch_of(7)
    t.deliveries = (Delivery(outcomes.append),)
    await p.consume_traces(t)
    t.deliveries[0].release()
    assert outcomes == []  # held by the processor
    await p.shutdown()
    assert sink.span_count == 7 and outcomes == [True]
    await p.shutdown()


async def test_shutdown_gives_up_at_the_deadline_and_counts_it():
    sink = Sink()
    sink.refuse = True
    p = processor(sink, send_batch_size=1000, timeout="1h")
    loop = asyncio.get_running_loop()
    await p.start(FakeHost(deadline=loop.time() + 0.3))
    outcomes: list[bool] = []
    t = batch_of(3)
    t.deliveries = (Delivery(outcomes.append),)
    await p.consume_traces(t)
    t.deliveries[0].release()
    await p.shutdown()
    assert outcomes == [False] and sink.span_count == 0
