"""`cache_tagging` processor: marks LLM calls answered from a gateway or semantic cache.

On every LLM call span: `sieve.cache.hit` (bool); on hits also `sieve.cache.type`
(`exact`, `semantic`, `unknown`) and `sieve.cache.evidence`. Explicit markers first
(Portkey, Bifrost, LiteLLM, config keys), then structure (a gateway span with no provider
call under it, a response id already seen, cost 0 with tokens > 0). Provider prompt caching
(`gen_ai.usage.cache_read.input_tokens`, ...) is a real generation, never a hit.
"""

from __future__ import annotations

from pipeline.component import ProcessorFactory, Settings, TracesConsumer
from pipeline.configtypes import NonNegInt
from pipeline.pdata import Traces
from pipeline.processorhelper import ProcessorHelper
from processors.genai import ResponseIdMemory, index_for, keys_for, no_gc
from processors.genai.config import EnrichmentConfig
from processors.genai.write import Encoder, attr_bool, cache_patches


class CacheTaggingConfig(EnrichmentConfig):
    # response ids remembered across batches: a later call replaying one is a hit (0: off)
    response_id_memory: NonNegInt = 100_000
    # cost 0 with tokens > 0 (LiteLLM prices cache hits at 0) counts as a hit
    zero_cost: bool = True


_MISS = attr_bool("sieve.cache.hit", False)
KEYS = frozenset(("sieve.cache.hit", "sieve.cache.type", "sieve.cache.evidence"))


def create(
    settings: Settings, cfg: CacheTaggingConfig, next_consumer: TracesConsumer
) -> ProcessorHelper:
    keys = keys_for(cfg)  # made once: index_for would look it up per batch
    enc = Encoder()
    memory = ResponseIdMemory(cfg.response_id_memory) if cfg.response_id_memory else None
    hits_metric = settings.telemetry.counter(
        "tracesieve_genai_cache_hits", "LLM calls answered from a cache", ("processor", "type")
    )
    pid = str(settings.id)

    def process(traces: Traces) -> Traces:
        with no_gc():
            return _process(traces)

    def _process(traces: Traces) -> Traces:
        idx = index_for(traces, keys)
        if not idx.calls:
            return traces
        idx.tag_cache(memory, cfg.zero_cost)
        patches, hits = cache_patches(idx.calls, enc, cfg.overwrite, KEYS, _MISS)
        traces.patch_all(idx.raw, patches)
        for t, n in hits.items():
            hits_metric.labels(pid, t).inc(n)
        return traces

    return ProcessorHelper(settings, next_consumer, process, mutates_data=True)


factory = ProcessorFactory(
    type="cache_tagging",
    config_type=CacheTaggingConfig,
    create=create,
    stability="alpha",
    description="tags LLM calls answered from a gateway/semantic cache (sieve.cache.*)",
)
