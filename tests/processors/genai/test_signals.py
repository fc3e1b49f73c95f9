"""The agent-tracing guide's vocabulary and the same call seen twice, on small hand-made
traces run through the processors: each span event, attribute and span shape the guide
names, evaluations and guardrails, governance events, two instrumentations' spans of one
call, and a gateway request its cache plugin answered."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from pipeline.pdata import Traces
from pipeline.telemetry import Telemetry
from pipeline.testing import Sink, attrs, make_span, settings
from processors import cache_tagging, fallback_chain, provider_reconciliation
from processors.cleanliness import CleanlinessConfig, CleanlinessProcessor
from processors.genai import index_for
from processors.groupbytrace import GroupByTraceConfig, GroupByTraceProcessor

T0 = 1_750_000_000_000_000_000
MS = 1_000_000
ERROR = Status.STATUS_CODE_ERROR
CLIENT, SERVER = Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_SERVER
APP = "agent-app"
HTTPX = "opentelemetry.instrumentation.httpx"
_traces = itertools.count(1)
_spans = itertools.count(1)  # span ids unique across traces: results are read by span id


class Trace:
    """A hand-made trace: spans by scope, times in ms from the trace's start."""

    def __init__(self, root: str = "assistant.session:7f3a.intent=refund", **root_attrs: Any):
        self.tid = next(_traces).to_bytes(16, "big")
        self.by_scope: dict[str, list[Span]] = {}
        self.root = self.span(APP, root, b"", 0, 10_000, kind=SERVER, attributes=root_attrs)

    def span(
        self,
        scope: str,
        name: str,
        parent: bytes,
        start: int,
        dur: int,
        *,
        kind: int = Span.SPAN_KIND_INTERNAL,
        error: bool = False,
        attributes: dict[str, Any] | None = None,
        events: list[tuple[str, int, dict[str, Any]]] | None = None,
    ) -> bytes:
        sid = next(_spans).to_bytes(8, "big")
        s = make_span(
            name,
            self.tid,
            sid,
            parent,
            start=T0 + start * MS,
            duration_ns=dur * MS,
            kind=kind,
            status=ERROR if error else Status.STATUS_CODE_UNSET,
            attributes=attributes,
        )
        for ev_name, t, ev_attrs in events or ():
            e = s.events.add(name=ev_name, time_unix_nano=T0 + t * MS)
            for k, v in ev_attrs.items():
                kv = e.attributes.add(key=k)
                if isinstance(v, bool):
                    kv.value.bool_value = v
                elif isinstance(v, int):
                    kv.value.int_value = v
                elif isinstance(v, float):
                    kv.value.double_value = v
                else:
                    kv.value.string_value = v
        self.by_scope.setdefault(scope, []).append(s)
        return sid

    def http(self, parent: bytes, host: str, status: int | None, start: int, dur: int = 20,
             **extra: Any) -> bytes:  # fmt: skip
        a: dict[str, Any] = {"http.request.method": "POST", "url.full": f"https://{host}/v1/x"}
        if status is not None:
            a["http.response.status_code"] = status
        a.update(extra)
        failed = status is None or status >= 400
        return self.span(HTTPX, "POST", parent, start, dur, kind=CLIENT, error=failed,
                         attributes=a)  # fmt: skip

    def request(self) -> ExportTraceServiceRequest:
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = "agent"
        for scope, spans in self.by_scope.items():
            ss = rs.scope_spans.add()
            ss.scope.name = scope
            ss.spans.extend(spans)
        return req


def _request(*trs: Trace) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for t in trs:
        req.resource_spans.extend(t.request().resource_spans)
    return req


async def enriched(*trs: Trace, tel: Telemetry | None = None) -> dict[bytes, dict[str, Any]]:
    """The three enrichment processors over the traces: attributes by span id."""
    sink = Sink()
    nxt: Any = sink
    for f in (fallback_chain.factory, cache_tagging.factory, provider_reconciliation.factory):
        nxt = f.create(settings(id=f.type, telemetry=tel or Telemetry()), f.config_type(), nxt)
    await nxt.consume_traces(Traces(_request(*trs)))
    return {s.span_id: attrs(s) for s in sink.spans()}


