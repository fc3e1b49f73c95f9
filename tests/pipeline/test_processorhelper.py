"""`pipeline.processorhelper`: what every processor gets from its base — background tasks
whose failure is reported to the host, shutdown that cancels what is left, metrics
labelled by processor and pipeline — and `telemetry.RateLimitedLog`, the one
rate-limited warning of processors, exporters and receivers."""

from __future__ import annotations

import asyncio
import logging

from pipeline.pdata import Traces
from pipeline.processorhelper import ProcessorBase, ProcessorHelper
from pipeline.telemetry import RateLimitedLog, Telemetry
from pipeline.testing import FakeHost, Sink, make_span, make_traces, settings


class Worker(ProcessorBase):
    """A stateful processor with two background tasks: one fails when told, one runs
    until shutdown."""

    def __init__(self, tel: Telemetry) -> None:
        super().__init__(settings(id="worker", telemetry=tel), Sink())
        self.fail = asyncio.Event()
        self.stopped: list[str] = []

    async def _start(self, host: object) -> None:
        self.failing = self.spawn(self._fails(), "fails")
        self.forever = self.spawn(self._forever(), "forever")

    async def _fails(self) -> None:
        await self.fail.wait()
        raise RuntimeError("a bug")

    async def _forever(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stopped.append("forever")
            raise

    async def consume_traces(self, traces: Traces) -> None:
        pass


async def test_a_background_task_that_fails_is_logged_and_reported_to_the_host(caplog):
    host = FakeHost()
    w = Worker(Telemetry())
    await w.start(host)
    w.fail.set()
    await asyncio.gather(w.failing, return_exceptions=True)
    assert [str(e) for e in host.fatal] == ["a bug"]
    assert any(
        r.levelno == logging.ERROR and "worker-fails failed: a bug" in r.getMessage()
        for r in caplog.records
    )
    await w.shutdown()  # cancels the task still running; that is not an error
    assert w.stopped == ["forever"] and w.forever.cancelled()
    assert [str(e) for e in host.fatal] == ["a bug"]
    await w.shutdown()  # twice: harmless


async def test_a_function_processor_counts_and_forwards():
    tel = Telemetry()
    sink = Sink()
    p = ProcessorHelper(
        settings(id="keep_one", telemetry=tel),
        sink,
        lambda t: t.split(1)[0],
        mutates_data=True,
    )
    await p.shutdown()  # without start: harmless
    await p.consume_traces(make_traces([make_span(f"s{i}", b"\x01" * 16, bytes(8)) for i in "ab"]))
    assert [s.name for s in sink.spans()] == ["sa"]
    labels = {"processor": "keep_one", "pipeline": "traces", "otel_signal": "traces"}
    value = tel.registry.get_sample_value
    assert value("otelcol_processor_incoming_items_total", labels) == 2
    assert value("otelcol_processor_outgoing_items_total", labels) == 1
    assert value("otelcol_processor_dropped_spans_total", labels) == 1


def test_own_metrics_carry_the_processor_and_pipeline_labels():
    tel = Telemetry()
    w = Worker(tel)
    w.counter("tracesieve_x_things", "Things").inc(2)
    w.counters("tracesieve_x_by_kind", "By kind", "kind", ("a", "b"))["b"].inc()
    w.counter_family("tracesieve_x_pairs", "Pairs", "p", "q").labels(*w.labels, "1", "2").inc()
    w.gauge("tracesieve_x_level", "Level").set(7)
    w.histogram("tracesieve_x_size", "Size", (1, 10)).observe(5)
    mine = {"processor": "worker", "pipeline": "traces"}
    value = tel.registry.get_sample_value
    assert value("tracesieve_x_things_total", mine) == 2
    assert value("tracesieve_x_by_kind_total", {**mine, "kind": "a"}) == 0
    assert value("tracesieve_x_by_kind_total", {**mine, "kind": "b"}) == 1
    assert value("tracesieve_x_pairs_total", {**mine, "p": "1", "q": "2"}) == 1
    assert value("tracesieve_x_level", mine) == 7
    assert value("tracesieve_x_size_bucket", {**mine, "le": "10.0"}) == 1


def test_warnings_are_rate_limited_per_kind_the_rest_go_to_debug(caplog):
    logger = logging.getLogger("test.ratelimit")
    caplog.set_level(logging.DEBUG, logger="test.ratelimit")
    warn = RateLimitedLog(logger, 3600.0)
    for i in range(3):
        warn.warning("backend down (%d)", i)
    warn.warning("refused", key="refused")
    got = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "test.ratelimit"]
    assert got == [
        ("WARNING", "backend down (0)"),
        ("DEBUG", "backend down (1)"),
        ("DEBUG", "backend down (2)"),
        ("WARNING", "refused"),
    ]
