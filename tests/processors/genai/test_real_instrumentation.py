"""Real instrumentation end to end: the openai SDK (with the OTel GenAI or the OpenInference
instrumentation), the anthropic SDK, httpx2 instrumented, the OTel SDK's OTLP exporter, and a
collector (in the test's event loop; the app is a process of its own) whose pipeline runs
the three enrichment processors. The
LLM APIs are fakes on loopback; the enriched spans are read back from the file exporter."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipeline.testing import attrs, read_json_lines, spans_in, until
from tests.processors.genai import instrumented_app
from tests.processors.genai.e2e import classify_config, enrich_config, file_exporter

LLM_SPAN = {"openai-v2": "chat gpt-4o", "openinference": "ChatCompletion"}


@pytest.mark.parametrize("instrumentation", ["openai-v2", "openinference"])
async def test_enrichment_of_real_instrumented_calls(
    tmp_path, service_factory, fakes, instrumentation
):
    openai_api, anthropic_api = fakes.openai, fakes.anthropic
    out = str(tmp_path / "out.jsonl")
    hosts = fakes.hosts()
    c = await service_factory(enrich_config(out, hosts))
    trace_ids = await asyncio.to_thread(
        instrumented_app.run,
        instrumentation,
        c.endpoints["receivers::otlp/grpc"],
        openai_api.url,
        anthropic_api.url,
    )

    def by_trace() -> dict[str, list[Any]]:
        got: dict[str, list[Any]] = {}
        for s in spans_in(read_json_lines(out)):
            got.setdefault(s.trace_id.hex(), []).append(s)
        return got

    # every trace is complete: its root (the task) has arrived, with all children before it
    assert await until(
        lambda: all(
            any(s.name.startswith("invoke_workflow") for s in by_trace().get(t, []))
            for t in trace_ids.values()
        ),
        within=30,
    ), c.output
    traces = by_trace()
    llm_name = LLM_SPAN[instrumentation]

    def llm_spans(scenario: str, name: str = llm_name) -> list[dict[str, Any]]:
        spans = sorted(
            (s for s in traces[trace_ids[scenario]] if s.name == name),
            key=lambda s: s.start_time_unix_nano,
        )
        return [attrs(s) for s in spans]

    # a plain call: the dated snapshot served is the model asked for, not a mismatch
    (plain,) = llm_spans("plain")
    assert plain["sieve.provider.requested"] == "openai"
    assert plain["sieve.model.requested"] == "gpt-4o"
    assert plain["sieve.provider.served"] == "openai"
    assert plain["sieve.model.served"] == "gpt-4o"
    assert plain["sieve.provider.evidence"] == "http_host"
    assert plain["sieve.provider.mismatch"] is False
    assert plain["sieve.cache.hit"] is False
    assert plain["sieve.attempt.count"] == 1
    assert plain["sieve.retry.count"] == 0
    assert plain["sieve.fallback.fired"] is False
    assert plain["sieve.fallback.chain"] == ["openai/gpt-4o:ok"]
    assert plain[
        "gen_ai.response.model" if instrumentation == "openai-v2" else "llm.model_name"
    ] == ("gpt-4o-2024-08-06")  # source attributes untouched

    # a 500, then the SDK's own retry succeeds: one LLM span, two HTTP children
    (retried,) = llm_spans("sdk_retry")
    assert retried["sieve.fallback.chain"] == ["openai/gpt-4o:error:500", "openai/gpt-4o:ok"]
    assert retried["sieve.attempt.count"] == 2
    assert retried["sieve.retry.count"] == 1
    assert retried["sieve.fallback.fired"] is False
    assert retried["sieve.provider.served"] == "openai"

    # the app catches the OpenAI error and falls back to Anthropic
    (failed,) = llm_spans("fallback")
    assert "sieve.fallback.chain" not in failed  # an attempt, not the logical call
    assert failed["sieve.provider.requested"] == "openai"
    (fallback,) = llm_spans("fallback", "anthropic.messages.create")
    assert fallback["sieve.fallback.chain"] == [
        "openai/gpt-4o:error:500",
        "anthropic/claude-sonnet-4-6:ok",
    ]
    assert fallback["sieve.fallback.fired"] is True
    assert fallback["sieve.attempt.count"] == 2
    assert fallback["sieve.retry.count"] == 0
    assert fallback["sieve.provider.served"] == "anthropic"
    assert fallback["sieve.model.served"] == "claude-sonnet-4-6"
    assert fallback["sieve.provider.mismatch"] is False

    # a replayed answer (same response id as the earlier call) is a cache hit
    first, replayed = llm_spans("cache")
    assert first["sieve.cache.hit"] is False
    assert replayed["sieve.cache.hit"] is True
    assert replayed["sieve.cache.type"] == "exact"
    assert replayed["sieve.cache.evidence"] == "response_id_seen"


@pytest.mark.parametrize(
    ("instrumentation", "enrich"), [("openai-v2", True), ("openinference", False)]
)
async def test_cleanliness_of_real_instrumented_traces(
    tmp_path, service_factory, fakes, instrumentation, enrich
):
    """Each scenario's trace classified right, whether the enrichment processors ran before
    cleanliness (sharing their index) or not (cleanliness works the facts out itself)."""
    openai_api, anthropic_api = fakes.openai, fakes.anthropic
    out = str(tmp_path / "out.jsonl")
    hosts = fakes.hosts()
    c = await service_factory(classify_config(hosts, file_exporter(out), enrich=enrich))
    trace_ids = await asyncio.to_thread(
        instrumented_app.run,
        instrumentation,
        c.endpoints["receivers::otlp/grpc"],
        openai_api.url,
        anthropic_api.url,
    )

    def roots() -> dict[str, dict[str, Any]]:
        return {
            s.trace_id.hex(): attrs(s)
            for s in spans_in(read_json_lines(out))
            if not s.parent_span_id
        }

    assert await until(lambda: set(trace_ids.values()) <= set(roots()), within=30), c.output
    got = {scenario: roots()[t] for scenario, t in trace_ids.items()}
    expected = {
        "plain": ("clean", [], ["openai"], ["gpt-4o"]),
        "sdk_retry": ("noisy", ["llm_retry"], ["openai"], ["gpt-4o"]),
        "fallback": ("noisy", ["fallback"], ["anthropic"], ["claude-sonnet-4-6"]),
        "cache": ("noisy", ["cache_hit"], ["openai"], ["gpt-4o"]),
    }
    for scenario, want in expected.items():
        a = got[scenario]
        assert (
            a["sieve.trace.class"],
            a["sieve.trace.reasons"],
            a["sieve.trace.providers"],
            a["sieve.trace.models"],
        ) == want, scenario
        assert "sieve.trace.duration_ratio" not in a  # 4 traces: no median yet
