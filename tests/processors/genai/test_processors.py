"""The enrichment processors on small hand-made batches: each rule, config mappings, sidecar
(partial) input, and the shared index."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.configtypes import decode
from pipeline.pdata import Traces
from pipeline.registry import REGISTRY
from pipeline.testing import attrs, make_span
from processors.genai import GenAIConfig, index_for
from processors.genai.write import attr_str
from tests.processors.genai.helpers import enrich

TID = b"\x01" * 16
_ids = itertools.count(1)
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
CLIENT = Span.SPAN_KIND_CLIENT
ERROR = 2


def sid() -> bytes:
    return next(_ids).to_bytes(8, "big")


def span(name: str, parent: bytes = b"", start: int = 0, dur: int = 100, **kw: Any) -> Span:
    return make_span(
        name,
        kw.pop("trace_id", TID),
        kw.pop("span_id", None) or sid(),
        parent,
        start=T0 + start * MS,
        duration_ns=dur * MS,
        **kw,
    )


def batch(*groups: tuple[str, list[Span]]) -> Traces:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for scope, spans in groups:
        ss = rs.scope_spans.add()
        ss.scope.name = scope
        ss.spans.extend(spans)
    return Traces(req)


def http(parent: bytes, url: str, status: int, start: int, dur: int = 50, **extra: Any) -> Span:
    return span(
        "POST",
        parent,
        start,
        dur,
        kind=CLIENT,
        status=ERROR if status >= 400 else 0,
        attributes={
            "http.request.method": "POST",
            "url.full": url,
            "http.response.status_code": status,
            **extra,
        },
    )


def chat(
    parent: bytes, model: str, start: int = 0, dur: int = 100, status: int = 0, **a: Any
) -> Span:
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model, **a}
    return span(
        f"chat {model}", parent, start, dur, kind=CLIENT, status=status, attributes=attributes
    )


def by_name(t: Traces) -> dict[str, dict[str, Any]]:
    return {s.name: attrs(s) for _, _, s in t.spans()}


async def test_host_decides_over_the_span_claim():
    root = span("task")
    call = chat(root.span_id, "llama-3.1-70b-versatile", **{"gen_ai.provider.name": "openai"})
    h = http(call.span_id, "https://api.groq.com/openai/v1/chat/completions", 200, 10)
    out = await enrich(
        batch(
            ("app", [root]),
            ("opentelemetry.util.genai.handler", [call]),
            ("opentelemetry.instrumentation.httpx", [h]),
        )
    )
    a = by_name(out)[call.name]
    assert a["sieve.provider.requested"] == "openai"
    assert a["sieve.provider.served"] == "groq"
    assert a["sieve.provider.evidence"] == "http_host"
    assert a["sieve.provider.mismatch"] is True


async def test_dated_snapshots_bedrock_ids_and_vendor_prefixes_are_the_same_model():
    root = span("task")
    calls = [
        chat(
            root.span_id,
            "gpt-4o",
            0,
            **{"gen_ai.provider.name": "openai", "gen_ai.response.model": "gpt-4o-2024-08-06"},
        ),
        chat(
            root.span_id,
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            200,
            **{
                "gen_ai.system": "aws.bedrock",
                "gen_ai.response.model": "anthropic.claude-3-5-sonnet-20241022-v2:0",
            },
        ),
        chat(
            root.span_id,
            "anthropic/claude-3.5-sonnet",
            400,
            **{
                "gen_ai.system": "openrouter",
                "gen_ai.response.model": "claude-3-5-sonnet@20241022",
            },
        ),
    ]
    out = await enrich(batch(("app", [root, *calls])))
    for c in calls:
        a = by_name(out)[c.name]
        assert a["sieve.provider.mismatch"] is False, c.name
    a = by_name(out)[calls[1].name]
    assert a["sieve.model.served"] == "claude-3-5-sonnet"
    assert a["sieve.provider.served"] == "aws.bedrock"


async def test_served_model_differs():
    root = span("task")
    c = chat(
        root.span_id,
        "gpt-4o",
        **{"gen_ai.provider.name": "openai", "gen_ai.response.model": "gpt-4o-mini-2024-07-18"},
    )
    a = by_name(await enrich(batch(("app", [root, c]))))[c.name]
    assert a["sieve.model.served"] == "gpt-4o-mini"
    assert a["sieve.provider.evidence"] == "response_model"
    assert a["sieve.provider.mismatch"] is True


async def test_evidence_order_without_responses():
    root = span("task")
    claim = chat(root.span_id, "gpt-4o", 0, **{"gen_ai.provider.name": "azure.ai.openai"})
    family = chat(root.span_id, "claude-3-5-haiku", 200)
    nothing = chat(root.span_id, "my-alias", 400)
    got = by_name(await enrich(batch(("app", [root, claim, family, nothing]))))
    assert got[claim.name]["sieve.provider.evidence"] == "span_attribute"
    assert got[claim.name]["sieve.provider.served"] == "azure.ai.openai"
    assert got[family.name]["sieve.provider.evidence"] == "model_family"
    assert got[family.name]["sieve.provider.served"] == "anthropic"
    assert "sieve.provider.served" not in got[nothing.name]
    assert got[nothing.name]["sieve.provider.mismatch"] is False


async def test_portkey_headers_on_the_http_child():
    root = span("task")
    c = chat(
        root.span_id,
        "gpt-4o",
        **{"gen_ai.provider.name": "openai", "gen_ai.response.model": "claude-3-5-sonnet-20241022"},
    )
    h = http(
        c.span_id,
        "https://api.portkey.ai/v1/chat/completions",
        200,
        5,
        **{
            "http.response.header.x-portkey-provider": ["anthropic"],
            "http.response.header.x-portkey-last-used-option-index": ["1"],
            "http.response.header.x-portkey-retry-attempt-count": ["2"],
            "http.response.header.x-portkey-cache-status": ["MISS"],
        },
    )
    a = by_name(
        await enrich(batch(("app", [root, c]), ("opentelemetry.instrumentation.httpx", [h])))
    )[c.name]
    assert a["sieve.provider.served"] == "anthropic"
    assert a["sieve.provider.evidence"] == "gateway"
    assert a["sieve.provider.mismatch"] is True
    assert a["sieve.fallback.fired"] is True
    assert a["sieve.retry.count"] == 2
    assert a["sieve.attempt.count"] == 4
    assert a["sieve.fallback.chain"][0] == "openai/gpt-4o:error:unknown"
    assert a["sieve.fallback.chain"][-1] == "anthropic/claude-3-5-sonnet:ok"
    assert a["sieve.cache.hit"] is False


async def test_sidecar_sees_only_the_final_gateway_attempt():
    # a Bifrost fallback span arrives alone: its markers still tell the story
    s = span(
        "fallback",
        b"\x09" * 8,
        attributes={
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-3-5-sonnet-20241022",
            "gen_ai.response.model": "claude-3-5-sonnet-20241022",
            "bifrost.retries": 0,
            "bifrost.fallback_index": 1,
        },
    )
    a = by_name(await enrich(batch(("bifrost", [s]))))["fallback"]
    assert a["sieve.fallback.fired"] is True
    assert a["sieve.retry.count"] == 0
    assert a["sieve.fallback.chain"] == [
        "unknown/unknown:error:unknown",
        "anthropic/claude-3-5-sonnet:ok",
    ]
    assert a["sieve.provider.evidence"] == "gateway"


async def test_anthropic_sdk_resend_count_means_retries():
    root = span("task")
    c = span(
        "anthropic.messages.create",
        root.span_id,
        kind=CLIENT,
        attributes={
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-6",
            "gen_ai.response.model": "claude-sonnet-4-6",
            "http.request.resend_count": 2,
            "server.address": "api.anthropic.com",
        },
    )
    a = by_name(await enrich(batch(("app", [root]), ("com.anthropic.sdk.python", [c]))))[c.name]
    assert a["sieve.retry.count"] == 2
    assert a["sieve.attempt.count"] == 3
    assert a["sieve.provider.evidence"] == "http_host"


async def test_cache_markers_and_structure():
    root = span("task")
    lite = span(
        "litellm_request",
        root.span_id,
        0,
        attributes={
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            "litellm.cost.total": 0.0,
        },
    )
    prompt_cached = chat(
        root.span_id,
        "gpt-4o",
        200,
        **{
            "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.cache_read.input_tokens": 80,
            "gen_ai.response.id": "r-1",
        },
    )
    gw = span("http.request", root.span_id, 400, kind=Span.SPAN_KIND_SERVER)
    miss = chat(
        root.span_id,
        "gpt-4o",
        600,
        **{"gen_ai.response.id": "r-1", "x-portkey-cache-status": "MISS"},
    )
    out = await enrich(
        batch(("litellm", [lite]), ("app", [root, prompt_cached, miss]), ("bifrost", [gw]))
    )
    got = by_name(out)
    assert got["litellm_request"]["sieve.cache.hit"] is True
    assert got["litellm_request"]["sieve.cache.evidence"] == "zero_cost"
    assert got[prompt_cached.name]["sieve.cache.hit"] is False  # provider prompt caching
    assert got["http.request"]["sieve.cache.evidence"] == "no_provider_call"
    assert miss.name == prompt_cached.name
    spans = {s.span_id: attrs(s) for _, _, s in out.spans()}
    assert spans[miss.span_id]["sieve.cache.hit"] is False  # explicit miss beats a replayed id
    off = await enrich(batch(("litellm", [lite])), {"cache_tagging": {"zero_cost": False}})
    assert by_name(off)["litellm_request"]["sieve.cache.hit"] is False


async def test_response_ids_remembered_across_batches():
    from pipeline.testing import Sink
    from tests.processors.genai.helpers import chain

    sink = Sink()
    pipe = chain({}, sink)
    first = chat(b"", "gpt-4o", 0, **{"gen_ai.response.id": "chatcmpl-42"})
    later = chat(
        b"", "gpt-4o", 5_000, trace_id=b"\x02" * 16, **{"gen_ai.response.id": "chatcmpl-42"}
    )
    await pipe.consume_traces(batch(("app", [first])))
    await pipe.consume_traces(batch(("app", [later])))
    a = attrs(next(s for _, _, s in sink.batches[1].spans()))
    assert a["sieve.cache.hit"] is True and a["sieve.cache.evidence"] == "response_id_seen"
    # the same batch delivered again is not a hit of itself
    await pipe.consume_traces(batch(("app", [first])))
    assert attrs(next(s for _, _, s in sink.batches[2].spans()))["sieve.cache.hit"] is False


async def test_tool_retry_only_for_the_same_tool_after_an_error():
    root = span("invoke_agent worker")
    t1 = span("execute_tool search", root.span_id, 0, 10, status=ERROR)
    t2 = span("execute_tool search", root.span_id, 20, 10)
    t3 = span("execute_tool fetch", root.span_id, 40, 10, status=ERROR)
    t4 = span("execute_tool search", root.span_id, 60, 10)
    out = await enrich(batch(("app", [root, t1, t2, t3, t4])))
    spans = {s.span_id: attrs(s) for _, _, s in out.spans()}
    assert spans[t2.span_id]["sieve.retry.count"] == 1
    assert "sieve.retry.count" not in spans[t4.span_id]
    facts = index_for(out).facts()[TID]
    assert facts.tool_retry and [r.span_id for r in facts.unrecovered] == [t3.span_id]


async def test_parallel_calls_are_not_a_chain_and_double_spans_are_one_call():
    root = span("step")
    a = chat(root.span_id, "gpt-4o", 0, 100, status=ERROR, **{"gen_ai.provider.name": "openai"})
    b = chat(root.span_id, "gpt-4o-mini", 50, 100, **{"gen_ai.provider.name": "openai"})
    tl = span(
        "anthropic.chat",
        root.span_id,
        300,
        100,
        kind=CLIENT,
        attributes={
            "gen_ai.system": "Anthropic",
            "gen_ai.request.model": "claude-3-5-haiku-20241022",
            "gen_ai.response.id": "msg_1",
            "gen_ai.response.model": "claude-3-5-haiku-20241022",
        },
    )
    sdk = span(
        "anthropic.messages.create",
        root.span_id,
        305,
        90,
        kind=CLIENT,
        attributes={
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-3-5-haiku-20241022",
            "gen_ai.response.id": "msg_1",
            "gen_ai.response.model": "claude-3-5-haiku-20241022",
        },
    )
    out = await enrich(batch(("app", [root, a, b, tl]), ("com.anthropic.sdk.python", [sdk])))
    s = {x.span_id: attrs(x) for _, _, x in out.spans()}
    assert s[a.span_id]["sieve.fallback.chain"] == ["openai/gpt-4o:error:unknown"]
    assert s[b.span_id]["sieve.attempt.count"] == 1
    assert s[tl.span_id]["sieve.attempt.count"] == 1
    assert "sieve.attempt.count" not in s[sdk.span_id]  # the same call, traced twice
    assert s[sdk.span_id]["sieve.cache.hit"] is False  # same response id, not a replay
    facts = index_for(out).facts()[TID]
    assert not facts.fallback and not facts.llm_retry


async def test_config_mappings():
    cfg = {
        "hosts": {".llm.internal": "mistral", "10.0.0.7:8000": "ollama"},
        "attributes": {
            "served_provider": ["myco.served_by"],
            "cache_hit": ["myco.cache"],
            "request_model": ["myco.model"],
        },
    }
    root = span("task")
    c1 = chat(
        root.span_id,
        "x",
        0,
        **{"myco.model": "mistral-large-2411", "server.address": "eu.llm.internal"},
    )
    c2 = span(
        "generate",
        root.span_id,
        200,
        attributes={
            "gen_ai.operation.name": "chat",
            "myco.model": "qwen2.5-72b",
            "url.full": "http://10.0.0.7:8000/v1",
        },
    )
    c3 = span(
        "llm",
        root.span_id,
        400,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "myco.served_by": "azure",
            "myco.cache": "SEMANTIC HIT",
        },
    )
    conf = {k: cfg for k in ("provider_reconciliation", "cache_tagging", "fallback_chain")}
    got = by_name(await enrich(batch(("app", [root, c1, c2, c3])), conf))
    assert got[c1.name]["sieve.provider.served"] == "mistral_ai"
    assert got[c1.name]["sieve.model.requested"] == "mistral-large"
    assert got["generate"]["sieve.provider.served"] == "ollama"
    assert got["llm"]["sieve.provider.served"] == "azure.ai.openai"
    assert got["llm"]["sieve.provider.evidence"] == "gateway"
    assert got["llm"]["sieve.cache.type"] == "semantic"


async def test_irrelevant_spans_cost_no_record_and_the_index_is_shared():
    root = span("task")
    db = span("SELECT x", root.span_id, attributes={"db.system": "postgresql"})
    srv = span("GET /health", root.span_id, kind=Span.SPAN_KIND_SERVER)
    c = chat(root.span_id, "gpt-4o")
    t = batch(
        ("app", [root, c]),
        ("opentelemetry.instrumentation.sqlalchemy", [db]),
        ("opentelemetry.instrumentation.fastapi", [srv]),
    )
    idx = index_for(t)
    assert [r.name for r in idx.records] == ["task", c.name]
    assert index_for(t) is idx and index_for(t, GenAIConfig()) is idx
    assert index_for(t, GenAIConfig(hosts={"x": "openai"})) is not idx
    t.patch(idx.raw, idx.records[1].b0, attr_str("sieve.x", "1"))
    assert index_for(t) is idx  # pending patches: still valid
    t.to_bytes()
    assert index_for(t) is not idx  # patches spliced in: a new encoding, rebuilt
    idx = index_for(t)
    t.mutable()
    assert index_for(t) is not idx  # the message may change: rebuilt


@pytest.mark.parametrize("kind", ["provider_reconciliation", "cache_tagging", "fallback_chain"])
def test_factories_and_config(kind):
    f = REGISTRY.processors[kind]
    cfg0, errors = decode({}, f.config_type, kind)
    assert errors == [] and cfg0 is not None
    _, errors = decode({"hosts": {"a": 1}, "timout": 3}, f.config_type, kind)
    assert len(errors) == 2
    cfg = msgspec.convert({"hosts": {"a.example": "openai"}}, f.config_type)
    assert cfg.validate() == []
    assert msgspec.convert({"hosts": {"a.example": " "}}, f.config_type).validate()
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"hostz": {}}, f.config_type)


async def test_cloudflare_step_header_marks_a_fallback():
    root = span("task")
    c = chat(root.span_id, "gpt-4o", **{"gen_ai.provider.name": "openai"})
    h = http(
        c.span_id,
        "https://gateway.ai.cloudflare.com/v1/acct/gw/openai",
        200,
        5,
        **{"http.response.header.cf-aig-step": ["1"]},
    )
    got = by_name(
        await enrich(batch(("app", [root, c]), ("opentelemetry.instrumentation.httpx", [h])))
    )
    assert got[c.name]["sieve.fallback.fired"] is True
    assert got[c.name]["sieve.attempt.count"] == 2


# -- agent frameworks' shapes (docs/frameworks.md) --------------------------------------------


async def test_a_tool_run_again_under_another_parent_is_a_retry():
    """LangGraph runs each tool call in a `tools` node of its own: the failed run and the
    later one of the same tool are one call retried; another tool's failure stays."""
    root = span("invoke_agent worker")
    n1, n2, n3 = (span("invoke_agent tools", root.span_id, t, 10) for t in (0, 20, 40))
    t1 = span("execute_tool search", n1.span_id, 1, 5, status=ERROR)
    t2 = span("execute_tool search", n2.span_id, 21, 5)
    t3 = span("execute_tool fetch", n3.span_id, 41, 5, status=ERROR)
    out = await enrich(batch(("app", [root, n1, n2, n3, t1, t2, t3])))
    spans = {s.span_id: attrs(s) for _, _, s in out.spans()}
    assert spans[t2.span_id]["sieve.retry.count"] == 1
    facts = index_for(out).facts()[TID]
    assert facts.tool_retry and [r.span_id for r in facts.unrecovered] == [t3.span_id]


