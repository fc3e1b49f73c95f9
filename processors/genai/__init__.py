"""GenAI enrichment: shared logic of `provider_reconciliation`, `cache_tagging`,
`fallback_chain`, and of issue 4's `cleanliness` (which computes the same facts itself
when the enrichment processors did not run).

The per-batch index
===================
``index_for(traces, cfg=None) -> GenAIIndex`` returns the index of a batch, building it on
first use and keeping it with the batch (`Traces.genai_index`, one per config
fingerprint: configs that map extra hosts/keys get their own). `cfg` is a `GenAIConfig` or, from a
processor, its ``keys_for(cfg)`` made once at create. Every processor that asks for the index of
the same `Traces` with an equal `GenAIConfig` gets the same object, so the batch's spans are
classified and their attributes read once, whichever processors run. The cached index is
rebuilt when its encoding is not the batch's current `Traces.base` (pending patches keep
it; splicing them in or changing the decoded message make a new encoding). `cleanliness`,
the last stage that reads it, frees it (``drop_index``).

``GenAIIndex`` (see `processors.genai.analysis`):

- ``records``: `SpanRecord` per span that can matter, in batch order. Spans that cannot
  (database, web-server, framework and agent-step spans that are not roots) have none.
- ``by_key``: record by ``trace_id + span_id`` (24 bytes).
- ``calls``: LLM call records (role `LLM`) and gateway spans that stand for one call
  (role `GATEWAY`: Bifrost ``http.request``, LiteLLM proxy server spans).
- ``tools``: tool call records (role `TOOL`); ``roots``: records of spans with no parent.
- ``reconcile()``, ``tag_cache(memory=None, zero_cost=True)``, ``build_chains()``: the three
  analyses; each runs once per index and fills result fields on the records (below).
- ``attempts(rec) -> list[Attempt]``: the attempts of one call span, in order.
- ``facts() -> dict[trace_id, TraceFacts]``: runs all three, then per trace: ``roots``,
  ``calls``, ``logical_calls``, ``tools``, ``providers``/``models`` (served, normalised, by
  successful logical calls), ``fallback``, ``llm_retry``, ``tool_retry``, ``cache_hit``,
  ``provider_mismatch`` (bools), ``reasons()`` (those that are true, as cleanliness reason
  names), ``unrecovered``: logical LLM calls and tool runs whose last attempt failed
  (a swallowed error when the run did not fail), and ``failed_run``: an agent or chain
  span ended in ERROR and no successful logical call started after it (the run failed,
  whatever its root span says). See docs/frameworks.md for the shapes of agent frameworks.

``SpanRecord`` fields (see `processors.genai.index`). Always: ``raw``, ``b0``, ``b1`` (the
batch encoding and the span's bounds in it: for reading more, and for `Traces.patch`),
``key``, ``parent_key``, ``trace_id``, ``name``, ``kind``, ``role``, ``start``, ``end``,
``error`` (status ERROR), ``is_root``, ``scope``, ``parent`` and ``children`` (records
only). On scanned spans (calls, OpenInference and unknown app spans, tools without a
name-derived tool name, HTTP children of calls): normalised inputs (``provider_attr``,
``req_model``, ``resp_model``, ``gw_provider``/``gw_model`` asserted by a gateway, ``host``,
``http_status``, ``resend``, ``error_type``, ``resp_id``, tokens, ``cost``, cache and
retry/fallback markers, ``tool_name``). ``rec.attribute(key)`` reads any attribute of the
span as a plain value from the encoding. The index is built from the batch's encoding
(`pipeline.wirescan`), never from decoded protobuf messages, and the processors write by
patching that encoding (`Traces.patch`): a batch passes through them undecoded.
Records are the index's: when the index is freed (with its
batch) their ``children`` links are cut, so that the records, which would otherwise form
reference cycles, are freed at once by reference counting rather than by the cyclic GC.

Tools: ``tool_spans`` lists every tool span of the batch (`wirescan.SpanInfo` tuples, of
the index's ``raw``); ``tools`` has
records only for tool spans scanned (OpenInference, MCP) or of a tool
name that failed in their trace (retries and swallowed errors need them). OTel ``execute_tool X``
and Traceloop ``X.tool`` spans are classified by name and not scanned: read their results
(``gen_ai.tool.call.result``, ``traceloop.entity.output``; OpenInference ``output.value``)
with `wirescan.attributes`.

Results: after ``reconcile``: ``req_provider``, ``req_model_n``, ``served_provider``,
``served_model`` (normalised), ``evidence``, ``mismatch``. After ``tag_cache``:
``cache_hit``, ``cache_hit_type``, ``cache_evidence``. After ``build_chains``: on logical
calls ``logical``, ``chain``, ``attempt_count``, ``retry_count``, ``fallback_fired``,
``final_ok``; ``superseded`` on failed calls a later call replaced (a later sibling,
or, for the last call under its parent, the next call of the trace); ``duplicate`` on a
second span of one call; on tools ``tool_retries`` (on the run's last, a run being the
runs of one tool name in one trace, each after a failed one), ``superseded``.

Requests beside their call: a call span with no HTTP or call child of its own adopts the
HTTP spans and provider-SDK spans of its trace that ran within it when their parent is no
call (callback-based framework instrumentations; see ``index._adopt``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.pdata import Traces
from processors.genai.analysis import Attempt, GenAIIndex, ResponseIdMemory, TraceFacts
from processors.genai.config import AttributeMappings, GenAIConfig
from processors.genai.index import (
    AGENT,
    CALL_ROLES,
    GATEWAY,
    HTTP,
    LLM,
    OTHER,
    TOOL,
    Keys,
    SpanRecord,
    keys_for,
)
from processors.genai.models import (
    canonical_provider,
    model_family,
    normalize_model,
    provider_from_host,
)

__all__ = [
    "AGENT",
    "CALL_ROLES",
    "GATEWAY",
    "HTTP",
    "LLM",
    "OTHER",
    "TOOL",
    "Attempt",
    "AttributeMappings",
    "GenAIConfig",
    "GenAIIndex",
    "ResponseIdMemory",
    "SpanRecord",
    "TraceFacts",
    "canonical_provider",
    "drop_index",
    "index_for",
    "keys_for",
    "model_family",
    "no_gc",
    "normalize_model",
    "provider_from_host",
]


def index_for(traces: Traces, cfg: GenAIConfig | Keys | None = None) -> GenAIIndex:
    """The batch's shared GenAI index (built once; see the module docstring). Processors
    pass their config's `Keys` (`keys_for(cfg)`, made once) rather than the config."""
    keys = cfg if isinstance(cfg, Keys) else keys_for(cfg)
    idx = traces.genai_index(keys.fingerprint)
    if idx is None:
        idx = GenAIIndex(traces.base, keys, traces.scan())
        traces.set_genai_index(keys.fingerprint, idx)
    return idx


def drop_index(traces: Traces) -> None:
    """Free the batch's GenAI indexes now, from the last stage that reads them: their
    records go at once by reference counting (while the cyclic GC is paused, so that it
    never walks them) instead of living on until the batch is exported."""
    traces.drop_genai_indexes()


@contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic GC paused for one batch's synchronous work. Building an index allocates
    a few objects per span; with a large heap (decoded batches held by other stages) the
    collections those allocations trigger cost ~25% of the work. Everything allocated here
    is freed by reference counting or by the next collection; nothing else runs meanwhile
    (the event loop waits for `process`)."""
    was = gc.isenabled()
    if was:
        gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
