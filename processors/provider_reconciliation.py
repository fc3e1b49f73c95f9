"""`provider_reconciliation` processor: who really served each LLM call.

On every LLM call span (and gateway span standing for one call) it writes
`sieve.provider.requested`, `sieve.model.requested`, `sieve.provider.served`,
`sieve.model.served` (models normalised; a field is left out when unknown),
`sieve.provider.evidence` (`gateway`, `http_host`, `response_model`, `span_attribute`,
`model_family`) and `sieve.provider.mismatch` (bool). Evidence order and rules: README,
"GenAI enrichment". Source attributes are never changed.
"""

from __future__ import annotations

from typing import Any

from pipeline.component import ProcessorFactory, Settings, TracesConsumer
from pipeline.consumers import ProcessorHelper
from pipeline.pdata import Traces
from processors.genai import SpanRecord, index_for, no_gc
from processors.genai.config import EnrichmentConfig
from processors.genai.write import Encoder, attr_bool, attr_str


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


def _encode(rec: SpanRecord) -> bytes:
    out = b""
    for key, value in (
        ("sieve.provider.requested", rec.req_provider),
        ("sieve.model.requested", rec.req_model_n),
        ("sieve.provider.served", rec.served_provider),
        ("sieve.model.served", rec.served_model),
        ("sieve.provider.evidence", rec.evidence),
    ):
        if value:
            out += attr_str(key, value)
    return out + attr_bool("sieve.provider.mismatch", rec.mismatch)


def create(
    settings: Settings, cfg: ProviderReconciliationConfig, next_consumer: TracesConsumer
) -> ProcessorHelper:
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
        idx = index_for(traces, cfg)
        if not idx.calls:
            return traces
        served, mismatches = idx.served_counts()
        raw = idx.raw
        patch = traces.patch
        for rec in idx.calls:
            drop = None
            if rec.enriched and cfg.overwrite:  # what an earlier tracesieve wrote goes
                drop = KEYS
            elif rec.enriched:
                continue  # an earlier tracesieve wrote these already
            k = (
                rec.req_provider,
                rec.req_model_n,
                rec.served_provider,
                rec.served_model,
                rec.evidence,
                rec.mismatch,
            )
            data = enc.get(k)
            if data is None:
                data = enc.put(k, _encode(rec))
            patch(raw, rec.b0, data, drop)
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
