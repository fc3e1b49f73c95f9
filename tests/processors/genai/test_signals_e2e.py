"""The agent-tracing guide's vocabulary end to end: an app writes its spans by hand with the
OTel API (as the guide shows: no library emits this vocabulary), the OTel SDK's OTLP/gRPC
exporter sends them to a collector started through the CLI (otlp -> groupbytrace -> the
three enrichment processors -> cleanliness -> file), and the verdicts, the enrichment, the
evaluation summaries and the governance counts are read back from the file and /metrics."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from pipeline.testing import attrs, metric, read_json_lines, scrape, spans_in, wait_for
from tests.processors.genai.e2e import classify_config, file_exporter


class Agent:
    """An agent instrumented by hand the way the guide says."""

    def __init__(self, tracer: Tracer) -> None:
        self.t = tracer

    def session(self, sid: str, intent: str) -> Any:
        return self.t.start_as_current_span(
            f"assistant.session:{sid}.intent={intent}", kind=SpanKind.SERVER
        )

    def llm(
        self,
        name: str = "llm.generate",
        *,
        ran_on: str = "gpt-4o-2024-08-06",
        provider: str = "openai",
        router: str = "gpt-4o",
        events: list[tuple[str, dict[str, Any]]] = (),  # type: ignore[assignment]
    ) -> None:
        with self.t.start_as_current_span(name) as span:
            span.set_attributes(
                {
                    "ai.model_provider": provider,
                    "ai.model_name": ran_on,
                    "ai.router_strategy": "cost_optimized",
                    "ai.prompt_version": "v3",
                    "router_decision": json.dumps(
                        {"selected": router, "candidates": [router, "claude-sonnet-4-6"]}
                    ),
                }
            )
            for ev, a in events:
                span.add_event(ev, a)

    def tool(
        self, name: str, result: Any = None, event: tuple[str, dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:  # fmt: skip
        with self.t.start_as_current_span(f"tool.invoke:{name}") as span:
            span.set_attributes({"tool_name": name, "latency_ms": 12, **extra})
            if result is not None:
                span.set_attribute("gen_ai.tool.call.result", json.dumps(result))
            if event is not None:
                span.add_event(*event)

    def evaluate(self, metric: str, score: float, threshold: float = 0.7) -> None:
        with self.t.start_as_current_span("eval.run") as span:
            span.set_attributes(
                {
                    "eval.type": metric,
                    f"eval.score.{metric}": score,
                    "eval.threshold": threshold,
                    "eval.passed": score >= threshold,
                }
            )


def test_the_guides_vocabulary_through_the_cli(tmp_path, collector_factory):
    out = str(tmp_path / "out.jsonl")
    c = collector_factory(
        classify_config(
            {}, file_exporter(out), after_root="100ms", metrics={"address": "127.0.0.1:0"}
        )
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=c.endpoints["receivers::otlp/grpc"], insecure=True)
        )
    )
    agent = Agent(provider.get_tracer("support-agent"))
    sent: dict[str, int] = {}

    with agent.session("s1", "refund") as root:  # clean, with a passing evaluation
        with agent.t.start_as_current_span("agent.step:plan"):
            agent.llm()
        agent.tool("kb_lookup", {"documents": []})
        agent.llm("agent.step:respond")
        agent.evaluate("faithfulness", 0.91)
        sent["clean"] = root.get_span_context().trace_id
    with agent.session("s2", "refund") as root:  # rate limited, then a fallback
        agent.llm(
            ran_on="claude-sonnet-4-6",
            provider="anthropic",
            events=[
                ("rate_limited", {"retry_after_s": 1}),
                (
                    "fallback_triggered=true",
                    {"from_model": "gpt-4o", "to_model": "claude-sonnet-4-6"},
                ),
            ],
        )
        sent["fallback"] = root.get_span_context().trace_id
    with agent.session("s3", "billing") as root:  # a semantic cache answered
        agent.llm()
        agent.llm("agent.step:respond", events=[("semantic_cache_hit", {"similarity": 0.97})])
        sent["cache"] = root.get_span_context().trace_id
    with agent.session("s4", "billing") as root:  # a tool retried, another blocked
        agent.llm()
        agent.tool("web_search", {"results": []}, retry_count=2)
        agent.tool(
            "send_email",
            error_code="POLICY_BLOCKED",
            event=("policy_blocked", {"policy": "no-external-email"}),
        )
        agent.llm("agent.step:respond")
        sent["tools"] = root.get_span_context().trace_id
    with agent.session("s5", "research") as root:  # a failed evaluation, governance events
        root.add_event("key_rotated", {"key_id": "k-2"})
        agent.llm(events=[("quota_exceeded", {"quota": "tokens_per_minute"})])
        agent.evaluate("faithfulness", 0.32)
        agent.evaluate("relevance", 0.88)
        sent["eval"] = root.get_span_context().trace_id
    with agent.session("s6", "research") as root:  # the run failed
        agent.llm()
        root.set_status(Status(StatusCode.ERROR, "escalated to a human"))
        sent["failed"] = root.get_span_context().trace_id
    provider.shutdown()

    def by_trace() -> dict[int, list[Any]]:
        got: dict[int, list[Any]] = {}
        for s in spans_in(read_json_lines(out)):
            got.setdefault(int.from_bytes(s.trace_id, "big"), []).append(s)
        return got

    def rooted() -> int:
        return sum(any(not s.parent_span_id for s in v) for v in by_trace().values())

    assert wait_for(lambda: rooted() == len(sent), timeout=30), c.output
    traces = by_trace()

    def root_of(name: str) -> dict[str, Any]:
        (r,) = [attrs(s) for s in traces[sent[name]] if not s.parent_span_id]
        return r

    def span_named(name: str, span: str) -> dict[str, Any]:
        (a,) = [attrs(s) for s in traces[sent[name]] if s.name == span]
        return a

    expected = {
        "clean": ("clean", [], "refund"),
        "fallback": ("noisy", ["fallback", "provider_mismatch"], "refund"),
        "cache": ("noisy", ["cache_hit"], "billing"),
        "tools": ("noisy", ["tool_retry", "policy_blocked"], "billing"),
        "eval": ("corrupted", ["eval_failed"], "research"),
        "failed": ("failed", [], "research"),
    }
    for name, (cls, reasons, task) in expected.items():
        r = root_of(name)
        assert (r["sieve.trace.class"], r["sieve.trace.reasons"], r["sieve.trace.task_class"]) == (
            cls,
            reasons,
            task,
        ), name
    assert (
        root_of("clean")["sieve.trace.eval.count"],
        root_of("clean")["sieve.trace.eval.failed"],
        root_of("clean")["sieve.trace.eval.min_score"],
    ) == (1, 0, 0.91)
    e = root_of("eval")
    assert (e["sieve.trace.eval.count"], e["sieve.trace.eval.failed"]) == (2, 1)
    assert e["sieve.trace.eval.min_score"] == 0.32
    assert "sieve.trace.eval.count" not in root_of("cache")

    fb = span_named("fallback", "llm.generate")
    assert fb["sieve.fallback.chain"] == [
        "openai/gpt-4o:error:rate_limited",
        "anthropic/claude-sonnet-4-6:ok",
    ]
    assert (fb["sieve.attempt.count"], fb["sieve.retry.count"], fb["sieve.fallback.fired"]) == (
        2,
        0,
        True,
    )
    hit = span_named("cache", "agent.step:respond")
    assert (hit["sieve.cache.hit"], hit["sieve.cache.type"], hit["sieve.cache.evidence"]) == (
        True,
        "semantic",
        "span_event",
    )
    assert span_named("tools", "tool.invoke:web_search")["sieve.retry.count"] == 2
    assert root_of("clean")["sieve.trace.providers"] == ["openai"]

    m = scrape(c.endpoints["telemetry/http"])
    gov = "tracesieve_cleanliness_governance_events_total"
    assert metric(m, gov, event="quota_exceeded") == 1
    assert metric(m, gov, event="key_rotated") == 1
    reasons = "tracesieve_cleanliness_reasons_total"
    assert metric(m, reasons, reason="policy_blocked") == 1
    assert metric(m, reasons, reason="eval_failed") == 1
    assert metric(m, "tracesieve_genai_fallbacks_total") == 1
    assert metric(m, "tracesieve_genai_cache_hits_total", type="semantic") == 1