async def classified(
    *trs: Trace, tel: Telemetry | None = None, **cfg: Any
) -> dict[bytes, dict[str, Any]]:
    """groupbytrace -> cleanliness: the root's attributes by trace id."""
    grouped = Sink()
    g = GroupByTraceProcessor(settings(), GroupByTraceConfig(), grouped)
    await g.consume_traces(Traces(_request(*trs)))
    await g.shutdown()
    sink = Sink(mutates_data=True)
    p = CleanlinessProcessor(
        settings(telemetry=tel or Telemetry()), msgspec.convert(cfg, CleanlinessConfig), sink
    )
    for b in grouped.batches:
        await p.consume_traces(b)
    return {s.trace_id: attrs(s) for s in sink.spans() if not s.parent_span_id}


def verdict(roots: dict[bytes, dict[str, Any]], t: Trace) -> tuple[str, list[str]]:
    a = roots[t.tid]
    return a["sieve.trace.class"], a["sieve.trace.reasons"]


def guide_llm(t: Trace, start: int = 100, dur: int = 400, *, name: str = "llm.generate",
              events: list[tuple[str, int, dict[str, Any]]] | None = None, error: bool = False,
              **a: Any) -> bytes:  # fmt: skip
    attributes = {"ai.model_provider": "openai", "ai.model_name": "gpt-4o-2024-08-06", **a}
    return t.span(APP, name, t.root, start, dur, error=error, attributes=attributes,
                  events=events)  # fmt: skip


def chain_of(a: dict[str, Any]) -> tuple[list[str], int, int, bool]:
    return (
        a["sieve.fallback.chain"],
        a["sieve.attempt.count"],
        a["sieve.retry.count"],
        a["sieve.fallback.fired"],
    )


# -- span events on LLM calls ----------------------------------------------------------------


async def test_fallback_triggered_with_or_without_a_true_value():
    traces = []
    for name in ("fallback_triggered", "fallback_triggered=true", "fallback_triggered=false"):
        t = Trace()
        t.call = guide_llm(  # type: ignore[attr-defined]
            t,
            events=[(name, 300, {"from_model": "gpt-4o", "to_model": "claude-sonnet-4-6"})],
            router_decision='{"selected": "gpt-4o", "candidates": ["gpt-4o", "claude-sonnet-4-6"]}',
            **{"ai.model_provider": "anthropic", "ai.model_name": "claude-sonnet-4-6"},
        )
        traces.append(t)
    got = await enriched(*traces)
    for t in traces[:2]:
        a = got[t.call]  # type: ignore[attr-defined]
        assert chain_of(a) == (
            ["openai/gpt-4o:error:unknown", "anthropic/claude-sonnet-4-6:ok"],
            2,
            0,
            True,
        )
        assert (a["sieve.provider.requested"], a["sieve.model.requested"]) == ("openai", "gpt-4o")
        assert a["sieve.provider.served"] == "anthropic"
        assert a["sieve.provider.mismatch"] is True
    off = got[traces[2].call]  # type: ignore[attr-defined]
    assert off["sieve.fallback.fired"] is False and off["sieve.attempt.count"] == 1
    roots = await classified(*traces)
    assert verdict(roots, traces[0]) == ("noisy", ["fallback", "provider_mismatch"])
    assert verdict(roots, traces[2]) == ("noisy", ["provider_mismatch"])


