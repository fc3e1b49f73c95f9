"""Every processor under hostile batches. PROCESSOR_CONFIGS is the list to extend: add
`(type, config)` for a new processor and it is fuzzed alone and in the chain of all of
them (in list order), started and shut down like in a pipeline.

Each must either take the batch or refuse it with a `ConsumeError` (retryable or
permanent, which the receiver maps to a status code); what comes out must be valid OTLP
that the next hop can decode. No other exception may escape."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.configtypes import decode
from pipeline.errors import ConsumeError
from pipeline.pdata import Traces
from pipeline.registry import REGISTRY
from pipeline.testing import FakeHost, Sink
from pipeline.testing import settings as component_settings
from tests.fuzz.budget import examples
from tests.fuzz.strategies import KEYS, requests

PROCESSOR_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("memory_limiter", {"check_interval": "1s", "limit_mib": 4096}),
    (
        "attributes",
        {
            "actions": [
                {"key": "gen_ai.input.messages", "action": "delete"},
                {"pattern": "^(input|output)\\.value$", "action": "delete"},
                {"key": "user.id", "action": "hash"},
                {"key": "gen_ai.request.model", "action": "hash"},
                {"key": "sieve.copy", "from_attribute": "gen_ai.system", "action": "upsert"},
                {"key": "env", "value": {"k": [1, "x", None]}, "action": "insert"},
                {
                    "key": "server.address",
                    "pattern": "^(?P<host>[^:]*):?(?P<port>.*)$",
                    "action": "extract",
                },
                {"key": "gen_ai.usage.input_tokens", "action": "convert", "converted_type": "int"},
                {
                    "key": "http.response.status_code",
                    "action": "convert",
                    "converted_type": "string",
                },
                {"key": "error.type", "action": "convert", "converted_type": "double"},
            ],
            "exclude": {
                "match_type": "regexp",
                "span_names": ["^health"],
                "attributes": [{"key": "session.id", "value": "^x"}],
            },
        },
    ),
    (
        "attributes",
        {
            "include": {
                "match_type": "strict",
                "services": ["svc"],
                "span_kinds": ["SPAN_KIND_CLIENT"],
                "attributes": [{"key": k} for k in KEYS[:2]],
            },
            "actions": [{"key": "gen_ai.output.messages", "action": "delete"}],
        },
    ),
    (
        "cleanliness",
        {
            "strict_single_model": True,
            "timing": {"min_samples": 1, "max_ratio": 1.2},
            "reason_classes": {"cache_hit": "clean"},
            "late_cache_size": 4,
        },
    ),
    # batch last: it is asynchronous (flushes on size, timeout and shutdown)
    ("batch", {"timeout": "1ms", "send_batch_size": 5, "send_batch_max_size": 8}),
]


def build(configs: list[tuple[str, dict[str, Any]]]) -> tuple[list[Any], Sink]:
    sink = Sink(mutates_data=True)
    nxt: Any = sink
    chain: list[Any] = []
    for i, (type_, raw) in reversed(list(enumerate(configs))):
        factory = REGISTRY.processors[type_]
        cfg, errs = decode(raw, factory.config_type, f"processors::{type_}/{i}")
        assert not errs, errs
        nxt = factory.create(component_settings("processor", f"{type_}/{i}"), cfg, nxt)
        chain.insert(0, nxt)
    return chain, sink


async def run_batches(configs: list[tuple[str, dict[str, Any]]], batches: list[Traces]) -> None:
    chain, sink = build(configs)
    host = FakeHost()
    for p in reversed(chain):
        await p.start(host)
    sent = 0
    try:
        for t in batches:
            try:
                await chain[0].consume_traces(t)
                sent += t.span_count
            except ConsumeError:
                pass  # refused with a status the receiver can map
    finally:
        for p in chain:
            await p.shutdown()
    assert not host.fatal
    for out in sink.batches:
        again = Traces.decode(out.to_bytes())  # valid OTLP for the next hop
        assert again.span_count == out.span_count
    assert sink.span_count <= sent or any(t == "groupbytrace" for t, _ in configs)


batches = st.lists(
    st.builds(
        lambda r, raw: Traces.decode(r.SerializeToString()) if raw else Traces(r),
        requests(),
        st.booleans(),
    ),
    min_size=1,
    max_size=2,
)


@pytest.mark.parametrize("index", range(len(PROCESSOR_CONFIGS)))
@settings(max_examples=examples(10))
@given(batches=batches)
def test_each_processor(index: int, batches: list[Traces]) -> None:
    asyncio.run(run_batches([PROCESSOR_CONFIGS[index]], batches))


@settings(max_examples=examples(25))
@given(batches=batches)
def test_all_processors_chained(batches: list[Traces]) -> None:
    asyncio.run(run_batches(PROCESSOR_CONFIGS, batches))
