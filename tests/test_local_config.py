"""`make run`'s config, configs/local.yaml, does the main job: an app instrumented for real
(the openai SDK with the OTel GenAI instrumentation, httpx instrumented, the anthropic SDK,
against fake providers on loopback) sends its traces to a collector started through the CLI
on that file; every span comes out in the file, whole traces enriched, classified and kept."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from pipeline.testing import attrs, read_json_lines, spans_in, wait_for
from tests.processors.genai import instrumented_app
from tests.processors.genai.fake_llm import FakeLLM

ROOT = Path(__file__).resolve().parent.parent


def test_local_config_runs_the_main_job(tmp_path, collector_factory):
    openai_api, anthropic_api = FakeLLM(), FakeLLM()
    try:
        out = tmp_path / "spans.jsonl"
        # a second --config file, deep-merged over the first, as a user would add one:
        # the fake providers' loopback addresses are no provider's host
        hosts = {
            f"127.0.0.1:{openai_api.port}": "openai",
            f"127.0.0.1:{anthropic_api.port}": "anthropic",
        }
        overlay = tmp_path / "hosts.yaml"
        overlay.write_text(
            yaml.safe_dump(
                {
                    "processors": {
                        p: {"hosts": hosts}
                        for p in (
                            "provider_reconciliation",
                            "cache_tagging",
                            "fallback_chain",
                            "cleanliness",
                        )
                    }
                }
            )
        )
        env = {
            "TRACESIEVE_GRPC_ENDPOINT": "127.0.0.1:0",
            "TRACESIEVE_HTTP_ENDPOINT": "127.0.0.1:0",
            "TRACESIEVE_HEALTH_ENDPOINT": "127.0.0.1:0",
            "TRACESIEVE_METRICS_ENDPOINT": "127.0.0.1:0",
            "TRACESIEVE_LIVE_VIEW_ENDPOINT": "127.0.0.1:0",
            "TRACESIEVE_OUTPUT": str(out),
        }
        c = collector_factory(
            (ROOT / "configs" / "local.yaml").read_text(),
            env=env,
            extra_args=["--config", str(overlay)],
        )
        trace_ids = instrumented_app.run(
            "openai-v2", c.endpoints["receivers::otlp/grpc"], openai_api.url, anthropic_api.url
        )
    finally:
        openai_api.close()
        anthropic_api.close()

    def roots() -> dict[str, Any]:
        return {
            s.trace_id.hex(): s
            for s in spans_in(read_json_lines(str(out)))
            if out.exists() and not s.parent_span_id
        }

    assert wait_for(lambda: set(trace_ids.values()) <= set(roots()), timeout=30), c.output
    spans = spans_in(read_json_lines(str(out)))
    keys = [(s.trace_id, s.span_id) for s in spans]
    assert len(keys) == len(set(keys)), "a span was written twice"
    by_trace: dict[str, list[Any]] = {}
    for s in spans:
        by_trace.setdefault(s.trace_id.hex(), []).append(s)
    assert set(by_trace) == set(trace_ids.values())

    def llm(scenario: str, name: str = "chat gpt-4o") -> list[dict[str, Any]]:
        found = [s for s in by_trace[trace_ids[scenario]] if s.name == name]
        return [attrs(s) for s in sorted(found, key=lambda s: s.start_time_unix_nano)]

    (plain,) = llm("plain")
    assert plain["sieve.provider.served"] == "openai"
    assert plain["sieve.provider.mismatch"] is False
    (fallback,) = llm("fallback", "anthropic.messages.create")
    assert fallback["sieve.fallback.fired"] is True
    assert fallback["sieve.provider.served"] == "anthropic"
    _, replayed = llm("cache")
    assert replayed["sieve.cache.hit"] is True
    # every trace was classified and kept; its root says why and by which policy
    classes = {"plain": "clean", "sdk_retry": "noisy", "fallback": "noisy", "cache": "noisy"}
    for scenario, tid in trace_ids.items():
        (root,) = [attrs(s) for s in by_trace[tid] if not s.parent_span_id]
        assert root["sieve.trace.class"] == classes[scenario], (scenario, root)
        assert root["sieve.sampling.policy"] == "keep-all"
    # and the live view, at the address printed at start, shows them as classified
    view = c.endpoints["exporters::live_view/http"]

    def shown() -> dict[str, str]:
        with urllib.request.urlopen(f"http://{view}/api/traces", timeout=10) as resp:
            return {t["trace_id"]: t["class"] for t in json.loads(resp.read())["traces"]}

    assert wait_for(lambda: set(trace_ids.values()) <= set(shown()))
    got = shown()
    for scenario, tid in trace_ids.items():
        assert got[tid] == classes[scenario], scenario