async def test_a_fallback_event_names_its_reason_and_the_failures_before_it():
    t = Trace()
    call = guide_llm(
        t,
        events=[
            ("fallback_triggered", 350, {"to_model": "claude-sonnet-4-6"}),
            ("timeout", 200, {}),  # events in any order: read by their time
            ("rate_limited", 150, {}),
        ],
        router_decision="gpt-4o",
        **{"ai.model_provider": "anthropic", "ai.model_name": "claude-sonnet-4-6"},
    )
    t2 = Trace()
    call2 = guide_llm(t2, events=[("fallback_triggered", 300, {"reason": "overloaded"})],
                      router_decision="gpt-4o",
                      **{"ai.model_name": "claude-sonnet-4-6"})  # fmt: skip
    got = await enriched(t, t2)
    assert chain_of(got[call]) == (
        [
            "openai/gpt-4o:error:rate_limited",
            "openai/gpt-4o:error:timeout",
            "anthropic/claude-sonnet-4-6:ok",
        ],
        3,
        1,
        True,
    )
    assert got[call2]["sieve.fallback.chain"] == [
        "openai/gpt-4o:error:overloaded",
        "anthropic/claude-sonnet-4-6:ok",
    ]


async def test_rate_limited_and_timeout_events_are_failed_attempts():
    ok, failed = Trace(), Trace()
    a = guide_llm(ok, events=[("timeout", 300, {}), ("rate_limited", 200, {"retry_after": 1})])
    b = guide_llm(failed, events=[("timeout", 450, {})], error=True)
    got = await enriched(ok, failed)
    assert chain_of(got[a]) == (
        ["openai/gpt-4o:error:rate_limited", "openai/gpt-4o:error:timeout", "openai/gpt-4o:ok"],
        3,
        2,
        False,
    )
    # a span that failed on a timeout: the timeout is its one (final) attempt
    assert chain_of(got[b]) == (["openai/gpt-4o:error:timeout"], 1, 0, False)
    roots = await classified(ok, failed)
    assert verdict(roots, ok) == ("noisy", ["llm_retry"])
    assert verdict(roots, failed) == ("corrupted", ["swallowed_error"])


async def test_events_beside_the_requests_that_show_the_same_attempts_count_once():
    t = Trace()
    call = guide_llm(t, events=[("rate_limited", 180, {})], retry_count=1)
    t.http(call, "api.openai.com", 429, 120)
    t.http(call, "api.openai.com", 200, 250, **{"http.request.resend_count": 1})
    a = (await enriched(t))[call]
    assert chain_of(a) == (["openai/gpt-4o:error:429", "openai/gpt-4o:ok"], 2, 1, False)
    assert a["sieve.provider.evidence"] == "http_host"


async def test_cache_hit_events():
    t = Trace()
    sem = guide_llm(t, 100, 5, events=[("semantic_cache_hit", 101, {})])
    exact = guide_llm(t, 200, 5, events=[("cache_hit", 201, {})])
    typed = guide_llm(t, 300, 5, events=[("cache_hit=true", 301, {"cache_type": "semantic"})])
    miss = guide_llm(t, 400, 5, events=[("cache_hit=false", 401, {})], cost=0.0,
                     **{"gen_ai.usage.input_tokens": 10})  # fmt: skip
    got = await enriched(t)
    for sid, ctype in ((sem, "semantic"), (exact, "exact"), (typed, "semantic")):
        a = got[sid]
        assert (a["sieve.cache.hit"], a["sieve.cache.type"], a["sieve.cache.evidence"]) == (
            True,
            ctype,
            "span_event",
        )
    assert got[miss]["sieve.cache.hit"] is False  # an explicit miss: nothing else looked at
    assert verdict(await classified(t), t) == ("noisy", ["cache_hit"])


# -- attributes and span shapes ----------------------------------------------------------------


