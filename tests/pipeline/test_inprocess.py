"""The in-process collector (`InProcessCollector`, the `service_factory` fixture): the
service `tracesieve run` runs, in the test's event loop, ready on an event."""

from __future__ import annotations

import asyncio
import socket

from pipeline.testing import (
    InProcessCollector,
    export_grpc,
    metric,
    read_json_lines,
    sample_request,
    spans_in,
    until,
)


def config(out: str) -> dict:  # type: ignore[type-arg]
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"file": {"path": out, "flush_interval": 0}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


def _answers(endpoint: str) -> bool:
    host, port = endpoint.rsplit(":", 1)
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


async def test_ready_on_an_event_serves_and_stops(tmp_path):
    out = str(tmp_path / "out.jsonl")
    c = InProcessCollector(config(out), workdir=str(tmp_path))
    await c.start()
    try:
        assert c.service.ready.is_set()
        grpc_at = c.endpoints["receivers::otlp/grpc"]
        assert set(c.endpoints) == {"receivers::otlp/grpc", "telemetry/http"}
        assert _answers(grpc_at) and _answers(c.endpoints["telemetry/http"])
        await asyncio.to_thread(export_grpc, grpc_at, sample_request(1, n_spans=7))
        assert await until(lambda: len(spans_in(read_json_lines(out))) == 7)
        assert metric(c.metrics(), "otelcol_receiver_accepted_spans_total") == 7
        assert "tracesieve is ready: 1 pipeline running" in c.output
    finally:
        await c.stop()
    assert not c.service.ready.is_set()
    assert not _answers(grpc_at)
    assert "tracesieve stopped" in c.output
    await c.stop()  # twice: nothing more


async def test_the_fixture_stops_what_it_started(tmp_path, service_factory):
    c = await service_factory(config(str(tmp_path / "a.jsonl")))
    d = await service_factory(config(str(tmp_path / "b.jsonl")), env={"UNUSED": "1"})
    assert c.endpoints["receivers::otlp/grpc"] != d.endpoints["receivers::otlp/grpc"]
    assert c.fatal is None and d.fatal is None
