"""Generator traces of every convention and fault, enriched by the three processors, checked
against the ground truth recorded beside each trace."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from benchmarks.generator import (
    CONVENTIONS,
    FRAMEWORK_CONVENTIONS,
    FaultRates,
    GeneratedTrace,
    Generator,
    batches,
)
from pipeline.pdata import Traces
from pipeline.testing import attrs
from processors.genai import index_for
from tests.processors.genai.helpers import enrich

GENAI_REASONS = ("fallback", "llm_retry", "tool_retry", "cache_hit", "provider_mismatch")
LLM_FAULTS = ("fallback", "llm_retry", "cache_hit", "mismatch")
TOOL_FAULTS = ("tool_retry", "schema_invalid", "swallowed_error")


def spans_by_id(traces: Traces) -> dict[str, Span]:
    return {s.span_id.hex(): s for _, _, s in traces.spans()}


def check(traces: Traces, truths: list[dict[str, Any]]) -> None:
    spans = spans_by_id(traces)
    facts = index_for(traces).facts()
    for t in truths:
        where = f"{t['convention']}/{t['stack']} faults={t['faults']}"
        for c in t["llm_calls"]:
            a = attrs(spans[c["span_id"]])
            got = {
                "requested": f"{a.get('sieve.provider.requested')}/{a.get('sieve.model.requested')}",
                "served": f"{a.get('sieve.provider.served')}/{a.get('sieve.model.served')}",
                "evidence": a.get("sieve.provider.evidence"),
                "mismatch": a.get("sieve.provider.mismatch"),
                "cache_hit": a.get("sieve.cache.hit"),
                "cache_type": a.get("sieve.cache.type"),
                "cache_evidence": a.get("sieve.cache.evidence"),
                "attempts": a.get("sieve.attempt.count"),
                "retries": a.get("sieve.retry.count"),
                "fallback": a.get("sieve.fallback.fired"),
                "chain": a.get("sieve.fallback.chain"),
            }
            want = {k: c[k] for k in got}
            assert got == want, f"{where} {c['step']} call"
        for tr in t["tool_retries"]:
            assert attrs(spans[tr["span_id"]])["sieve.retry.count"] == tr["retries"], where
        f = facts[bytes.fromhex(t["trace_id"])]
        want_reasons = [r for r in t["expected"]["reasons"] if r in GENAI_REASONS]
        assert f.reasons() == want_reasons, where
        assert sorted(r.span_id.hex() for r in f.unrecovered) == sorted(t["unrecovered"]), where
        assert f.failed_run == (
            "root_failure" in t["faults"] and t["convention"] in FRAMEWORK_CONVENTIONS
        ), where
        assert sorted(f.providers) == t["served"]["providers"], where
        assert sorted(f.models) == t["served"]["models"], where


def one(g: Generator, convention: str, faults: list[str]) -> GeneratedTrace:
    return g.trace(convention, faults=faults)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("fault", [None, *LLM_FAULTS, *TOOL_FAULTS, "slow", "root_failure"])
async def test_each_convention_and_fault(convention, fault):
    g = Generator(seed=zlib.crc32(f"{convention}/{fault}".encode()))
    gen = [one(g, convention, [fault] if fault else []) for _ in range(3)]
    req, truths = next(batches(gen, per_batch=10))
    if fault in ("fallback", "llm_retry", "cache_hit", "mismatch", "tool_retry"):
        key = {"mismatch": "provider_mismatch"}.get(fault, fault)
        # (a framework without an LLM cache, or whose spans name no served model, drops it)
        assert all(key in t["expected"]["reasons"] for t in truths if fault in t["faults"])
    out = await enrich(Traces(req))
    check(out, truths)


async def test_mixed_faults_in_shared_batches():
    g = Generator(seed=11, rates=FaultRates.parse("all=0.2"), warmup=0)
    seen: set[str] = set()
    for req, truths in batches(g.traces(160), per_batch=20):
        for t in truths:
            seen.update(t["faults"])
        check(await enrich(Traces(req)), truths)
    assert seen == {
        "fallback",
        "llm_retry",
        "tool_retry",
        "cache_hit",
        "mismatch",
        "schema_invalid",
        "swallowed_error",
        "slow",
        "root_failure",
    }


async def test_source_attributes_are_never_changed():
    g = Generator(seed=3, rates=FaultRates.parse("all=0.3"), warmup=0)
    req, _ = next(batches(g.traces(20), per_batch=20))
    before = {s.span_id: attrs(s) for _, _, s in Traces(req).spans()}
    out = await enrich(Traces(req))
    written = 0
    for _, _, s in out.spans():
        after = attrs(s)
        new = {k: v for k, v in after.items() if k not in before[s.span_id]}
        assert all(k.startswith("sieve.") for k in new)
        assert {k: after[k] for k in before[s.span_id]} == before[s.span_id]
        assert len(s.attributes) == len(after)  # no key written twice
        written += bool(new)
    assert written > 0


async def test_a_second_pass_writes_nothing_more():
    g = Generator(seed=4, rates=FaultRates.parse("all=0.3"), warmup=0)
    req, _ = next(batches(g.traces(10), per_batch=10))
    once = await enrich(Traces(req))
    twice = await enrich(Traces(raw=once.to_bytes()))
    a = {s.span_id: len(s.attributes) for _, _, s in once.spans()}
    b = {s.span_id: len(s.attributes) for _, _, s in twice.spans()}
    llm_retried_tools = {k for k in a if a[k] != b[k]}
    assert not llm_retried_tools


async def test_overwrite_replaces_what_a_partial_view_wrote():
    """A sidecar enriches each request it gets, seeing part of a trace; after
    groupbytrace a gateway with `overwrite: true` replaces that with what the whole trace
    shows (without it, the partial answers stay)."""
    import random

    g = Generator(seed=21, rates=FaultRates.parse("all=0.15,slow=0"), warmup=0)
    traces = list(g.traces(60))
    req, truths = next(batches(traces, per_batch=60))
    spans = sorted(
        ((rs, ss, s) for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans),
        key=lambda x: x[2].end_time_unix_nano,
    )
    r = random.Random(1)
    partial = type(req)()
    i = 0
    while i < len(spans):  # SDK-like export batches: cut anywhere
        n = r.randint(1, 40)
        chunk, i = spans[i : i + n], i + n
        part = type(req)()
        for rs, ss, s in chunk:
            prs = part.resource_spans.add()
            prs.resource.CopyFrom(rs.resource)
            pss = prs.scope_spans.add()
            pss.scope.CopyFrom(ss.scope)
            pss.spans.add().CopyFrom(s)
        partial.resource_spans.extend((await enrich(Traces(part))).request.resource_spans)
    over = {
        f: {"overwrite": True}
        for f in ("provider_reconciliation", "cache_tagging", "fallback_chain")
    }
    out = await enrich(Traces(raw=Traces(partial).to_bytes()), over)
    check(out, truths)
    for _, _, s in out.spans():
        assert len(s.attributes) == len(attrs(s)), "a key written twice"
    kept = await enrich(Traces(raw=Traces(partial).to_bytes()))
    with pytest.raises(AssertionError):
        check(kept, truths)
    for _, _, s in kept.spans():  # keeping writes nothing on what was enriched
        assert len(s.attributes) == len(attrs(s)), "a key written twice"