async def test_model_attributes_ai_plain_and_the_router_decision():
    t = Trace()
    ai = guide_llm(t, 100)
    plain = t.span(APP, "agent.step:respond", t.root, 600, 300,
                   attributes={"model_provider": "anthropic", "model_name": "claude-sonnet-4-6"})  # fmt: skip
    routed = guide_llm(t, 1000, router_decision='{"selected": "gpt-4o"}',
                       **{"ai.model_name": "gpt-4o-mini", "ai.router_strategy": "cost",
                          "ai.prompt_version": "v7"})  # fmt: skip
    kv = guide_llm(t, 1500, **{"ai.model_name": "gpt-4o"})
    # plain names on a span that is no call by its name make no call
    other = t.span(APP, "summarise", t.root, 2000, 100,
                   attributes={"model_provider": "openai", "model_name": "gpt-4o"})  # fmt: skip
    step = t.span(APP, "agent.step:plan", t.root, 2200, 100, attributes={"ai.router_strategy": "x"})
    got = await enriched(t)

    def rs(sid: bytes) -> tuple[str, ...]:
        a = got[sid]
        return (
            a["sieve.provider.requested"],
            a["sieve.model.requested"],
            a["sieve.provider.served"],
            a["sieve.model.served"],
            a["sieve.provider.evidence"],
        )

    assert rs(ai) == ("openai", "gpt-4o", "openai", "gpt-4o", "response_model")
    assert rs(plain) == (
        "anthropic",
        "claude-sonnet-4-6",
        "anthropic",
        "claude-sonnet-4-6",
        "response_model",
    )
    assert rs(routed) == ("openai", "gpt-4o", "openai", "gpt-4o-mini", "response_model")
    assert got[routed]["sieve.provider.mismatch"] is True
    assert rs(kv)[:2] == ("openai", "gpt-4o")
    assert not any(k.startswith("sieve.") for k in got[other])
    assert not any(k.startswith("sieve.") for k in got[step])
    roots = await classified(t)
    assert verdict(roots, t) == ("noisy", ["provider_mismatch"])
    assert roots[t.tid]["sieve.trace.models"] == ["claude-sonnet-4-6", "gpt-4o", "gpt-4o-mini"]


async def test_router_decision_as_a_kvlist():
    t = Trace()
    sid = guide_llm(t, **{"ai.model_name": "gpt-4o-mini"})
    span = t.by_scope[APP][-1]
    kv = span.attributes.add(key="router_decision").value.kvlist_value.values
    kv.add(key="chosen").value.string_value = "gpt-4o"
    kv.add(key="candidates").value.array_value.values.add().string_value = "gpt-4o"
    a = (await enriched(t))[sid]
    assert (a["sieve.model.requested"], a["sieve.model.served"]) == ("gpt-4o", "gpt-4o-mini")


async def test_the_intent_in_the_root_name_is_the_task_class_when_nothing_better_is_set():
    plain, named = Trace(), Trace("support_bot.session:9.intent=billing", **{"task.class": "x"})
    guide_llm(plain)
    guide_llm(named)
    roots = await classified(plain, named)
    assert roots[plain.tid]["sieve.trace.task_class"] == "refund"
    assert roots[named.tid]["sieve.trace.task_class"] == "x"


# -- tools ------------------------------------------------------------------------------------


def tool(t: Trace, name: str, start: int, *, error: bool = False, **a: Any) -> bytes:
    events = a.pop("events", None)
    return t.span(APP, f"tool.invoke:{name}", t.root, start, 50, error=error,
                  attributes={"tool_name": name, "latency_ms": 50, **a}, events=events)  # fmt: skip


