"""Real instrumentation end to end: the openai SDK (with the OTel GenAI or the OpenInference
instrumentation, or both at once: each call traced twice), the anthropic SDK, httpx2
instrumented, the OTel SDK's OTLP exporter, and a collector started through the CLI whose
pipeline runs the three enrichment processors. The LLM APIs are fakes on loopback; the
enriched spans are read back from the file exporter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.testing import attrs, metric, read_json_lines, scrape, spans_in, wait_for
from tests.processors.genai import instrumented_app
from tests.processors.genai.fake_llm import FakeLLM


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeLLM, FakeLLM]]:
    openai_api, anthropic_api = FakeLLM(), FakeLLM()
    yield openai_api, anthropic_api
    openai_api.close()
    anthropic_api.close()


def collector_config(out: str, hosts: dict[str, str]) -> dict[str, Any]:
    genai = {"hosts": hosts}
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {
            # until groupbytrace: the app exports everything in one request, kept whole here
            "batch": {"timeout": "1s"},
            "provider_reconciliation": genai,
            "cache_tagging": genai,
            "fallback_chain": genai,
        },
        "exporters": {"file": {"path": out, "flush_interval": 0}},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": [
                        "batch",
                        "provider_reconciliation",
                        "cache_tagging",
                        "fallback_chain",
                    ],
                    "exporters": ["file"],
                }
            },
            "telemetry": {"metrics": {"level": "none"}},
        },
    }


LLM_SPAN = {"openai-v2": "chat gpt-4o", "openinference": "ChatCompletion", "both": "chat gpt-4o"}


@pytest.mark.parametrize("instrumentation", ["openai-v2", "openinference", "both"])
def test_enrichment_of_real_instrumented_calls(tmp_path, collector_factory, fakes, instrumentation):
    openai_api, anthropic_api = fakes
    out = str(tmp_path / "out.jsonl")
    hosts = {
        f"127.0.0.1:{openai_api.port}": "openai",
        f"127.0.0.1:{anthropic_api.port}": "anthropic",
    }
    c = collector_factory(collector_config(out, hosts))
    trace_ids = instrumented_app.run(
        instrumentation, c.endpoints["receivers::otlp/grpc"], openai_api.url, anthropic_api.url
    )

    def by_trace() -> dict[str, list[Any]]:
        got: dict[str, list[Any]] = {}
        for s in spans_in(read_json_lines(out)):
            got.setdefault(s.trace_id.hex(), []).append(s)
        return got

    # every trace is complete: its root (the task) has arrived, with all children before it
    assert wait_for(
        lambda: all(
            any(s.name.startswith("invoke_workflow") for s in by_trace().get(t, []))
            for t in trace_ids.values()
        ),
        timeout=30,
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
        "gen_ai.response.model" if instrumentation != "openinference" else "llm.model_name"
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


def cleanliness_config(out: str, hosts: dict[str, str], enrich: bool) -> dict[str, Any]:
    """otlp -> groupbytrace -> (the three enrichment processors) -> cleanliness -> file."""
    genai = {"hosts": hosts}
    enrichment = ["provider_reconciliation", "cache_tagging", "fallback_chain"] if enrich else []
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {
            "groupbytrace": {"wait_duration": "2s", "wait_duration_after_root": "200ms"},
            **dict.fromkeys(enrichment, genai),
            "cleanliness": genai,
        },
        "exporters": {"file": {"path": out, "flush_interval": 0}},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["groupbytrace", *enrichment, "cleanliness"],
                    "exporters": ["file"],
                }
            },
            "telemetry": {"metrics": {"level": "none"}},
        },
    }


@pytest.mark.parametrize(
    ("instrumentation", "enrich"), [("openai-v2", True), ("openinference", False)]
)
def test_cleanliness_of_real_instrumented_traces(
    tmp_path, collector_factory, fakes, instrumentation, enrich
):
    """Each scenario's trace classified right, whether the enrichment processors ran before
    cleanliness (sharing their index) or not (cleanliness works the facts out itself)."""
    openai_api, anthropic_api = fakes
    out = str(tmp_path / "out.jsonl")
    hosts = {
        f"127.0.0.1:{openai_api.port}": "openai",
        f"127.0.0.1:{anthropic_api.port}": "anthropic",
    }
    c = collector_factory(cleanliness_config(out, hosts, enrich))
    trace_ids = instrumented_app.run(
        instrumentation, c.endpoints["receivers::otlp/grpc"], openai_api.url, anthropic_api.url
    )

    def roots() -> dict[str, dict[str, Any]]:
        return {
            s.trace_id.hex(): attrs(s)
            for s in spans_in(read_json_lines(out))
            if not s.parent_span_id
        }

    assert wait_for(lambda: set(trace_ids.values()) <= set(roots()), timeout=30), c.output
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


def test_a_call_traced_by_two_instrumentations_is_one_call(tmp_path, collector_factory, fakes):
    """OTel GenAI's and OpenInference's instrumentations both on the openai SDK: every call
    is a `chat gpt-4o` span with a `ChatCompletion` span inside it (the requests under the
    inner one). Each call is one logical call (its chain on the outer span only, the SDK's
    retry counted once) and is counted once in the metrics."""
    openai_api, anthropic_api = fakes
    out = str(tmp_path / "out.jsonl")
    hosts = {
        f"127.0.0.1:{openai_api.port}": "openai",
        f"127.0.0.1:{anthropic_api.port}": "anthropic",
    }
    cfg = collector_config(out, hosts)
    cfg["service"]["telemetry"] = {"metrics": {"address": "127.0.0.1:0"}}
    c = collector_factory(cfg)
    trace_ids = instrumented_app.run(
        "both", c.endpoints["receivers::otlp/grpc"], openai_api.url, anthropic_api.url
    )

    def spans() -> list[Any]:
        return spans_in(read_json_lines(out))

    assert wait_for(
        lambda: (
            set(trace_ids.values()) <= {s.trace_id.hex() for s in spans() if not s.parent_span_id}
        ),
        timeout=30,
    ), c.output
    got = spans()
    by_name: dict[tuple[str, str], list[dict[str, Any]]] = {}
    scenario_of = {t: name for name, t in trace_ids.items()}
    for s in sorted(got, key=lambda s: s.start_time_unix_nano):
        by_name.setdefault((scenario_of[s.trace_id.hex()], s.name), []).append(attrs(s))
    # every openai call: the OTel span holds the logical call, OpenInference's is inside it
    for scenario, n in (("plain", 1), ("sdk_retry", 1), ("fallback", 1), ("cache", 2)):
        outer, inner = by_name[scenario, "chat gpt-4o"], by_name[scenario, "ChatCompletion"]
        assert len(outer) == len(inner) == n, scenario
        assert all("sieve.attempt.count" not in a for a in inner), scenario
    (retried,) = by_name["sdk_retry", "chat gpt-4o"]
    assert retried["sieve.fallback.chain"] == ["openai/gpt-4o:error:500", "openai/gpt-4o:ok"]
    assert (retried["sieve.attempt.count"], retried["sieve.retry.count"]) == (2, 1)
    first, replayed = by_name["cache", "chat gpt-4o"]
    assert (first["sieve.cache.hit"], replayed["sieve.cache.hit"]) == (False, True)
    assert by_name["cache", "ChatCompletion"][1]["sieve.cache.hit"] is True

    m = scrape(c.endpoints["telemetry/http"])
    # 6 calls: plain, sdk_retry, the failed openai call and Anthropic's answer, two in cache
    assert metric(m, "tracesieve_genai_llm_calls_total") == 6
    assert metric(m, "tracesieve_genai_llm_calls_total", provider="openai") == 5
    assert metric(m, "tracesieve_genai_cache_hits_total") == 1
    assert metric(m, "tracesieve_genai_retries_total", of="llm") == 1
    assert metric(m, "tracesieve_genai_fallbacks_total") == 1
