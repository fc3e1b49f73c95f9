"""The collector's cyclic-GC policy once started: everything alive then is frozen, the
thresholds are `GC_THRESHOLD` unless `TRACESIEVE_GC_THRESHOLD` says otherwise (a bad value
is a configuration error, exit 2, before anything starts), and the young generation is
collected from a timer between callbacks (`YoungCollector`), which a real collector's
`python_gc_*` metrics show taking in grpc's per-request cycles."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import weakref

import pytest

from pipeline.config import from_raw
from pipeline.errors import ConfigError
from pipeline.gcpolicy import GC_THRESHOLD, YOUNG_AT, YOUNG_EVERY, gc_threshold, generation
from pipeline.registry import REGISTRY
from pipeline.service import Service
from pipeline.testing import Collector, metric, sample_request, scrape, wait_for

CONFIG = {
    "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
    "exporters": {"debug": {}},
    "service": {
        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
        "telemetry": {"metrics": {"level": "none"}},
    },
}


@pytest.mark.parametrize(
    ("value", "want"),
    [(None, GC_THRESHOLD), ("", GC_THRESHOLD), ("700,10,10", (700, 10, 10)), ("0", (0,))],
)
def test_threshold_from_the_environment(value, want):
    assert gc_threshold(value) == want


@pytest.mark.parametrize("value", ["abc", "700,10,10,10", "-1", "700,,10", "7e2"])
def test_a_bad_threshold_is_a_config_error(value):
    with pytest.raises(ConfigError, match="TRACESIEVE_GC_THRESHOLD"):
        gc_threshold(value)


@pytest.mark.parametrize("env", [None, "1000,5,5"])
async def test_started_service_sets_the_threshold_and_freezes(env, monkeypatch):
    if env is None:
        monkeypatch.delenv("TRACESIEVE_GC_THRESHOLD", raising=False)
    else:
        monkeypatch.setenv("TRACESIEVE_GC_THRESHOLD", env)
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    service = Service(from_raw(CONFIG, REGISTRY), REGISTRY)
    try:
        await service.start()
        assert gc.get_threshold() == (GC_THRESHOLD if env is None else (1000, 5, 5))
        assert gc.get_freeze_count() > 0
        await service.shutdown()
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_command_refuses_a_bad_threshold(tmp_path):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    res = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "TRACESIEVE_GC_THRESHOLD": "lots"},
        timeout=60,
    )
    assert res.returncode == 2
    assert "TRACESIEVE_GC_THRESHOLD: 'lots'" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("counts", "want"),
    [
        ((YOUNG_AT - 1, 50, 50), None),  # too few young objects: nothing, whatever else
        ((YOUNG_AT, 0, 0), 0),
        ((YOUNG_AT, 10, 0), 0),  # CPython: a generation goes when its count *exceeds*
        ((YOUNG_AT, 11, 0), 1),
        ((YOUNG_AT, 11, 11), 2),
        ((YOUNG_AT, 0, 11), 2),
    ],
)
def test_generation_is_chosen_as_cpython_does(counts, want):
    assert generation(counts, (50_000, 10, 10)) == want


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic GC frees it


def _cycles(n: int) -> weakref.ref[_Node]:
    nodes = [_Node() for _ in range(n)]
    return weakref.ref(nodes[-1])


@pytest.mark.parametrize("env", [None, "0"])
async def test_the_young_generation_is_collected_between_callbacks(env, monkeypatch):
    """Far fewer cycles than the automatic threshold (50,000) are collected within a few
    timer periods; with automatic collection turned off (`0`) the timer does nothing."""
    if env is None:
        monkeypatch.delenv("TRACESIEVE_GC_THRESHOLD", raising=False)
    else:
        monkeypatch.setenv("TRACESIEVE_GC_THRESHOLD", env)
    before = gc.get_threshold()
    service = Service(from_raw(CONFIG, REGISTRY), REGISTRY)
    await service.start()
    try:
        ref = _cycles(3 * YOUNG_AT)
        for _ in range(20):
            await asyncio.sleep(YOUNG_EVERY)
            if ref() is None:
                break
        freed = ref() is None
    finally:
        await service.shutdown()
        gc.unfreeze()
        gc.set_threshold(*before)
        gc.collect()
    assert freed == (env is None)


def test_a_collector_collects_grpc_request_garbage_young():
    """grpc's aio server leaves a cycle of five objects behind each request; a collector
    serving 1,000 requests (5,000 such objects, a tenth of the automatic threshold)
    collects them in young passes, as its `python_gc_*` metrics show."""
    import grpc

    config = {
        **CONFIG,
        "service": {
            **CONFIG["service"],
            "telemetry": {"metrics": {"level": "basic", "address": "127.0.0.1:0"}},
        },
    }
    raw = sample_request(1, n_spans=5).SerializeToString()
    with Collector(config) as c:
        address = c.endpoints["telemetry/http"]

        def collected() -> float:
            return metric(scrape(address), "python_gc_objects_collected_total", generation="0")

        young = collected()
        with grpc.insecure_channel(c.endpoints["receivers::otlp/grpc"]) as ch:
            export = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            for _ in range(1000):
                export(raw, timeout=10)
        assert wait_for(lambda: collected() - young >= 4000, timeout=10), collected() - young
        assert metric(scrape(address), "python_gc_collections_total", generation="0") >= 1