async def test_tool_invoke_spans_their_error_code_and_retries():
    failing, fine, retried = Trace(), Trace(), Trace()
    guide_llm(failing)
    tool(failing, "web_search", 600, error_code="TIMEOUT")  # no ERROR status: the code says
    guide_llm(fine)
    for i, code in enumerate(("0", "OK", "none", "")):
        tool(fine, "web_search", 600 + 60 * i, error_code=code)
    guide_llm(retried)
    by_attr = tool(retried, "web_search", 600, retry_count=2)
    by_name = tool(retried, "fetch_url", 700, events=[("retry_count=3", 740, {})])
    by_attr_event = tool(retried, "kb_lookup", 800,
                         events=[("tool.retry", 840, {"retry_count": 1})])  # fmt: skip
    tool(retried, "run_sql", 900, error_code="DB_ERROR")
    again = tool(retried, "run_sql", 1000, retry_count=1)  # a run after a failed one: max
    got = await enriched(retried)
    assert got[by_attr]["sieve.retry.count"] == 2
    assert got[by_name]["sieve.retry.count"] == 3
    assert got[by_attr_event]["sieve.retry.count"] == 1
    assert got[again]["sieve.retry.count"] == 1
    roots = await classified(failing, fine, retried)
    assert verdict(roots, failing) == ("corrupted", ["swallowed_error"])
    assert verdict(roots, fine) == ("clean", [])
    assert verdict(roots, retried) == ("noisy", ["tool_retry"])


async def test_a_tool_call_a_policy_blocked_is_noisy_not_a_swallowed_error():
    t, allowed = Trace(), Trace()
    guide_llm(t)
    tool(t, "send_email", 600, error=True, error_code="POLICY_BLOCKED",
         events=[("policy_blocked", 620, {"policy": "no-external-email"})])  # fmt: skip
    guide_llm(allowed)
    tool(allowed, "send_email", 600, events=[("policy_blocked=false", 620, {})])
    roots = await classified(t, allowed)
    assert verdict(roots, t) == ("noisy", ["policy_blocked"])
    assert verdict(roots, allowed) == ("clean", [])
    relaxed = await classified(t, reason_classes={"policy_blocked": "clean"})
    assert verdict(relaxed, t) == ("clean", ["policy_blocked"])


# -- evaluations and guardrails -----------------------------------------------------------------


def ev_run(t: Trace, start: int, **a: Any) -> bytes:
    return t.span(APP, "eval.run", t.root, start, 30, attributes=a)


async def test_evaluation_spans_their_scores_thresholds_and_verdicts():
    failed, passed, verdict_only = Trace(), Trace(), Trace()
    for t in (failed, passed, verdict_only):
        guide_llm(t)
    ev_run(failed, 9000, **{"eval.type": "faithfulness", "eval.score.faithfulness": 0.4,
                            "eval.threshold": 0.7})  # fmt: skip
    ev_run(failed, 9100, **{"evaluator_type": "relevance", "eval.score.relevance": 0.9,
                            "eval.threshold.relevance": 0.8})  # fmt: skip
    ev_run(passed, 9000, **{"evaluator_type": "relevance", "eval.score.relevance": 0.55,
                            "eval.threshold.relevance": 0.5, "eval.passed": True})  # fmt: skip
    # a score below a threshold that the explicit verdict overrules (a lower-is-better metric)
    ev_run(passed, 9100, **{"eval.type": "toxicity", "eval.score": 0.05,
                            "eval.threshold": 0.2, "eval.passed": "true"})  # fmt: skip
    ev_run(verdict_only, 9000, **{"eval.type": "format", "eval.result": "FAIL: not JSON"})
    roots = await classified(failed, passed, verdict_only)

    def summary(t: Trace) -> tuple[Any, ...]:
        a = roots[t.tid]
        return tuple(
            a.get(f"sieve.trace.eval.{k}") for k in ("count", "failed", "min_score")
        ) + verdict(roots, t)

    assert summary(failed) == (2, 1, 0.4, "corrupted", ["eval_failed"])
    assert summary(passed) == (2, 0, 0.05, "clean", [])
    assert summary(verdict_only) == (1, 1, None, "corrupted", ["eval_failed"])
    relaxed = await classified(failed, reason_classes={"eval_failed": "noisy"})
    assert verdict(relaxed, failed) == ("noisy", ["eval_failed"])


