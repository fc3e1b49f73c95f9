"""Run the three enrichment processors over a batch, as a pipeline would."""

from __future__ import annotations

from typing import Any

from pipeline.pdata import Traces
from pipeline.testing import Sink, settings
from processors import cache_tagging, fallback_chain, provider_reconciliation

FACTORIES = (provider_reconciliation.factory, cache_tagging.factory, fallback_chain.factory)


def chain(configs: dict[str, dict[str, Any]] | None = None, sink: Sink | None = None) -> Any:
    """provider_reconciliation -> cache_tagging -> fallback_chain -> sink."""
    nxt: Any = sink or Sink()
    for f in reversed(FACTORIES):
        raw = (configs or {}).get(f.type, {})
        import msgspec

        cfg = msgspec.convert(raw, f.config_type)
        nxt = f.create(settings(id=f.type), cfg, nxt)
    return nxt


async def enrich(traces: Traces, configs: dict[str, dict[str, Any]] | None = None) -> Traces:
    sink = Sink()
    await chain(configs, sink).consume_traces(traces)
    assert len(sink.batches) == 1
    return sink.batches[0]
