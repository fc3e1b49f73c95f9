"""The collector's cyclic-GC policy once started: everything alive then is frozen, and the
thresholds are `GC_THRESHOLD` unless `TRACESIEVE_GC_THRESHOLD` says otherwise; a bad value
is a configuration error (exit 2) before anything starts."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from pipeline.config import from_raw
from pipeline.errors import ConfigError
from pipeline.registry import REGISTRY
from pipeline.service import GC_THRESHOLD, Service, gc_threshold

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