async def test_openinference_evaluator_and_guardrail_and_otel_evaluation_events():
    t = Trace()
    guide_llm(t, events=[("gen_ai.evaluation.result", 450, {
        "gen_ai.evaluation.name": "relevance",
        "gen_ai.evaluation.score.value": 0.3,
        "gen_ai.evaluation.score.label": "fail",
    })])  # fmt: skip
    oi = "openinference.instrumentation.phoenix"
    t.span(oi, "evaluate hallucination", t.root, 9000, 30,
           attributes={"openinference.span.kind": "EVALUATOR", "output.value": "pass"})  # fmt: skip
    t.span(oi, "input guard", t.root, 50, 10,
           attributes={"openinference.span.kind": "GUARDRAIL", "output.value": "blocked"})  # fmt: skip
    ok = Trace()
    guide_llm(ok)
    ok.span(oi, "input guard", ok.root, 50, 10,
            attributes={"openinference.span.kind": "GUARDRAIL", "output.value": "allowed"})  # fmt: skip
    ok.span(APP, "guardrail.check", ok.root, 60, 10,
            attributes={"guardrail.blocked": False, "guardrail.name": "pii"})  # fmt: skip
    roots = await classified(t, ok)
    assert verdict(roots, t) == ("corrupted", ["policy_blocked", "eval_failed"])
    a = roots[t.tid]
    assert (a["sieve.trace.eval.count"], a["sieve.trace.eval.failed"]) == (2, 1)
    assert a["sieve.trace.eval.min_score"] == 0.3
    assert verdict(roots, ok) == ("clean", [])
    assert "sieve.trace.eval.count" not in roots[ok.tid]


async def test_a_summary_an_earlier_pass_wrote_is_replaced():
    t = Trace(**{"sieve.trace.eval.count": 5, "sieve.trace.eval.min_score": 0.1})
    guide_llm(t)
    a = (await classified(t))[t.tid]
    assert "sieve.trace.eval.count" not in a and "sieve.trace.eval.min_score" not in a
    assert a["sieve.trace.class"] == "clean"


# -- governance ---------------------------------------------------------------------------------


async def test_governance_events_are_counted_and_leave_the_class_alone():
    t = Trace()
    t.by_scope[APP][0].events.add(name="key_rotated", time_unix_nano=T0 + MS)
    guide_llm(t, events=[("quota_exceeded", 110, {"quota": "tpm"}), ("quota_exceeded", 120, {})])
    guide_llm(t, 600, events=[("quota_exceeded=false", 610, {})])
    tel = Telemetry()
    roots = await classified(t, tel=tel)
    assert verdict(roots, t) == ("clean", [])
    value = tel.registry.get_sample_value
    labels = {"processor": "test", "pipeline": "traces"}
    name = "tracesieve_cleanliness_governance_events_total"
    assert value(name, {**labels, "event": "quota_exceeded"}) == 2
    assert value(name, {**labels, "event": "key_rotated"}) == 1


# -- one call, several spans ----------------------------------------------------------------------


async def test_an_instrumentation_span_beside_another_is_one_call_with_both_evidences():
    """A gateway library's span (the requests, with a retry) beside an instrumentation's span
    of the same call (the model that answered): one logical call, its retry, the model
    served, counted once."""
    t = Trace("invoke_workflow research", **{"task.class": "research"})
    oi = t.span("openinference.instrumentation.litellm", "completion", t.root, 100, 500,
                attributes={"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
                            "llm.invocation_parameters": '{"model": "gpt-4o"}'})  # fmt: skip
    inner = t.span("litellm", "litellm_request", t.root, 110, 480, kind=CLIENT,
                   attributes={"gen_ai.request.model": "gpt-4o", "gen_ai.system": "openai"})  # fmt: skip
    t.http(inner, "api.openai.com", 500, 120, 100)
    t.http(inner, "api.openai.com", 200, 300, 200, **{"http.request.resend_count": 1})
    tel = Telemetry()
    got = await enriched(t, tel=tel)
    a = got[oi]
    assert chain_of(a) == (["openai/gpt-4o-mini:error:500", "openai/gpt-4o-mini:ok"], 2, 1, False)
    assert (a["sieve.model.requested"], a["sieve.model.served"]) == ("gpt-4o", "gpt-4o-mini")
    assert a["sieve.provider.evidence"] == "http_host" and a["sieve.provider.mismatch"] is True
    assert "sieve.fallback.chain" not in got[inner]  # part of the one call
    calls = tel.registry.get_sample_value(
        "tracesieve_genai_llm_calls_total",
        {"processor": "provider_reconciliation", "provider": "openai", "model": "gpt-4o-mini"},
    )
    assert calls == 1
    idx = index_for(Traces(_request(t)))
    idx.build_chains()
    assert [r.name for r in idx.calls if r.logical] == ["completion"]
    assert verdict(await classified(t), t) == ("noisy", ["llm_retry", "provider_mismatch"])


