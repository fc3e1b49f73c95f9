"""`tracesieve-loadgen` (the installed console script) against a real collector."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.loadgen import read_proto_file
from pipeline.testing import Collector, free_port

LOADGEN = os.path.join(os.path.dirname(sys.executable), "tracesieve-loadgen")


def _run(*args: str) -> dict:
    res = subprocess.run([LOADGEN, *args, "--json"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out: dict = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def test_loadgen_sends_the_chosen_mix_and_counts_what_was_accepted(tmp_path):
    out_file = tmp_path / "spans.pb"
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"file": {"path": str(out_file), "format": "proto"}},
        "service": {
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
            "telemetry": {"metrics": {"level": "none"}},  # no fixed port to collide on
        },
    }
    c = Collector(config, workdir=str(tmp_path)).start()
    try:
        out = _run(
            *("--endpoint", c.endpoints["receivers::otlp/grpc"]),
            *("--rate", "3000", "--duration", "1", "--concurrency", "2"),
            *("--conventions", "openinference", "--faults", "all=0"),
        )
    finally:
        c.stop()
    assert out["accepted_spans"] > 0 and out["refused_spans"] == 0
    assert out["sent_spans"] == out["accepted_spans"] and out["refused_requests"] == {}
    assert out["achieved_rate"] > 0
    spans = [
        s
        for req in read_proto_file(str(out_file))
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    assert len(spans) == out["accepted_spans"]
    keys = {kv.key for s in spans for kv in s.attributes}
    assert "openinference.span.kind" in keys  # the convention asked for
    assert "gen_ai.operation.name" not in keys  # and no other


def test_loadgen_counts_refusals():
    out = _run(
        *("--endpoint", f"127.0.0.1:{free_port()}", "--mix", "numbered"),
        *("--duration", "0.5", "--rate", "2000", "--timeout", "0.5"),
    )
    assert out["accepted_spans"] == 0 and out["sent_spans"] > 0
    assert out["refused_spans"] == out["sent_spans"]
    assert out["refused_requests"].get("UNAVAILABLE", 0) > 0


def test_loadgen_rejects_unknown_faults_and_conventions():
    for args in (["--faults", "nope=1"], ["--conventions", "nope"]):
        res = subprocess.run([LOADGEN, *args], capture_output=True, text=True, timeout=30)
        assert res.returncode == 2 and "nope" in res.stderr, res.stderr
