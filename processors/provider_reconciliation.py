"""`provider_reconciliation` processor: who really served each LLM call.

On every LLM call span (and gateway span standing for one call) it writes
`sieve.provider.requested`, `sieve.model.requested`, `sieve.provider.served`,
`sieve.model.served` (models normalised; a field is left out when unknown),
`sieve.provider.evidence` (`gateway`, `http_host`, `response_model`, `span_attribute`,
`model_family`) and `sieve.provider.mismatch` (bool). Evidence order and rules:
docs/genai.md#provider_reconciliation. Source attributes are never changed.
"""

from __future__ import annotations

from typing import Any

from pipeline.component import ProcessorFactory, Settings, TracesConsumer
from pipeline.pdata import Traces
from pipeline.processorhelper import ProcessorHelper
from processors.genai import index_for, keys_for, no_gc
from processors.genai.config import EnrichmentConfig
from processors.genai.write import Encoder, reconciliation_patches


class ProviderReconciliationConfig(EnrichmentConfig):
    pass


KEYS = frozenset(
    (
        "sieve.provider.requested",
        "sieve.model.requested",
        "sieve.provider.served",
        "sieve.model.served",
        "sieve.provider.evidence",
        "sieve.provider.mismatch",
    )
)


def create(
    settings: Settings, cfg: ProviderReconciliationConfig, next_consumer: TracesConsumer
) -> ProcessorHelper:
    keys = keys_for(cfg)  # made once: index_for would look it up per batch
    enc = Encoder()
    tel = settings.telemetry
    pid = str(settings.id)
    calls_metric = tel.counter(
        "tracesieve_genai_llm_calls",
        "LLM call spans, by the provider and (normalised) model that served them",
        ("processor", "provider", "model"),
    )
    mismatch_metric = tel.counter(
        "tracesieve_genai_provider_mismatches",
        "LLM call spans served by another provider or model than requested",
        ("processor",),
    ).labels(pid)

    by_served: dict[tuple[str, str], Any] = {}  # the metric's child per (provider, model)

    def process(traces: Traces) -> Traces:
        with no_gc():
            return _process(traces)

    def _process(traces: Traces) -> Traces:
        idx = index_for(traces, keys)
        if not idx.calls:
            return traces
        served, mismatches = idx.served_counts()
        traces.patch_all(idx.raw, reconciliation_patches(idx.calls, enc, cfg.overwrite, KEYS))
        for pm, n in served.items():
            child = by_served.get(pm)
            if child is None:
                child = by_served[pm] = calls_metric.labels(
                    pid, pm[0] or "unknown", pm[1] or "unknown"
                )
            child.inc(n)
        if mismatches:
            mismatch_metric.inc(mismatches)
        return traces

    return ProcessorHelper(settings, next_consumer, process, mutates_data=True)


factory = ProcessorFactory(
    type="provider_reconciliation",
    config_type=ProviderReconciliationConfig,
    create=create,
    stability="alpha",
    description="writes who really served each LLM call (sieve.provider.*, sieve.model.*)",
)