async def test_two_instrumentations_nested_count_one_call_and_one_cache_hit():
    """OTel GenAI's span around OpenInference's span of the same call (both instrumentations
    on one SDK): each call counted once, a replayed answer one hit."""
    t = Trace("invoke_workflow research", **{"task.class": "research"})
    spans = []
    for i, rid in enumerate(("chatcmpl-1", "chatcmpl-1")):
        outer = t.span("opentelemetry.instrumentation.openai_v2", "chat gpt-4o", t.root,
                       100 + 1000 * i, 500, kind=CLIENT,
                       attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                                   "gen_ai.provider.name": "openai", "gen_ai.response.id": rid,
                                   "gen_ai.response.model": "gpt-4o-2024-08-06"})  # fmt: skip
        inner = t.span("openinference.instrumentation.openai", "ChatCompletion", outer,
                       110 + 1000 * i, 480,
                       attributes={"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o",
                                   "output.value": f'{{"id": "{rid}"}}'})  # fmt: skip
        if i == 0:
            t.http(inner, "api.openai.com", 200, 150, 300)
        spans.append((outer, inner))
    tel = Telemetry()
    got = await enriched(t, tel=tel)
    (first, _), (replay, replay_inner) = spans
    assert got[replay]["sieve.cache.hit"] is True and got[replay_inner]["sieve.cache.hit"] is True
    assert got[first]["sieve.cache.hit"] is False
    value = tel.registry.get_sample_value
    hits = value("tracesieve_genai_cache_hits_total",
                 {"processor": "cache_tagging", "type": "exact"})  # fmt: skip
    assert hits == 1
    calls = value(
        "tracesieve_genai_llm_calls_total",
        {"processor": "provider_reconciliation", "provider": "openai", "model": "gpt-4o"},
    )
    assert calls == 2


async def test_a_gateway_span_beside_the_sdk_span_is_part_of_its_call():
    t = Trace("invoke_workflow research", **{"task.class": "research"})
    sdk = t.span("opentelemetry.instrumentation.openai_v2", "chat gpt-4o", t.root, 100, 600,
                 kind=CLIENT, attributes={"gen_ai.request.model": "gpt-4o",
                                          "gen_ai.provider.name": "openai"})  # fmt: skip
    gw = t.span("litellm", "Received Proxy Server Request", t.root, 120, 560, kind=SERVER,
                attributes={"hidden_params": '{"litellm_model_name": "gpt-4o-mini", '
                            '"additional_headers": {"x-litellm-attempted-retries": 1}}'})  # fmt: skip
    got = await enriched(t)
    a = got[sdk]
    assert a["sieve.provider.evidence"] == "gateway" and a["sieve.model.served"] == "gpt-4o-mini"
    assert a["sieve.attempt.count"] == 2 and a["sieve.retry.count"] == 1
    assert "sieve.attempt.count" not in got[gw]


# -- a gateway's cache plugin answered -------------------------------------------------------------