async def test_requests_beside_a_call_are_adopted_by_time():
    """Callback-based instrumentations leave a call's requests beside it (OpenInference
    LangChain: under the app root): the call within which they ran owns them."""
    root = span("invoke_workflow task")
    llm = span(
        "ChatOpenAI",
        root.span_id,
        10,
        100,
        attributes={
            "openinference.span.kind": "LLM",
            "llm.provider": "openai",
            "llm.invocation_parameters": '{"model": "gpt-4o"}',
            "llm.model_name": "gpt-4o-2024-08-06",
        },
    )
    url = "https://api.openai.com/v1/chat/completions"
    h1, h2 = http(root.span_id, url, 500, 20, 10), http(root.span_id, url, 200, 60, 10)
    elsewhere = http(root.span_id, "https://api.search.example/q", 200, 200, 10)
    out = await enrich(
        batch(
            ("app", [root]),
            ("openinference.instrumentation.langchain", [llm]),
            ("opentelemetry.instrumentation.httpx", [h1, h2, elsewhere]),
        )
    )
    a = {s.span_id: attrs(s) for _, _, s in out.spans()}[llm.span_id]
    assert a["sieve.fallback.chain"] == ["openai/gpt-4o:error:500", "openai/gpt-4o:ok"]
    assert a["sieve.retry.count"] == 1 and a["sieve.provider.evidence"] == "http_host"


