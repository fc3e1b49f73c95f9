"""`fallback_chain` processor: the attempts of each logical LLM call, and tool retries.

On the span that stands for a logical call (the parent of its attempts, or the final attempt
where there is none): `sieve.attempt.count`, `sieve.retry.count`, `sieve.fallback.fired`,
`sieve.fallback.chain` (`provider/model:outcome` per attempt, in order). On a tool call that
ran after failed runs of the same tool under the same parent: `sieve.retry.count`.
"""

from __future__ import annotations

from pipeline.component import ProcessorFactory, Settings, TracesConsumer
from pipeline.pdata import Traces
from pipeline.processorhelper import ProcessorHelper
from processors.genai import index_for, keys_for, no_gc
from processors.genai.config import EnrichmentConfig
from processors.genai.write import Encoder, attr_int, chain_patches

KEYS = frozenset(
    ("sieve.attempt.count", "sieve.retry.count", "sieve.fallback.fired", "sieve.fallback.chain")
)
_TOOL_KEYS = frozenset(("sieve.retry.count",))


class FallbackChainConfig(EnrichmentConfig):
    tools: bool = True  # also mark tool retries


def create(
    settings: Settings, cfg: FallbackChainConfig, next_consumer: TracesConsumer
) -> ProcessorHelper:
    keys = keys_for(cfg)  # made once: index_for would look it up per batch
    enc = Encoder()
    tel = settings.telemetry
    pid = str(settings.id)
    fallbacks_metric = tel.counter(
        "tracesieve_genai_fallbacks", "Logical LLM calls on which a fallback fired", ("processor",)
    ).labels(pid)
    retries_metric = tel.counter(
        "tracesieve_genai_retries", "Retries seen, by what was retried", ("processor", "of")
    )
    llm_retries = retries_metric.labels(pid, "llm")
    tool_retries = retries_metric.labels(pid, "tool")

    def process(traces: Traces) -> Traces:
        with no_gc():
            return _process(traces)

    def _process(traces: Traces) -> Traces:
        idx = index_for(traces, keys)
        if not idx.calls and not (cfg.tools and idx.tools):
            return traces
        idx.build_chains()
        raw = idx.raw
        patches, n_fallbacks, n_llm = chain_patches(idx.calls, enc, cfg.overwrite, KEYS)
        traces.patch_all(raw, patches)
        patch = traces.patch
        n_tool = 0
        if cfg.tools:
            for t in idx.tools:
                if t.tool_retries:
                    n_tool += t.tool_retries
                    done = t.attribute("sieve.retry.count") is not None
                    if not cfg.overwrite and (t.enriched or done):
                        continue
                    patch(
                        raw,
                        t.b0,
                        attr_int("sieve.retry.count", t.tool_retries),
                        _TOOL_KEYS if cfg.overwrite else None,
                    )
        if n_fallbacks:
            fallbacks_metric.inc(n_fallbacks)
        if n_llm:
            llm_retries.inc(n_llm)
        if n_tool:
            tool_retries.inc(n_tool)
        return traces

    return ProcessorHelper(settings, next_consumer, process, mutates_data=True)


factory = ProcessorFactory(
    type="fallback_chain",
    config_type=FallbackChainConfig,
    create=create,
    stability="alpha",
    description="reconstructs retries and fallbacks of LLM and tool calls (sieve.attempt.*, sieve.fallback.*)",
)
