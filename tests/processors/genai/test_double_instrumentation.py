"""One call traced by two instrumentations, for real: OTel GenAI's
(`opentelemetry-instrumentation-openai-v2`) and OpenInference's instrumentation both on the
openai SDK, httpx2 instrumented, the anthropic SDK, against fake provider APIs on loopback;
the OTel SDK's OTLP exporter sends to a collector started through the CLI whose pipeline runs
the three enrichment processors. Each call is one logical call, counted once."""

from __future__ import annotations

from typing import Any

from pipeline.testing import attrs, metric, read_json_lines, scrape, spans_in, wait_for
from tests.processors.genai import instrumented_app
from tests.processors.genai.e2e import enrich_config


def test_a_call_traced_by_two_instrumentations_is_one_call(tmp_path, collector_factory, fakes):
    """OTel GenAI's and OpenInference's instrumentations both on the openai SDK: every call
    is a `chat gpt-4o` span with a `ChatCompletion` span inside it (the requests under the
    inner one). Each call is one logical call (its chain on the outer span only, the SDK's
    retry counted once) and is counted once in the metrics."""
    openai_api, anthropic_api = fakes.openai, fakes.anthropic
    out = str(tmp_path / "out.jsonl")
    hosts = fakes.hosts()
    c = collector_factory(enrich_config(out, hosts, metrics={"address": "127.0.0.1:0"}))
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