async def test_a_failed_call_then_a_call_under_another_parent_is_a_fallback():
    """The app catches a failed agent run and runs the agent again on another model."""
    root = span("invoke_workflow task")
    run1 = span("invoke_agent a", root.span_id, 0, 30, status=ERROR)
    run2 = span("invoke_agent a", root.span_id, 40, 60)
    bad = chat(run1.span_id, "gpt-4o", 1, 20, status=ERROR, **{"gen_ai.provider.name": "openai"})
    good = chat(run2.span_id, "claude-sonnet-4-6", 41, 50, **{"gen_ai.provider.name": "anthropic"})
    out = await enrich(batch(("app", [root, run1, run2, bad, good])))
    a = {s.span_id: attrs(s) for _, _, s in out.spans()}[good.span_id]
    assert a["sieve.fallback.chain"] == [
        "openai/gpt-4o:error:unknown",
        "anthropic/claude-sonnet-4-6:ok",
    ]
    facts = index_for(out).facts()[TID]
    assert facts.fallback and not facts.unrecovered
    assert not facts.failed_run  # the failed agent run was recovered


async def test_an_agent_span_in_error_under_an_ok_root_is_a_failed_run():
    root = span("trace")
    agent = span("invoke_agent a", root.span_id, 0, 50, status=ERROR)
    bad = chat(agent.span_id, "gpt-4o", 1, 40, status=ERROR, **{"gen_ai.provider.name": "openai"})
    out = await enrich(batch(("app", [root, agent, bad])))
    facts = index_for(out).facts()[TID]
    assert facts.failed_run and [r.span_id for r in facts.unrecovered] == [bad.span_id]