async def test_a_request_its_cache_plugin_answered_is_a_hit_without_a_marker():
    def app_call(t: Trace, answered: bool, *, failed: bool = False, named: str = "http.request"):
        call = t.span(APP, "chat gpt-4o", t.root, 100, 500, kind=CLIENT,
                      attributes={"gen_ai.request.model": "gpt-4o",
                                  "gen_ai.provider.name": "openai"})  # fmt: skip
        req = t.http(call, "bifrost.internal", 500 if failed else 200, 110, 480)
        gw = t.span("bifrost", named, req, 120, 460, kind=SERVER, error=failed)
        t.span("bifrost", "plugin.semantic_cache.prehook", gw, 125, 10)
        if not answered:
            t.span("bifrost", "llm.call", gw, 140, 400, kind=CLIENT,
                   attributes={"gen_ai.provider.name": "openai",
                               "gen_ai.request.model": "gpt-4o"})  # fmt: skip
        return call, gw

    hit, miss, by_path, failed = Trace(), Trace(), Trace(), Trace()
    hit_call, hit_gw = app_call(hit, True)
    miss_call, _ = app_call(miss, False)
    path_call, _ = app_call(by_path, True, named="/v1/chat/completions")
    failed_call, _ = app_call(failed, True, failed=True)
    got = await enriched(hit, miss, by_path, failed)
    for sid in (hit_call, hit_gw, path_call):
        a = got[sid]
        assert (a["sieve.cache.hit"], a["sieve.cache.type"], a["sieve.cache.evidence"]) == (
            True,
            "semantic",
            "no_provider_call",
        )
    assert got[miss_call]["sieve.cache.hit"] is False
    assert got[failed_call]["sieve.cache.hit"] is False


# -- the generator's agent_guide convention through cleanliness -------------------------------


def test_generator_guide_traces_classified_with_their_summaries(tmp_path):
    from benchmarks.accuracy import classify
    from benchmarks.generator import Generator, write_tool_schemas

    write_tool_schemas(str(tmp_path))
    g = Generator(5, warmup=0)
    cases = [[], ["eval_failed"], ["policy_blocked"], ["governance"], ["fallback", "eval_failed"]]
    made = [g.trace("agent_guide", faults) for faults in cases for _ in range(4)]
    got, _, evals = classify(made, {"tool_schemas": str(tmp_path)})
    seen = set()
    for t in made:
        cls, reasons = got[t.trace_id]
        assert {"class": cls, "reasons": reasons} == t.truth["expected"], t.truth["faults"]
        assert evals[t.trace_id] == t.truth["evals"]
        seen.add(cls)
    assert seen == {"clean", "noisy", "corrupted"}


async def test_generator_twin_shapes_are_one_call_each():
    """agent_guide traces whose requests sit under LiteLLM's span beside the guide's span:
    each call counted once, its retries and fallbacks on the guide's span as the truth
    says."""
    from benchmarks.generator import Generator, batches
    from tests.processors.genai.test_generator_truth import check

    g = Generator(21, warmup=0)
    made = []
    while len(made) < 6:
        t = g.trace("agent_guide", [("llm_retry", "fallback", "mismatch")[len(made) % 3]])
        names = {s.name for rs in t.resource_spans for ss in rs.scope_spans for s in ss.spans}
        if "litellm_request" in names:
            made.append(t)
    req, truths = next(batches(made, per_batch=10))
    tel = Telemetry()
    sink = Sink()
    nxt: Any = sink
    for f in (fallback_chain.factory, cache_tagging.factory, provider_reconciliation.factory):
        nxt = f.create(settings(id=f.type, telemetry=tel), f.config_type(), nxt)
    await nxt.consume_traces(Traces(req))
    (out,) = sink.batches
    check(out, truths)
    calls = sum(len(t["llm_calls"]) for t in truths)
    total = sum(
        s.value
        for m in tel.registry.collect()
        if m.name == "tracesieve_genai_llm_calls"
        for s in m.samples
        if s.name.endswith("_total")
    )
    assert total == calls
    for _, _, s in out.spans():
        if s.name == "litellm_request":
            assert "sieve.attempt.count" not in attrs(s)
