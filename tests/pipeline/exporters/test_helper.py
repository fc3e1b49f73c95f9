"""The exporter helper in process: retry schedule, permanent errors, unexpected errors,
the queue's refusal, and draining at shutdown."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.configtypes import Duration, QueueConfig, RetryConfig
from pipeline.errors import PermanentError, RefusedError
from pipeline.exporters.helper import Backoff, ExporterHelper, MemoryQueue, RetryableError
from pipeline.pdata import Delivery, Traces
from pipeline.testing import FakeHost, make_span, make_traces, settings
from pipeline.wholetraces import aligned
from processors.genai import index_for


def batch(n: int = 3) -> Traces:
    return make_traces(make_span(f"s{i}", b"\1" * 16, (i + 1).to_bytes(8, "big")) for i in range(n))


FAST = RetryConfig(initial_interval=Duration(0.01), max_interval=Duration(0.05))


def helper(push, *, retry: RetryConfig = FAST, queue: QueueConfig | None = None) -> ExporterHelper:  # type: ignore[no-untyped-def]
    return ExporterHelper(
        settings("exporter", "otlp_grpc/t"), push, retry=retry, queue=queue or QueueConfig()
    )


async def test_unexpected_errors_are_retried_and_the_sender_survives():
    calls: list[int] = []

    async def push(t: Traces) -> int:
        calls.append(t.span_count)
        if len(calls) == 1:
            raise RuntimeError("library bug")
        return 0

    h = helper(push, queue=QueueConfig(num_consumers=1))
    await h.start(FakeHost())
    outcomes: list[bool] = []
    t = batch()
    t.deliveries = (Delivery(outcomes.append),)
    await h.consume_traces(t)
    t.deliveries[0].release()
    await h.shutdown()
    assert calls == [3, 3] and outcomes == [True]
    assert h.metrics.sent._value.get() == 3


async def test_permanent_errors_are_not_retried():
    calls = 0

    async def push(t: Traces) -> int:
        nonlocal calls
        calls += 1
        raise PermanentError("INVALID_ARGUMENT: no")

    h = helper(push, queue=QueueConfig(enabled=False))
    await h.start(FakeHost())
    with pytest.raises(RefusedError):
        await h.consume_traces(batch())
    await h.shutdown()
    assert calls == 1 and h.metrics.send_failed._value.get() == 3


async def test_retry_honours_the_server_delay_and_gives_up_after_max_elapsed_time():
    delays: list[float] = []
    loop = asyncio.get_running_loop()
    last = loop.time()

    async def push(t: Traces) -> int:
        nonlocal last
        now = loop.time()
        delays.append(now - last)
        last = now
        raise RetryableError("UNAVAILABLE", retry_after=0.1)

    retry = RetryConfig(initial_interval=Duration(5), max_elapsed_time=Duration(0.35))
    h = helper(push, retry=retry, queue=QueueConfig(enabled=False))
    await h.start(FakeHost())
    with pytest.raises(RefusedError):
        await h.consume_traces(batch())
    await h.shutdown()
    # the server's 0.1s, not the configured 5s
    assert 3 <= len(delays) <= 4 and all(d < 1.0 for d in delays[1:])


def test_backoff_grows_to_the_max_with_jitter():
    b = Backoff(RetryConfig(initial_interval=Duration(1), max_interval=Duration(4)))
    delays = [b.next_delay() for _ in range(8)]
    assert 0.5 <= delays[0] <= 1.5
    assert all(d <= 4 * 1.5 for d in delays)
    assert b.interval == 4


async def test_full_queue_refuses_and_counts():
    gate = asyncio.Event()

    async def push(t: Traces) -> int:
        await gate.wait()
        return 0

    h = helper(push, queue=QueueConfig(num_consumers=1, queue_size=1))
    await h.start(FakeHost())
    await h.consume_traces(batch())  # taken by the sender
    await asyncio.sleep(0)
    await h.consume_traces(batch())  # queued
    with pytest.raises(RefusedError, match="sending queue is full"):
        await h.consume_traces(batch())
    assert h.metrics.enqueue_failed._value.get() == 3
    gate.set()
    await h.shutdown()
    assert h.metrics.sent._value.get() == 6


def wire_helper(push, queue: QueueConfig) -> ExporterHelper:  # type: ignore[no-untyped-def]
    return ExporterHelper(
        settings("exporter", "otlp_grpc/t"), push, retry=FAST, queue=queue, wire_only=True
    )


async def test_wire_only_queues_the_bytes_without_the_decoded_request_or_derived_data():
    sent: list[tuple[bytes, bool, object, object]] = []

    async def push(t: Traces) -> int:
        sent.append((t.to_bytes(), t.is_decoded, t.genai_index(""), t.trace_index))
        return 0

    h = wire_helper(push, QueueConfig(num_consumers=1))
    await h.start(FakeHost())
    outcomes: list[bool] = []
    t = batch(5)
    t.deliveries = (Delivery(outcomes.append),)
    whole = aligned(t)  # (regroups: the batch is encoded again)
    assert t.request is not None and t.is_decoded
    index = index_for(t)
    await h.consume_traces(t)
    t.deliveries[0].release()  # the source's own reference: the queue holds another
    await h.shutdown()
    assert sent == [(t.to_bytes(), False, None, None)]
    assert outcomes == [True]  # reported to the source once sent, not before
    assert h.metrics.sent._value.get() == 5
    # the batch handed over is untouched: other consumers of it keep its decoded request
    # and what processors derived from it
    assert t.is_decoded and t.genai_index("") is index and t.trace_index is whole


@pytest.mark.parametrize("fail", [False, True])
async def test_wire_only_with_wait_for_result_answers_with_the_send(fail):
    async def push(t: Traces) -> int:
        if fail:
            raise PermanentError("INVALID_ARGUMENT: no")
        return 0

    h = wire_helper(push, QueueConfig(num_consumers=1, wait_for_result=True))
    await h.start(FakeHost())
    if fail:
        with pytest.raises(RefusedError, match="could not send"):
            await asyncio.wait_for(h.consume_traces(batch()), 5)
    else:
        await asyncio.wait_for(h.consume_traces(batch()), 5)
    await h.shutdown()
    assert h.metrics.sent._value.get() == (0 if fail else 3)
    assert h.metrics.send_failed._value.get() == (3 if fail else 0)


async def test_an_item_wakes_one_idle_consumer_not_all_of_them():
    q = MemoryQueue(100, "requests")
    got: list[int] = []
    waits = 0
    wait = q._has_items.wait

    async def counted() -> None:
        nonlocal waits
        waits += 1
        await wait()

    q._has_items.wait = counted  # type: ignore[method-assign]

    async def consumer(i: int) -> None:
        while True:
            await q.get()
            got.append(i)

    tasks = [asyncio.create_task(consumer(i)) for i in range(10)]
    await asyncio.sleep(0)
    assert waits == 10
    q.offer(batch())
    for _ in range(3):
        await asyncio.sleep(0)
    # the longest waiter took it and waits again; the other nine slept on
    assert got == [0] and waits == 11
    q.offer(batch())
    q.offer(batch())
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(got) == 3 and waits <= 14
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize(
    "cancel_first",
    [
        pytest.param(False, id="cancelled-after-its-wakeup"),
        pytest.param(True, id="cancelled-while-waiting"),
    ],
)
async def test_a_cancelled_consumer_leaves_the_item_to_the_next(cancel_first: bool):
    """Woken and then cancelled before it runs, or cancelled while waiting and then an
    item arrives: either way the other consumer gets the item, and nothing raises."""
    q = MemoryQueue(100, "requests")
    got: list[Traces] = []

    async def consumer() -> None:
        t, _ = await q.get()
        got.append(t)

    first, second = asyncio.create_task(consumer()), asyncio.create_task(consumer())
    await asyncio.sleep(0)
    item = batch()
    if cancel_first:
        first.cancel()
        q.offer(item)
    else:
        q.offer(item)  # wakes `first`
        first.cancel()
    await asyncio.sleep(0)
    await asyncio.wait_for(second, 1)
    assert first.cancelled() and got == [item] and q.empty()


async def test_every_queued_batch_is_sent_once_by_ten_consumers():
    sent: list[int] = []

    async def push(t: Traces) -> int:
        await asyncio.sleep(0.001 * (len(sent) % 3))
        sent.append(t.span_count)
        return 0

    h = helper(push)
    await h.start(FakeHost())
    for n in range(1, 201):
        await h.consume_traces(batch(n % 7 + 1))
        if n % 10 == 0:
            await asyncio.sleep(0)
    await h.shutdown()
    assert sorted(sent) == sorted(n % 7 + 1 for n in range(1, 201))
    assert h.metrics.sent._value.get() == sum(n % 7 + 1 for n in range(1, 201))


async def test_an_idle_sender_has_started_the_send_when_consume_returns():
    """The receiver answers after its data is on the way: an idle sender has taken the
    batch and the call it opened has run its first step (grpc.aio starts each call in a
    task of its own, as this push does) before `consume_traces` returns."""
    events: list[str] = []

    async def push(t: Traces) -> int:
        events.append("push")

        async def write() -> None:
            events.append("write")
            await asyncio.sleep(0.05)

        await asyncio.get_running_loop().create_task(write())
        return 0

    h = helper(push, queue=QueueConfig(num_consumers=2))
    await h.start(FakeHost())
    await asyncio.sleep(0)  # the senders wait for items
    await h.consume_traces(batch())
    assert events == ["push", "write"]
    await h.shutdown()
    assert h.metrics.sent._value.get() == 3


async def test_with_every_sender_busy_consume_returns_without_waiting_for_one():
    release = asyncio.Event()
    pushed: list[int] = []

    async def push(t: Traces) -> int:
        pushed.append(t.span_count)
        await release.wait()
        return 0

    h = helper(push, queue=QueueConfig(num_consumers=1))
    await h.start(FakeHost())
    await asyncio.sleep(0)
    await h.consume_traces(batch(1))
    assert pushed == [1]  # the only sender is now busy
    await asyncio.wait_for(h.consume_traces(batch(2)), 1)
    assert pushed == [1] and h.metrics.queue_size._value.get() == 1
    release.set()
    await h.shutdown()
    assert pushed == [1, 2] and h.metrics.sent._value.get() == 3