def _cache_trace(with_http: bool) -> Traces:
    root = span("invoke_workflow task")
    tokens = {"gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3}
    first = chat(root.span_id, "gpt-4o", 0, 50, **{"gen_ai.provider.name": "openai", **tokens})
    again = chat(root.span_id, "gpt-4o", 60, 1, **{"gen_ai.provider.name": "openai", **tokens})
    spans = [http(first.span_id, "https://api.openai.com/v1/chat/completions", 200, 5)]
    return batch(("app", [root, first, again]), ("httpx", spans if with_http else []))


async def test_a_call_that_sent_nothing_is_a_framework_cache_hit():
    out = await enrich(_cache_trace(with_http=True))
    a = [attrs(s) for _, _, s in out.spans() if s.name == "chat gpt-4o"]
    assert [x["sieve.cache.hit"] for x in a] == [False, True]
    assert a[1]["sieve.cache.evidence"] == "no_provider_call"


async def test_without_http_spans_a_framework_cache_hit_is_unknown():
    out = await enrich(_cache_trace(with_http=False))
    a = [attrs(s) for _, _, s in out.spans() if s.name == "chat gpt-4o"]
    assert [x["sieve.cache.hit"] for x in a] == [False, False]
    assert a[1]["sieve.cache.evidence"] == "unknown" and "sieve.cache.evidence" not in a[0]
    assert not index_for(out).facts()[TID].cache_hit
