"""Labelled agent traces, in every convention tracesieve reads, with faults injected at
chosen rates and the ground truth recorded beside each trace.

A trace: a root task span (`task.class` = one of TASK_CLASSES), a planner step with a
planning LLM call, a worker step with rounds of (worker LLM call, 1-4 tool calls) until the
trace has 8-40 tool calls, and a final planner LLM call. LLM calls have HTTP client
children (the SDK's requests); some tools have HTTP or database children. Conventions:

- `otel_genai`: OTel GenAI current names (`gen_ai.provider.name`, `chat gpt-4o` CLIENT spans,
  `execute_tool X`, `invoke_agent X`), HTTP children with the new HTTP names; stacks openai,
  anthropic (with the Anthropic SDK's own nested span), azure, bedrock.
- `otel_genai_legacy`: `gen_ai.system`, `gen_ai.usage.prompt_tokens`..., old HTTP names.
- `openinference`: `openinference.span.kind` LLM/TOOL/CHAIN/AGENT, `llm.invocation_parameters`,
  `llm.model_name` (response model), `output.value`.
- `openllmetry`: Traceloop `openai.chat`/`anthropic.chat`, `llm.request.type`,
  `<name>.workflow`/`.agent`/`.tool` entity spans, `traceloop.entity.output`.
- `litellm`: LiteLLM legacy in-process `litellm_request` spans with `hidden_params` JSON.
- `litellm_v2`: app span -> LiteLLM proxy SERVER span -> one CLIENT `chat X` span per attempt.
- `bifrost`: app span -> Bifrost `http.request` -> `llm.call`/`retry`/`fallback` attempts.
- `portkey`: app span whose HTTP child carries Portkey's response headers.
- `langchain_oi`, `langchain_traceloop`: a LangGraph agent under an app root, traced by
  OpenInference (CHAIN/AGENT/LLM/TOOL spans; the HTTP spans under the app root, beside the
  LLM spans, not under them) or by Traceloop (`execute_task X` spans, `ChatOpenAI.chat`
  with its HTTP spans beside it); `.with_retry()`, `.with_fallbacks()`, LangChain's LLM
  cache (a call with no request: OpenInference replays the response id, Traceloop has
  none), tool calls under one `tools` node each.
- `pydantic_ai`: PydanticAI's own instrumentation (`invoke_agent`, `chat X`, `execute_tool
  X`); `FallbackModel` (the span renamed after the model that answered, with a failed
  `model request attempt X` child), `ModelRetry` tool retries.
- `openai_agents`: the OpenAI Agents SDK through OpenInference (trace span, `Agent
  workflow`, agent, `turn`, `generation` LLM spans naming only the model asked for); the
  runner's retry; a fallback is the app running the agent again on another model.
- `llamaindex`: LlamaIndex's FunctionAgent through OpenInference (`FunctionAgent.run`,
  `run_agent_step` with `_prepare_chat_with_tools` beside `OpenAI.achat`, `call_tool` with
  `FunctionTool.acall`); a fallback is the app running the agent again.
In the framework conventions `root_failure` is a failed run: the last call fails after
the SDK's retries and the framework's agent span ends in ERROR, while the root (an app or
the instrumentation's own) stays OK (PydanticAI's agent span is the root: ERROR).
- `agent_guide`: the vocabulary of the agent-tracing guide, written by hand with the OTel
  API: a root `<agent>.session:<id>.intent=<task class>` (no `task.class`), `agent.step:*`
  steps, `llm.generate` and `agent.step:respond` LLM spans with `ai.model_provider`/
  `ai.model_name` (or plain `model_provider`/`model_name`), `ai.router_strategy`,
  `ai.prompt_version` and `router_decision`, with or without the SDK's HTTP requests under
  them; events `rate_limited`/`timeout` (retries), `fallback_triggered[=true]`,
  `semantic_cache_hit`/`cache_hit`; `tool.invoke:<tool>` spans with `tool_name`,
  `error_code`, `latency_ms`, `retry_count` (an attribute or an event); `eval.run` spans
  (`eval.type`/`evaluator_type`, `eval.score.<metric>`, `eval.threshold`, `eval.passed`,
  `eval.result`); `guardrail.check` spans; `policy_blocked`, `quota_exceeded` and
  `key_rotated` events. In some traces the requests sit under a second instrumentation's
  span of the same call (LiteLLM's `litellm_request`), beside the guide's span: one call.

Faults (each drawn per trace at its rate; several may combine): `fallback`, `llm_retry`,
`tool_retry`, `cache_hit`, `mismatch` (served model differs), `schema_invalid` (a tool
result breaks its schema), `swallowed_error` (a tool error nobody retried, root OK),
`slow` (root 2.5-4x its class's usual duration), `root_failure` (root status ERROR); and,
in `agent_guide` only (drawn after the others: a generator without `agent_guide` among its
conventions makes the same traces as before it existed), `eval_failed` (an evaluation below its threshold or failed), `policy_blocked` (a
tool call blocked by a policy, or a guardrail that blocked) and `governance`
(`quota_exceeded`/`key_rotated` events: no change of class). The first `warmup` traces of
each task class carry no fault (the cleanliness timing median needs clean samples first).

Ground truth per trace (`GeneratedTrace.truth`, one JSON line each from the CLI):
`trace_id`, `convention`, `stack`, `task_class`, `faults`, `warmup`, `root_span_id`,
`root_duration_ns`, `base_duration_ns`, `spans`, `expected` {`class`, `reasons`} under
issue 4's default config, `expected_strict` (with `strict_single_model: true`), `served`
{`providers`, `models`}, `llm_calls` (per logical call: `span_id`, `step`, `requested`,
`served`, `evidence`, `mismatch`, `cache_hit`, `cache_type`, `cache_evidence`, `attempts`,
`retries`, `fallback`, `chain`), `tool_retries` [{`span_id`, `tool`, `retries`}],
`tool_schema_invalid` [span ids], `swallowed` [span ids], `tool_result_key`; and
`evals` ({`count`, `failed`, `min_score`} or null: `sieve.trace.eval.*`), `governance`
({`quota_exceeded`, `key_rotated`}), `policy_blocked` [span ids].

CLI: `python -m benchmarks.generator --traces 1000 --seed 1 --out traces.pb
--truth truth.jsonl --schemas schemas/` (`--out` is length-prefixed protobuf, the `file`
exporter's `proto` format, or OTLP JSON lines with `--format json`).
For load tests, `LoadStream` repeats pre-encoded traces with fresh trace ids (~1 us/span).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from benchmarks.conversation import Conversation, key_values
from pipeline.otlpwire import frame
from processors.cleanliness import REASONS
from processors.genai.models import compatible, model_family, normalize_model

__all__ = [
    "CONVENTIONS",
    "FAULTS",
    "TASK_CLASSES",
    "TOOL_SCHEMAS",
    "FaultRates",
    "GeneratedTrace",
    "Generator",
    "LoadStream",
    "expected_class",
    "write_tool_schemas",
]

CONVENTIONS = (
    "otel_genai",
    "otel_genai_legacy",
    "openinference",
    "openllmetry",
    "litellm",
    "litellm_v2",
    "bifrost",
    "portkey",
    "langchain_oi",
    "langchain_traceloop",
    "llamaindex",
    "pydantic_ai",
    "openai_agents",
    "agent_guide",
)
GATEWAY_CONVENTIONS = frozenset({"litellm", "litellm_v2", "bifrost", "portkey"})
# agent frameworks, modelled on the span trees their instrumentations emit (captured from
# the real frameworks against fake providers: tests/processors/genai/apps/, docs/frameworks.md)
FRAMEWORK_CONVENTIONS = frozenset(
    {"langchain_oi", "langchain_traceloop", "llamaindex", "pydantic_ai", "openai_agents"}
)
# frameworks with an LLM cache of their own (LangChain's set_llm_cache)
_FRAMEWORK_CACHE = frozenset({"langchain_oi", "langchain_traceloop"})
# frameworks whose LLM spans name only the model asked for (no served model to compare)
_NO_SERVED_MODEL = frozenset({"llamaindex", "openai_agents"})
FAULTS = (
    "fallback",
    "llm_retry",
    "tool_retry",
    "cache_hit",
    "mismatch",
    "schema_invalid",
    "swallowed_error",
    "slow",
    "root_failure",
    "eval_failed",
    "policy_blocked",
    "governance",
)
# the guide's faults: only `agent_guide` traces draw them (after the others)
GUIDE_FAULTS = ("eval_failed", "policy_blocked", "governance")
_BASE_FAULTS = tuple(f for f in FAULTS if f not in GUIDE_FAULTS)
# REASONS (processors.cleanliness): every reason, in the order a verdict lists them
CORRUPTED = frozenset({"tool_schema_invalid", "swallowed_error", "eval_failed"})
NOISY = frozenset(REASONS) - CORRUPTED

# task class -> (base root duration in seconds, tool-count range, tools it uses)
TASK_CLASSES: dict[str, tuple[float, tuple[int, int], tuple[str, ...]]] = {
    "research": (40.0, (20, 40), ("web_search", "fetch_url", "kb_lookup", "read_file")),
    "code_fix": (30.0, (12, 28), ("read_file", "write_file", "run_python", "git_diff")),
    "support": (12.0, (8, 16), ("kb_lookup", "create_ticket", "send_email", "get_weather")),
    "data_analysis": (25.0, (10, 30), ("run_sql", "run_python", "calculator", "write_file")),
}

_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}


def _obj(required: Sequence[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": props}


TOOL_SCHEMAS: dict[str, dict[str, Any]] = {
    "web_search": _obj(
        ["results"],
        results={"type": "array", "items": _obj(["title", "url"], title=_STR, url=_STR)},
    ),
    "fetch_url": _obj(["url", "status", "content"], url=_STR, status=_INT, content=_STR),
    "kb_lookup": _obj(
        ["documents"],
        documents={"type": "array", "items": _obj(["id", "score"], id=_STR, score=_NUM)},
    ),
    "read_file": _obj(["path", "content"], path=_STR, content=_STR),
    "write_file": _obj(["path", "bytes_written"], path=_STR, bytes_written=_INT),
    "run_python": _obj(["stdout", "exit_code"], stdout=_STR, exit_code=_INT),
    "git_diff": _obj(["files_changed", "diff"], files_changed=_INT, diff=_STR),
    "create_ticket": _obj(
        ["ticket_id", "status"], ticket_id=_STR, status={"enum": ["open", "pending"]}
    ),
    "send_email": _obj(["message_id", "accepted"], message_id=_STR, accepted={"type": "boolean"}),
    "get_weather": _obj(["location", "temperature_c"], location=_STR, temperature_c=_NUM),
    "run_sql": _obj(
        ["columns", "rows", "row_count"],
        columns={"type": "array", "items": _STR},
        rows={"type": "array"},
        row_count=_INT,
    ),
    "calculator": _obj(["value"], value=_NUM),
}
for _s in TOOL_SCHEMAS.values():
    _s["$schema"] = "https://json-schema.org/draft/2020-12/schema"


def _valid_result(tool: str, r: random.Random) -> dict[str, Any]:
    n = r.randint(1, 3)
    if tool == "web_search":
        return {
            "results": [
                {"title": f"Result {i}", "url": f"https://example.org/{i}"} for i in range(n)
            ]
        }
    if tool == "fetch_url":
        return {"url": "https://example.org/a", "status": 200, "content": "<html>...</html>"}
    if tool == "kb_lookup":
        return {"documents": [{"id": f"doc-{i}", "score": round(r.random(), 3)} for i in range(n)]}
    if tool == "read_file":
        return {"path": "src/app.py", "content": "def main():\n    pass\n"}
    if tool == "write_file":
        return {"path": "src/app.py", "bytes_written": r.randint(10, 4000)}
    if tool == "run_python":
        return {"stdout": "ok\n", "exit_code": 0}
    if tool == "git_diff":
        return {"files_changed": n, "diff": "--- a/x\n+++ b/x\n"}
    if tool == "create_ticket":
        return {"ticket_id": f"T-{r.randint(1000, 9999)}", "status": "open"}
    if tool == "send_email":
        return {"message_id": f"m-{r.randint(1, 10**6)}", "accepted": True}
    if tool == "get_weather":
        return {"location": "Paris", "temperature_c": round(r.uniform(-5, 30), 1)}
    if tool == "run_sql":
        return {"columns": ["day", "total"], "rows": [["mon", 3]], "row_count": 1}
    return {"value": round(r.uniform(0, 1000), 2)}


def _invalid_result(tool: str, r: random.Random) -> dict[str, Any]:
    """A result that breaks its schema: a required field missing or of the wrong type."""
    good = _valid_result(tool, r)
    required = TOOL_SCHEMAS[tool]["required"]
    key = required[r.randrange(len(required))]
    if r.random() < 0.5:
        del good[key]
    else:
        good[key] = {"unexpected": True}  # an object where a string/number/array belongs
    return good


def write_tool_schemas(directory: str) -> list[str]:
    """One `<tool name>.json` per generator tool (issue 4's `tool_schemas`)."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, schema in TOOL_SCHEMAS.items():
        path = os.path.join(directory, f"{name}.json")
        with open(path, "w") as fh:
            json.dump(schema, fh, indent=2, sort_keys=True)
        paths.append(path)
    return paths


# -- stacks: who the app calls -----------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    provider: str  # canonical
    host: str
    planner: str  # request model
    worker: str
    served: dict[str, str]  # request model -> response model (dated snapshot)
    substitute: dict[str, str]  # request model -> a different model served (mismatch)


OPENAI = Model(
    "openai",
    "api.openai.com",
    "gpt-4o",
    "gpt-4o-mini",
    {"gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18"},
    {"gpt-4o": "gpt-4o-mini-2024-07-18", "gpt-4o-mini": "gpt-4.1-nano-2025-04-14"},
)
ANTHROPIC = Model(
    "anthropic",
    "api.anthropic.com",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-haiku-20241022",
    {
        "claude-3-5-sonnet-20241022": "claude-3-5-sonnet-20241022",
        "claude-3-5-haiku-20241022": "claude-3-5-haiku-20241022",
    },
    {
        "claude-3-5-sonnet-20241022": "claude-3-haiku-20240307",
        "claude-3-5-haiku-20241022": "claude-3-haiku-20240307",
    },
)
AZURE = Model(
    "azure.ai.openai",
    "contoso.openai.azure.com",
    "gpt-4o",
    "gpt-4o",
    {"gpt-4o": "gpt-4o-2024-08-06"},
    {"gpt-4o": "gpt-4o-mini-2024-07-18"},
)
BEDROCK = Model(
    "aws.bedrock",
    "bedrock-runtime.us-east-1.amazonaws.com",
    "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    {
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0": "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "us.anthropic.claude-3-5-haiku-20241022-v1:0": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    },
    {
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0": "anthropic.claude-3-haiku-20240307-v1:0",
        "us.anthropic.claude-3-5-haiku-20241022-v1:0": "anthropic.claude-3-haiku-20240307-v1:0",
    },
)
STACKS = {"openai": OPENAI, "anthropic": ANTHROPIC, "azure": AZURE, "bedrock": BEDROCK}
FALLBACK_OF = {"openai": ANTHROPIC, "anthropic": OPENAI, "azure": OPENAI, "bedrock": ANTHROPIC}
STACKS_BY_CONVENTION = {
    "otel_genai": ("openai", "anthropic", "azure", "bedrock"),
    "openai_agents": ("openai",),  # OpenAIChatCompletionsModel; falls back to Claude
    "llamaindex": ("openai",),
}
_DEFAULT_STACKS = ("openai", "anthropic")

GATEWAY_HOSTS = {
    "litellm_v2": "litellm-proxy.internal:4000",
    "bifrost": "bifrost.internal:8080",
    "portkey": "api.portkey.ai",
}


@dataclass
class FaultRates:
    fallback: float = 0.04
    llm_retry: float = 0.04
    tool_retry: float = 0.04
    cache_hit: float = 0.04
    mismatch: float = 0.03
    schema_invalid: float = 0.03
    swallowed_error: float = 0.03
    slow: float = 0.03
    root_failure: float = 0.02
    eval_failed: float = 0.05
    policy_blocked: float = 0.05
    governance: float = 0.05

    @classmethod
    def none(cls) -> FaultRates:
        return cls(**{f: 0.0 for f in FAULTS})

    @classmethod
    def parse(cls, text: str) -> FaultRates:
        """`fallback=0.1,slow=0.05` (others keep their defaults; `all=x` sets every rate)."""
        rates = cls()
        for part in filter(None, (p.strip() for p in text.split(","))):
            k, _, v = part.partition("=")
            if k == "all":
                rates = cls(**{f: float(v) for f in FAULTS})
            elif k in FAULTS:
                setattr(rates, k, float(v))
            else:
                raise ValueError(f"unknown fault {k!r}: want one of {', '.join(FAULTS)}")
        return rates


@dataclass
class GeneratedTrace:
    trace_id: bytes
    resource_spans: list[ResourceSpans]
    truth: dict[str, Any]

    @property
    def span_count(self) -> int:
        return sum(len(ss.spans) for rs in self.resource_spans for ss in rs.scope_spans)

    def request(self) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest(resource_spans=self.resource_spans)


def expected_class(reasons: Iterable[str], root_failed: bool) -> str:
    rs = set(reasons)
    if root_failed:
        return "failed"
    if rs & CORRUPTED:
        return "corrupted"
    if rs & NOISY:
        return "noisy"
    return "clean"


# -- attribute helpers ---------------------------------------------------------------------------


_KIND = {
    "internal": Span.SPAN_KIND_INTERNAL,
    "server": Span.SPAN_KIND_SERVER,
    "client": Span.SPAN_KIND_CLIENT,
}

# scopes
S_APP = "agent-app"
S_HTTPX = "opentelemetry.instrumentation.httpx"
S_DB = "opentelemetry.instrumentation.sqlalchemy"
S_GENAI = "opentelemetry.util.genai.handler"
S_ANTHROPIC_INSTR = "opentelemetry.instrumentation.anthropic"
S_ANTHROPIC_SDK = "com.anthropic.sdk.python"
S_OPENAI_LEGACY = "opentelemetry.instrumentation.openai"
S_OI_OPENAI = "openinference.instrumentation.openai"
S_OI_ANTHROPIC = "openinference.instrumentation.anthropic"
S_OI_LANGCHAIN = "openinference.instrumentation.langchain"
S_TL_OPENAI = "opentelemetry.instrumentation.openai.v1"
S_TL_ANTHROPIC = "opentelemetry.instrumentation.anthropic"
S_TRACELOOP = "traceloop.tracer"
S_LITELLM = "litellm"
S_BIFROST = "bifrost"
S_TL_LANGCHAIN = "opentelemetry.instrumentation.langchain"
S_PYDANTIC_AI = "pydantic-ai"
S_OI_AGENTS = "openinference.instrumentation.openai_agents"
S_OI_LLAMA = "openinference.instrumentation.llama_index"


class _Builder:
    """Collects a trace's spans by (service, scope)."""

    def __init__(self, r: random.Random, trace_id: bytes) -> None:
        self.r = r
        self.trace_id = trace_id
        self.groups: dict[tuple[str, str], list[Span]] = {}
        self.order: list[tuple[str, Span]] = []  # (scope, span), in the order made

    def new_id(self) -> bytes:
        return self.r.getrandbits(64).to_bytes(8, "big")

    def span(
        self,
        scope: str,
        name: str,
        kind: str,
        parent: bytes,
        start: int,
        end: int,
        attrs: dict[str, Any],
        *,
        error: str | None = None,
        ok: bool = False,
        service: str = "agent-app",
        exception: str | None = None,
        events: Sequence[tuple[str, int, dict[str, Any]]] = (),
    ) -> bytes:
        sid = self.new_id()
        s = Span(
            trace_id=self.trace_id,
            span_id=sid,
            parent_span_id=parent,
            name=name,
            kind=_KIND[kind],  # type: ignore[arg-type]
            start_time_unix_nano=start,
            end_time_unix_nano=end,
            attributes=key_values(attrs),
        )
        if error is not None:
            s.status.code = 2  # type: ignore[assignment]
            s.status.message = error
        elif ok:
            s.status.code = 1  # type: ignore[assignment]
        if exception:
            ev = s.events.add()
            ev.name = "exception"
            ev.time_unix_nano = end
            ev.attributes.extend(
                key_values({"exception.type": exception, "exception.message": error})
            )
        for ev_name, t, ev_attrs in events:
            ev = s.events.add()
            ev.name = ev_name
            ev.time_unix_nano = t
            ev.attributes.extend(key_values(ev_attrs))
        self.groups.setdefault((service, scope), []).append(s)
        self.order.append((scope, s))
        return sid

    def resource_spans(self) -> list[ResourceSpans]:
        by_service: dict[str, ResourceSpans] = {}
        for (service, scope), spans in self.groups.items():
            rs = by_service.get(service)
            if rs is None:
                rs = by_service[service] = ResourceSpans()
                rs.resource.attributes.extend(
                    key_values({"service.name": service, "telemetry.sdk.language": "python"})
                )
            ss = rs.scope_spans.add()
            ss.scope.name = scope
            ss.spans.extend(spans)
        return list(by_service.values())


# -- the plan of one trace ------------------------------------------------------------------------


@dataclass
class _Call:
    step: str  # planner | worker | final
    model: str  # request model
    stack: Model
    fault: str = ""  # "" | fallback | llm_retry | cache_hit | mismatch
    replay_of: int = -1  # cache hit (app level): index of the call whose response it replays
    resp_id: str = ""
    weight: float = 3.0
    tokens: tuple[int, int] = (0, 0)  # (in, out) reported (a cache hit replays its source's)


@dataclass
class _Tool:
    name: str
    fault: str = ""  # "" | tool_retry | schema_invalid | swallowed_error
    weight: float = 1.0
    call_id: str = ""  # with content: the id and arguments of the model's call
    args: str = ""


@dataclass
class _Plan:
    convention: str
    stack_name: str
    task_class: str
    faults: set[str]
    calls: list[_Call] = field(default_factory=list)
    rounds: list[tuple[int, list[_Tool]]] = field(default_factory=list)  # (call idx, tools)


class Generator:
    """Deterministic for a seed. `trace()` makes the next trace; `traces(n)` n of them."""

    def __init__(
        self,
        seed: int = 0,
        *,
        rates: FaultRates | None = None,
        conventions: Sequence[str] = CONVENTIONS,
        warmup: int = 25,
        start_time_ns: int = 1_750_000_000_000_000_000,
        content: bool = False,
    ) -> None:
        bad = [c for c in conventions if c not in CONVENTIONS]
        if bad:
            raise ValueError(f"unknown conventions {bad}: want {', '.join(CONVENTIONS)}")
        self.r = random.Random(seed)
        self.rates = rates or FaultRates()
        self.conventions = tuple(conventions)
        self.warmup = warmup
        self.content = content
        self._seen: dict[str, int] = {}
        self._clock = start_time_ns
        self._n = 0

    # -- public ------------------------------------------------------------------------------
    def traces(self, n: int) -> Iterator[GeneratedTrace]:
        for _ in range(n):
            yield self.trace()

    def trace(
        self, convention: str | None = None, faults: Iterable[str] | None = None
    ) -> GeneratedTrace:
        """The next trace; `convention` and `faults` force a choice (for tests)."""
        r = self.r
        conv = convention or self.conventions[self._n % len(self.conventions)]
        self._n += 1
        task_class = r.choice(list(TASK_CLASSES))
        seen = self._seen.get(task_class, 0)
        self._seen[task_class] = seen + 1
        warm = seen < self.warmup and faults is None
        if faults is not None:
            chosen = set(faults)
            unknown = chosen - set(FAULTS)
            if unknown:
                raise ValueError(f"unknown faults {sorted(unknown)}")
        elif warm:
            chosen = set()
        else:
            chosen = {f for f in _BASE_FAULTS if r.random() < getattr(self.rates, f)}
            if conv == "agent_guide":
                chosen |= {f for f in GUIDE_FAULTS if r.random() < getattr(self.rates, f)}
        stacks = STACKS_BY_CONVENTION.get(conv, _DEFAULT_STACKS)
        stack_name = r.choice(stacks)
        plan = self._plan(conv, stack_name, task_class, chosen)
        trace_id = r.getrandbits(128).to_bytes(16, "big")
        b = _Builder(r, trace_id)
        truth = _Renderer(self, plan, b).render()
        truth["warmup"] = warm
        return GeneratedTrace(trace_id, b.resource_spans(), truth)

    def next_start(self, duration_ns: int) -> int:
        t = self._clock
        self._clock += duration_ns // 4 + 1_000_000_000
        return t

    # -- planning ------------------------------------------------------------------------------
    def _plan(self, conv: str, stack_name: str, task_class: str, faults: set[str]) -> _Plan:
        r = self.r
        stack = STACKS[stack_name]
        _, (lo, hi), tools = TASK_CLASSES[task_class]
        n_tools = r.randint(max(8, lo), min(40, hi))
        plan = _Plan(conv, stack_name, task_class, faults)
        same_model = r.random() < 0.4
        plan.calls.append(_Call("planner", stack.planner, stack))
        left = n_tools
        while left > 0:
            k = min(left, r.randint(1, 4))
            left -= k
            worker = stack.planner if same_model else stack.worker
            plan.calls.append(_Call("worker", worker, stack))
            plan.rounds.append(
                (
                    len(plan.calls) - 1,
                    [_Tool(r.choice(tools), weight=r.uniform(0.5, 1.5)) for _ in range(k)],
                )
            )
        plan.calls.append(_Call("final", stack.planner, stack))
        if conv != "agent_guide":
            faults.difference_update(GUIDE_FAULTS)  # the guide's vocabulary only
        if conv in FRAMEWORK_CONVENTIONS:
            if conv not in _FRAMEWORK_CACHE:
                faults.discard("cache_hit")  # no LLM cache of its own
            if conv in _NO_SERVED_MODEL:
                faults.discard("mismatch")  # no served model on its spans: nothing to see
            if "root_failure" in faults:
                plan.calls[-1].fault = "run_failure"  # the last call fails; free[] skips it
        # LLM faults on distinct calls; a cache hit replays an earlier call of the same model
        free = [i for i, c in enumerate(plan.calls) if not c.fault]
        r.shuffle(free)
        if "cache_hit" in faults:
            for i in free:
                earlier = [j for j in range(i) if plan.calls[j].model == plan.calls[i].model]
                if earlier:
                    plan.calls[i].fault = "cache_hit"
                    plan.calls[i].replay_of = earlier[-1]
                    plan.calls[i].weight = 0.05
                    free.remove(i)
                    free.remove(earlier[-1])  # the replayed call must succeed as itself
                    break
            else:
                faults.discard("cache_hit")
        for f in ("fallback", "llm_retry", "mismatch"):
            if f in faults:
                i = free.pop()
                plan.calls[i].fault = f
        all_tools = [t for _, ts in plan.rounds for t in ts]
        picks = r.sample(range(len(all_tools)), 3)
        if "policy_blocked" in faults and r.random() < 0.6:
            # a tool call a policy blocked (else a guardrail blocks: `_guide_signals`)
            free_tools = [i for i in range(len(all_tools)) if i not in picks]
            if free_tools:
                picks.append(free_tools[r.randrange(len(free_tools))])
        kinds = ("tool_retry", "schema_invalid", "swallowed_error", "policy_blocked")
        for f, i in zip(kinds, picks, strict=False):
            if f in faults:
                all_tools[i].fault = f
        failing = [t for t in all_tools if t.fault in ("swallowed_error", "policy_blocked")]
        for t in failing:
            # no later run of the same tool in the trace: that would be a retry (and no
            # renamed run may take the name of a failing tool)
            name = t.name
            taken = {x.name for x in failing}
            other = next(x for x in tools if x not in taken)
            for later in all_tools[all_tools.index(t) + 1 :]:
                if later.name == name:
                    later.name = other
        return plan


_OVERHEAD_NS = 2_000_000


class _Renderer:
    """Lays a plan out in time and writes its spans in the plan's convention."""

    def __init__(self, gen: Generator, plan: _Plan, b: _Builder) -> None:
        self.g = gen
        self.p = plan
        self.b = b
        self.r = gen.r
        self.conv = plan.convention
        self.calls_truth: list[dict[str, Any]] = []
        self.tool_retries: list[dict[str, Any]] = []
        self.invalid: list[str] = []
        self.swallowed: list[str] = []
        self.n_resp = 0
        self.root_id = b""
        self.turn = b""  # OpenAI Agents: the turn of the last call (its tools run in it)
        self.last_llm = b""  # the last LLM span written (framework conventions)
        # the agent-tracing guide (`agent_guide`): per-trace choices, and what it recorded
        self.g_http = False  # the LLM spans have the SDK's HTTP requests under them
        self.g_plain = False  # plain `model_provider`/`model_name`, not `ai.*`
        # the requests are under a second instrumentation's span of the call (LiteLLM's
        # `litellm_request`), beside the guide's span, which the app did not make current
        self.g_twin = False
        self.g_agent = ""
        self.blocked: list[str] = []  # span ids a policy blocked
        self.evals: tuple[int, int, float | None] | None = None
        self.governance = {"quota_exceeded": 0, "key_rotated": 0}
        self.chat: Conversation | None = (
            Conversation(plan.convention, plan.task_class, plan.rounds, b.trace_id)
            if gen.content
            else None
        )
        self.cur_tool: _Tool | None = None
        self.last_result = ""  # the last tool result (or error) written

    # -- layout ----------------------------------------------------------------------------
    def render(self) -> dict[str, Any]:
        p, r = self.p, self.r
        base_s, _, _ = TASK_CLASSES[p.task_class]
        factor = r.uniform(2.5, 4.0) if "slow" in p.faults else r.uniform(0.85, 1.15)
        dur = int(base_s * factor * 1e9)
        t0 = self.g.next_start(dur)
        root_failed = "root_failure" in p.faults
        framework = self.conv in FRAMEWORK_CONVENTIONS
        if self.conv == "agent_guide":
            self.g_http = r.random() < 0.6
            self.g_plain = r.random() < 0.3
            self.g_agent = r.choice(("assistant", "support_bot", "researcher"))
            self.g_twin = self.g_http and r.random() < 0.3
        root = self._root(t0, t0 + dur, root_failed)
        self.root_id = root
        # time budget: planner call, rounds, final call, split by weights
        weights = [p.calls[0].weight]
        for ci, tools in p.rounds:
            weights.append(p.calls[ci].weight + sum(t.weight for t in tools))
        weights.append(p.calls[-1].weight)
        usable = dur - 8 * _OVERHEAD_NS
        unit = usable / sum(weights)
        t = t0 + _OVERHEAD_NS
        # planner step
        plan_end = t + int(weights[0] * unit) + 2 * _OVERHEAD_NS
        step = self._step("planner", root, t, plan_end)
        self._call(0, step, t + _OVERHEAD_NS, plan_end - _OVERHEAD_NS)
        t = plan_end
        # worker step
        w_start = t
        w_end = t + int(sum(weights[1:-1]) * unit) + 2 * _OVERHEAD_NS
        wstep = self._step("worker", root, w_start, w_end)
        t += _OVERHEAD_NS
        for (ci, tools), wgt in zip(p.rounds, weights[1:-1], strict=True):
            span = int(wgt * unit)
            c_end = t + int(p.calls[ci].weight * unit)
            self._call(ci, wstep, t, c_end)
            tt = c_end
            for tool in tools:
                d = int(tool.weight * unit)
                self._tool(tool, wstep, tt, tt + d)
                tt += d
            t += span
        # final step
        f_start = w_end
        f_end = t0 + dur - _OVERHEAD_NS
        fstep = self._step("planner", root, f_start, f_end, failed=root_failed and framework)
        self._call(len(p.calls) - 1, fstep, f_start + _OVERHEAD_NS, f_end - _OVERHEAD_NS)
        if self.conv == "agent_guide":
            self._guide_signals(root, t0, t0 + dur)
        return self._truth(root, dur, int(base_s * 1e9), root_failed)

    def _truth(self, root: bytes, dur: int, base: int, root_failed: bool) -> dict[str, Any]:
        p = self.p
        reasons: set[str] = set()
        gw = self.conv in GATEWAY_CONVENTIONS
        for c in self.calls_truth:
            if c["fallback"]:
                reasons.add("fallback")
            if c["retries"]:
                reasons.add("llm_retry")
            if c["cache_hit"]:
                reasons.add("cache_hit")
            if c["mismatch"]:
                reasons.add("provider_mismatch")
        if self.tool_retries:
            reasons.add("tool_retry")
        if "slow" in p.faults:
            reasons.add("slow")
        if self.invalid:
            reasons.add("tool_schema_invalid")
        if self.swallowed and not root_failed:
            reasons.add("swallowed_error")
        if self.blocked:
            reasons.add("policy_blocked")
        if self.evals is not None and self.evals[1]:
            reasons.add("eval_failed")
        del gw
        ordered = [x for x in REASONS if x in reasons]
        answered = [c for c in self.calls_truth if not c.get("failed")]
        providers = sorted({c["served"].split("/", 1)[0] for c in answered})
        models = sorted({c["served"].split("/", 1)[1] for c in answered})
        strict = (
            ordered if len(models) <= 1 else [x for x in REASONS if x in reasons | {"multi_model"}]
        )
        return {
            "trace_id": self.b.trace_id.hex(),
            "convention": self.conv,
            "stack": p.stack_name,
            "task_class": p.task_class,
            "faults": sorted(p.faults),
            "root_span_id": root.hex(),
            "root_duration_ns": dur,
            "base_duration_ns": base,
            "spans": sum(len(v) for v in self.b.groups.values()),
            "expected": {"class": expected_class(ordered, root_failed), "reasons": ordered},
            "expected_strict": {"class": expected_class(strict, root_failed), "reasons": strict},
            "served": {"providers": providers, "models": models},
            "llm_calls": self.calls_truth,
            "tool_retries": self.tool_retries,
            "tool_schema_invalid": self.invalid,
            "swallowed": self.swallowed,
            # failures nobody recovered from: swallowed tools, and a failed run's last call
            "unrecovered": self.swallowed
            + [c["span_id"] for c in self.calls_truth if c.get("failed")],
            "tool_result_key": _TOOL_RESULT_KEY.get(self.conv, "gen_ai.tool.call.result"),
            "evals": (
                None
                if self.evals is None
                else dict(zip(("count", "failed", "min_score"), self.evals, strict=True))
            ),
            "governance": dict(self.governance),
            "policy_blocked": self.blocked,
            **({"conversation": self.chat.truth()} if self.chat is not None else {}),
        }

    # -- root and steps --------------------------------------------------------------------
    def _root(self, start: int, end: int, failed: bool) -> bytes:
        cls = self.p.task_class
        err = "task failed: final answer rejected" if failed else None
        if self.conv == "agent_guide":  # the task class is the intent in the root's name
            session = f"{self.r.getrandbits(32):08x}"
            return self.b.span(
                S_APP,
                f"{self.g_agent}.session:{session}.intent={cls}",
                "server",
                b"",
                start,
                end,
                {"session.id": session, "agent.name": self.g_agent},
                error=err,
            )
        if self.conv in FRAMEWORK_CONVENTIONS and self.conv != "pydantic_ai":
            err = None  # a failed run: the framework's agent span says so, not the root
        if self.conv == "pydantic_ai":  # the agent run is the root
            return self.b.span(
                S_PYDANTIC_AI,
                f"invoke_agent {cls}",
                "internal",
                b"",
                start,
                end,
                {
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": cls,
                    "agent_name": cls,
                    "task.class": cls,
                },
                error=err,
                exception="UnexpectedModelBehavior" if err else None,
            )
        if self.conv == "openai_agents":  # the SDK's trace span is the root; it stays OK
            return self.b.span(
                S_OI_AGENTS,
                cls,
                "internal",
                b"",
                start,
                end,
                {"openinference.span.kind": "AGENT", "task.class": cls},
                ok=True,
            )
        if self.conv == "openinference":
            return self.b.span(
                S_OI_LANGCHAIN,
                "AgentExecutor",
                "internal",
                b"",
                start,
                end,
                {"openinference.span.kind": "AGENT", "task.class": cls, "input.value": "task"},
                error=err,
                ok=not failed,
            )
        if self.conv == "openllmetry":
            return self.b.span(
                S_TRACELOOP,
                f"{cls}.workflow",
                "internal",
                b"",
                start,
                end,
                {
                    "traceloop.span.kind": "workflow",
                    "traceloop.workflow.name": cls,
                    "traceloop.entity.name": cls,
                    "task.class": cls,
                },
                error=err,
            )
        return self.b.span(
            S_APP,
            f"invoke_workflow {cls}",
            "internal",
            b"",
            start,
            end,
            {
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": cls,
                "task.class": cls,
            },
            error=err,
        )

    def _step(self, name: str, parent: bytes, start: int, end: int, failed: bool = False) -> bytes:
        conv = self.conv
        err = "run failed" if failed else None
        exc = "InternalServerError" if failed else None
        if conv == "agent_guide":
            step = "plan" if name == "planner" else "act"
            return self.b.span(
                S_APP, f"agent.step:{step}", "internal", parent, start, end, {"agent.step": step}
            )
        if conv == "langchain_oi":
            return self.b.span(
                S_OI_LANGCHAIN,
                "LangGraph",
                "internal",
                parent,
                start,
                end,
                {"openinference.span.kind": "CHAIN", "graph.node.id": name},
                error=err,
                exception=exc,
                ok=not failed,
            )
        if conv == "langchain_traceloop":
            return self.b.span(
                S_TL_LANGCHAIN,
                "execute_task LangGraph",
                "internal",
                parent,
                start,
                end,
                {
                    "traceloop.span.kind": "task",
                    "gen_ai.operation.name": "execute_task",
                    "gen_ai.task.name": "LangGraph",
                    "gen_ai.task.status": "failure" if failed else "success",
                    "error.type": exc,
                },
                error=err,
                exception=exc,
            )
        if conv == "pydantic_ai":
            return self.b.span(
                S_PYDANTIC_AI,
                f"invoke_agent {name}",
                "internal",
                parent,
                start,
                end,
                {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name},
                error=err,
                exception=exc,
            )
        if conv == "openai_agents":
            wf = self.b.span(
                S_OI_AGENTS,
                "Agent workflow",
                "internal",
                parent,
                start,
                end,
                {"openinference.span.kind": "CHAIN"},
                ok=True,
            )
            return self.b.span(
                S_OI_AGENTS,
                f"{name}_agent",
                "internal",
                wf,
                start + 100_000,
                end - 100_000,
                {"openinference.span.kind": "AGENT", "agent.name": f"{name}_agent"},
                error=err,
                ok=not failed,
            )
        if conv == "llamaindex":
            return self.b.span(
                S_OI_LLAMA,
                "FunctionAgent.run",
                "internal",
                parent,
                start,
                end,
                {"openinference.span.kind": "CHAIN"},
                error=err,
                exception=exc,
                ok=not failed,
            )
        if self.conv == "openinference":
            return self.b.span(
                S_OI_LANGCHAIN,
                name,
                "internal",
                parent,
                start,
                end,
                {"openinference.span.kind": "CHAIN"},
            )
        if self.conv == "openllmetry":
            return self.b.span(
                S_TRACELOOP,
                f"{name}.agent",
                "internal",
                parent,
                start,
                end,
                {"traceloop.span.kind": "agent", "traceloop.entity.name": name},
            )
        return self.b.span(
            S_APP,
            f"invoke_agent {name}",
            "internal",
            parent,
            start,
            end,
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name},
        )

    # -- tools -----------------------------------------------------------------------------
    def _tool(self, tool: _Tool, parent: bytes, start: int, end: int) -> None:
        self.cur_tool = tool
        self._tool_runs(tool, parent, start, end)
        self.cur_tool = None
        if self.chat is not None:
            self.chat.tool_result(tool, self.last_result)

    def _tool_runs(self, tool: _Tool, parent: bytes, start: int, end: int) -> None:
        r = self.r
        if self.conv == "agent_guide" and tool.fault in ("tool_retry", "policy_blocked"):
            self._guide_tool(tool, parent, start, end)
        elif tool.fault == "tool_retry":
            mid = start + (end - start) // 3
            self._tool_span(tool.name, parent, start, mid, result=None, error="TimeoutError")
            sid = self._tool_span(
                tool.name, parent, mid + 500_000, end, result=_valid_result(tool.name, r)
            )
            self.tool_retries.append({"span_id": sid.hex(), "tool": tool.name, "retries": 1})
        elif tool.fault == "swallowed_error":
            sid = self._tool_span(
                tool.name, parent, start, end, result=None, error="ToolExecutionError"
            )
            self.swallowed.append(sid.hex())
        elif tool.fault == "schema_invalid":
            sid = self._tool_span(
                tool.name, parent, start, end, result=_invalid_result(tool.name, r)
            )
            self.invalid.append(sid.hex())
        else:
            self._tool_span(tool.name, parent, start, end, result=_valid_result(tool.name, r))

    def _tool_span(
        self,
        name: str,
        parent: bytes,
        start: int,
        end: int,
        result: dict[str, Any] | None,
        error: str | None = None,
    ) -> bytes:
        r = self.r
        call_id = f"call_{r.getrandbits(48):012x}"
        args = json.dumps({"query": f"q{r.randint(1, 999)}"})
        res = json.dumps(result, separators=(",", ":")) if result is not None else None
        tool = self.cur_tool
        if tool is not None and tool.call_id:  # the call the model made (content)
            call_id, args = tool.call_id, tool.args
        self.last_result = res if res is not None else f"{error}"
        conv = self.conv
        if conv == "agent_guide":
            code = {"TimeoutError": "TIMEOUT", "ToolExecutionError": "TOOL_ERROR"}.get(
                error or "", error
            )
            # a failed tool says so by its error code; its status may stay unset
            sid = self.b.span(
                S_APP, f"tool.invoke:{name}", "internal", parent, start, end,
                {
                    "tool_name": name,
                    "latency_ms": (end - start) // 1_000_000,
                    "error_code": code,
                    "gen_ai.tool.call.arguments": args,
                    "gen_ai.tool.call.result": res,
                },
                error=error if error and r.random() < 0.5 else None,
            )  # fmt: skip
        elif conv in FRAMEWORK_CONVENTIONS:
            sid = self._fw_tool(name, parent, start, end, call_id, args, res, error)
        elif conv == "openinference":
            attrs: dict[str, Any] = {
                "openinference.span.kind": "TOOL",
                "tool.name": name,
                "input.value": args,
                "output.value": res,
            }
            sid = self.b.span(
                S_OI_LANGCHAIN,
                name,
                "internal",
                parent,
                start,
                end,
                attrs,
                error=error,
                exception=error,
            )
        elif conv == "openllmetry":
            attrs = {
                "traceloop.span.kind": "tool",
                "traceloop.entity.name": name,
                "traceloop.entity.input": args,
                "traceloop.entity.output": res,
            }
            sid = self.b.span(
                S_TRACELOOP, f"{name}.tool", "internal", parent, start, end, attrs, error=error
            )
        else:
            attrs = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.arguments": args,
                "gen_ai.tool.call.result": res,
                "error.type": error,
            }
            sid = self.b.span(
                S_APP, f"execute_tool {name}", "internal", parent, start, end, attrs, error=error
            )
        # tools that reach out: an HTTP or a database child
        if name in ("web_search", "fetch_url", "get_weather", "send_email") and error is None:
            host = {"web_search": "api.search.example", "get_weather": "api.weather.example"}.get(
                name, "example.org"
            )
            a, b = start + (end - start) // 5, end - (end - start) // 5
            self.b.span(
                S_HTTPX,
                "GET",
                "client",
                sid,
                a,
                b,
                _http_attrs(host, "GET", 200, self._new_http(), f"/{name}"),
            )
        elif name == "run_sql" and error is None:
            a, b = start + (end - start) // 5, end - (end - start) // 5
            self.b.span(
                S_DB,
                "SELECT analytics",
                "client",
                sid,
                a,
                b,
                {
                    "db.system": "postgresql",
                    "db.name": "analytics",
                    "db.statement": "SELECT day, total FROM t",
                },
            )
        return sid

    def _new_http(self) -> bool:
        return self.conv in ("otel_genai", "litellm_v2", "bifrost", "portkey")

    # -- LLM calls -------------------------------------------------------------------------
    def _resp_id(self, prefix: str) -> str:
        self.n_resp += 1
        return f"{prefix}{self.b.trace_id.hex()[:12]}{self.n_resp:04d}"

    def _call(self, ci: int, parent: bytes, start: int, end: int) -> None:
        call = self.p.calls[ci]
        stack = call.stack
        if call.replay_of >= 0:
            call.resp_id = self.p.calls[call.replay_of].resp_id
        else:
            call.resp_id = self._resp_id("chatcmpl-" if stack.provider != "anthropic" else "msg_")
        fault = call.fault
        served_raw = (stack.substitute if fault == "mismatch" else stack.served)[call.model]
        conv = self.conv
        if call.replay_of >= 0:
            call.tokens = self.p.calls[call.replay_of].tokens
        else:
            call.tokens = (self.r.randint(200, 4000), self.r.randint(20, 800))
        mark = len(self.b.order)
        if conv in GATEWAY_CONVENTIONS:
            truth = getattr(self, f"_gw_{conv}")(call, parent, start, end, served_raw)
        elif conv == "agent_guide":
            truth = self._guide_call(call, parent, start, end, served_raw)
        elif conv in FRAMEWORK_CONVENTIONS:
            truth = self._fw_call(call, parent, start, end, served_raw)
        else:
            truth = self._app_call(call, parent, start, end, served_raw)
        truth["step"] = call.step
        if self.chat is not None:
            self.chat.call(ci, truth, self.b.order[mark:])
        self.calls_truth.append(truth)

    def _app_call(
        self, call: _Call, parent: bytes, start: int, end: int, served_raw: str
    ) -> dict[str, Any]:
        """App-level conventions: each LLM span is honest; fallback = a failed span, then a
        sibling span to another provider; retry = HTTP children (500, then 200)."""
        stack = call.stack
        fault = call.fault
        req = (stack.provider, normalize_model(call.model))
        if fault == "fallback":
            fb = FALLBACK_OF[self.p.stack_name]
            mid = start + (end - start) // 4
            first = self._llm_span(call, stack, call.model, "", parent, start, mid, statuses=(500,))
            del first
            fb_model = fb.planner
            fb_served = fb.served[fb_model]
            call2 = _Call(call.step, fb_model, fb, resp_id=self._resp_id("fb-"))
            sid = self._llm_span(
                call2, fb, fb_model, fb_served, parent, mid + 1_000_000, end, statuses=(200,)
            )
            chain = [
                _entry(stack.provider, call.model, "error:500"),
                _entry(fb.provider, fb_served, "ok"),
            ]
            return self._expect(
                sid,
                (fb.provider, normalize_model(fb_model)),
                (fb.provider, normalize_model(fb_served)),
                self._app_evidence(False),
                chain=chain,
                fallback=True,
            )
        if fault == "cache_hit":
            sid = self._llm_span(
                call, stack, call.model, served_raw, parent, start, end, statuses=()
            )
            return self._expect(
                sid,
                req,
                (stack.provider, normalize_model(served_raw)),
                self._app_evidence(True),
                chain=[_entry(stack.provider, served_raw, "ok")],
                cache=("exact", "response_id_seen"),
            )
        statuses = (500, 200) if fault == "llm_retry" else (200,)
        sid = self._llm_span(
            call, stack, call.model, served_raw, parent, start, end, statuses=statuses
        )
        chain = [_entry(stack.provider, served_raw, "error:500")] if fault == "llm_retry" else []
        chain.append(_entry(stack.provider, served_raw, "ok"))
        return self._expect(
            sid,
            req,
            (stack.provider, normalize_model(served_raw)),
            self._app_evidence(False),
            chain=chain,
            mismatch=fault == "mismatch",
        )

    def _app_evidence(self, no_http: bool) -> str:
        if no_http and self.conv in (
            "openinference",
            "openllmetry",
            "otel_genai_legacy",
            "langchain_oi",
            "langchain_traceloop",
        ):
            return "response_model"  # no server.address on these LLM spans
        return "http_host"

    def _llm_span(
        self,
        call: _Call,
        stack: Model,
        model: str,
        served_raw: str,
        parent: bytes,
        start: int,
        end: int,
        statuses: Sequence[int],
    ) -> bytes:
        """One app-side LLM span in the trace's convention, with one HTTP child per status
        (a failed last status makes the span an error)."""
        conv = self.conv
        failed = bool(statuses) and statuses[-1] >= 400
        r = self.r
        tin, tout = r.randint(200, 4000), r.randint(20, 800)
        cache_read = r.choice((0, 0, 0, 1024)) if not failed else 0
        is_anthropic = stack.provider == "anthropic"
        err_type = (
            "openai.InternalServerError" if not is_anthropic else "anthropic.InternalServerError"
        )
        err = "Error code: 500" if failed else None
        rid = call.resp_id if not failed else None
        resp_model = served_raw if not failed else None
        if conv == "openinference":
            params = json.dumps({"model": model, "temperature": 0.2})
            out = (
                json.dumps(
                    {"id": rid, "model": served_raw, "choices": [{"message": {"content": "..."}}]}
                )
                if not failed
                else None
            )
            attrs: dict[str, Any] = {
                "llm.system": stack.provider
                if stack.provider in ("openai", "anthropic")
                else "openai",
                "llm.provider": stack.provider,
                "input.value": json.dumps(
                    {"model": model, "messages": [{"role": "user", "content": "..."}]}
                ),
                "input.mime_type": "application/json",
                "output.value": out,
                "llm.invocation_parameters": params,
                "llm.model_name": resp_model,
                "llm.token_count.prompt": tin if not failed else None,
                "llm.token_count.completion": tout if not failed else None,
                "llm.token_count.total": tin + tout if not failed else None,
                "llm.token_count.prompt_details.cache_read": cache_read or None,
                "openinference.span.kind": "LLM",
            }
            scope = S_OI_ANTHROPIC if is_anthropic else S_OI_OPENAI
            name = "Messages" if is_anthropic else "ChatCompletion"
            sid = self.b.span(
                scope,
                name,
                "internal",
                parent,
                start,
                end,
                attrs,
                error=err,
                exception=err_type if failed else None,
            )
            self._http_children(sid, stack, start, end, statuses)
            return sid
        if conv == "openllmetry":
            vendor = "anthropic" if is_anthropic else "openai"
            attrs = {
                "gen_ai.system": "Anthropic" if is_anthropic else "openai",
                "llm.request.type": "chat",
                "gen_ai.request.model": model,
                "gen_ai.request.temperature": 0.2,
                "gen_ai.response.model": resp_model,
                "gen_ai.response.id": rid,
                "gen_ai.usage.prompt_tokens": tin if not failed else None,
                "gen_ai.usage.completion_tokens": tout if not failed else None,
                "llm.usage.total_tokens": tin + tout if not failed else None,
                "gen_ai.usage.cache_read_input_tokens": cache_read or None,
                "llm.is_streaming": False,
                "error.type": err_type if failed else None,
            }
            scope = S_TL_ANTHROPIC if is_anthropic else S_TL_OPENAI
            sid = self.b.span(
                scope, f"{vendor}.chat", "client", parent, start, end, attrs, error=err
            )
            self._http_children(sid, stack, start, end, statuses)
            return sid
        legacy = conv == "otel_genai_legacy"
        host, _, port = stack.host.partition(":")
        attrs = {
            "gen_ai.operation.name": "chat",
            ("gen_ai.system" if legacy else "gen_ai.provider.name"): stack.provider,
            "gen_ai.request.model": model,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 1024,
            "gen_ai.response.model": resp_model,
            "gen_ai.response.id": rid,
            "gen_ai.response.finish_reasons": ["stop"] if not failed else None,
            ("gen_ai.usage.prompt_tokens" if legacy else "gen_ai.usage.input_tokens"): tin
            if not failed
            else None,
            ("gen_ai.usage.completion_tokens" if legacy else "gen_ai.usage.output_tokens"): tout
            if not failed
            else None,
            (
                "gen_ai.usage.cache_read_input_tokens"
                if legacy
                else "gen_ai.usage.cache_read.input_tokens"
            ): cache_read or None,
            "server.address": None if legacy else host,
            "server.port": None if legacy else int(port or 443),
            "error.type": err_type if failed else None,
        }
        scope = S_OPENAI_LEGACY if legacy else (S_ANTHROPIC_INSTR if is_anthropic else S_GENAI)
        sid = self.b.span(scope, f"chat {model}", "client", parent, start, end, attrs, error=err)
        if is_anthropic and not legacy and statuses:
            # the Anthropic SDK traces itself: a nested CLIENT span for the same call
            inner = self.b.span(
                S_ANTHROPIC_SDK,
                "anthropic.messages.create",
                "client",
                sid,
                start + 100_000,
                end - 100_000,
                {
                    "gen_ai.provider.name": "anthropic",
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "gen_ai.response.model": resp_model,
                    "gen_ai.response.id": rid,
                    "server.address": host,
                    "server.port": 443,
                    "http.response.status_code": statuses[-1],
                    "http.request.resend_count": len(statuses) - 1 or None,
                    "error.type": err_type if failed else None,
                },
                error=err,
            )
            self._http_children(inner, stack, start + 100_000, end - 100_000, statuses)
        else:
            self._http_children(sid, stack, start, end, statuses)
        return sid

    # -- agent frameworks --------------------------------------------------------------------
    def _fw_tool(
        self,
        name: str,
        parent: bytes,
        start: int,
        end: int,
        call_id: str,
        args: str,
        res: str | None,
        error: str | None,
    ) -> bytes:
        """A tool call as the framework's instrumentation writes it, in the wrapper span its
        runtime opens for each tool step (so a retry runs under another parent)."""
        conv = self.conv
        b = self.b
        exc = "RuntimeError" if error else None
        a, z = start + 100_000, end - 100_000
        if conv == "langchain_oi":
            node = b.span(
                S_OI_LANGCHAIN, "tools", "internal", parent, start, end,
                {"openinference.span.kind": "CHAIN"}, ok=True,
            )  # fmt: skip
            return b.span(
                S_OI_LANGCHAIN, name, "internal", node, a, z,
                {
                    "openinference.span.kind": "TOOL",
                    "tool.name": name,
                    "tool.description": f"The {name} tool.",
                    "input.value": args,
                    "output.value": res,
                },
                error=error, exception=exc, ok=error is None,
            )  # fmt: skip
        if conv == "langchain_traceloop":
            node = b.span(
                S_TL_LANGCHAIN, "execute_task tools", "internal", parent, start, end,
                {
                    "traceloop.span.kind": "task",
                    "gen_ai.operation.name": "execute_task",
                    "gen_ai.task.name": "tools",
                },
            )  # fmt: skip
            return b.span(
                S_TL_LANGCHAIN, f"execute_tool {name}", "internal", node, a, z,
                {
                    "traceloop.span.kind": "tool",
                    "traceloop.entity.name": name,
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": name,
                    "gen_ai.tool.type": "function",
                    "gen_ai.task.status": "failure" if error else "success",
                    "gen_ai.tool.call.result": res,
                    "error.type": exc,
                },
                error=error, exception=exc,
            )  # fmt: skip
        if conv == "pydantic_ai":  # ModelRetry: the tool's span is an error, the model retries
            return b.span(
                S_PYDANTIC_AI, f"execute_tool {name}", "internal", parent, start, end,
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": name,
                    "gen_ai.tool.call.id": call_id,
                    "gen_ai.tool.call.arguments": args,
                    "gen_ai.tool.call.result": res if res is not None else f"{error}, try again",
                    "pydantic_ai.tool.retry.cause": "model_retry" if error else None,
                    "pydantic_ai.tool.retry.attempt": 1 if error else None,
                },
                error=error, exception="ModelRetry" if error else None,
            )  # fmt: skip
        if conv == "openai_agents":  # in the turn of the call that asked for it
            return b.span(
                S_OI_AGENTS, name, "internal", self.turn or parent, start, end,
                {
                    "openinference.span.kind": "TOOL",
                    "tool.name": name,
                    "input.value": args,
                    "output.value": res,
                },
                error=error, ok=error is None,
            )  # fmt: skip
        node = b.span(
            S_OI_LLAMA, "BaseWorkflowAgent.call_tool", "internal", parent, start, end,
            {"openinference.span.kind": "CHAIN"}, ok=True,
        )  # fmt: skip
        return b.span(
            S_OI_LLAMA, "FunctionTool.acall", "internal", node, a, z,
            {
                "openinference.span.kind": "TOOL",
                "tool.name": name,
                "input.value": args,
                "output.value": res,
            },
            error=error, exception=exc, ok=error is None,
        )  # fmt: skip

    def _fw_call(
        self, call: _Call, parent: bytes, start: int, end: int, served_raw: str
    ) -> dict[str, Any]:
        """One logical LLM call in a framework's shape, with its faults: the SDK's or the
        framework's retry, the framework's fallback (or the app's), LangChain's cache, a
        call that fails the run."""
        stack, fault, conv, r = call.stack, call.fault, self.conv, self.r
        req = (stack.provider, normalize_model(call.model))
        served = (stack.provider, normalize_model(served_raw))
        ev = "http_host"
        if fault == "run_failure":
            w = self._fw_wrapper(parent, start, end, failed=True)
            self._fw_llm(stack, call.model, "", w, start + 200_000, end - 200_000, (500, 500),
                         call.resp_id, call.tokens)  # fmt: skip
            sid = self.last_llm
            e = _entry(stack.provider, call.model, "error:500")
            # a failed span names the model asked for as its model (not PydanticAI's; an
            # Anthropic call answers for the Anthropic SDK's span inside it, which does not)
            quiet = conv == "pydantic_ai" or stack.provider == "anthropic"
            ev = "span_attribute" if quiet else "response_model"
            out = self._expect(sid, req, (stack.provider, req[1]), ev, chain=[e, e])
            out["failed"] = True
            return out
        if fault == "cache_hit":  # LangChain's cache: no request, the stored answer replayed
            w = self._fw_wrapper(parent, start, end)
            a = start + 300_000
            self._fw_llm(stack, call.model, call.model, w, a, a + r.randint(200_000, 900_000),
                         (), call.resp_id if conv == "langchain_oi" else "", call.tokens)  # fmt: skip
            evidence = "response_id_seen" if conv == "langchain_oi" else "no_provider_call"
            return self._expect(
                self.last_llm, req, req, self._app_evidence(True),
                chain=[_entry(stack.provider, call.model, "ok")], cache=("exact", evidence),
            )  # fmt: skip
        if fault == "fallback":
            return self._fw_fallback(call, parent, start, end)
        if fault == "llm_retry":
            framework_retry = conv in ("langchain_oi", "langchain_traceloop", "openai_agents")
            if framework_retry and r.random() < 0.5:
                return self._fw_framework_retry(call, parent, start, end, served_raw)
        statuses = (500, 200) if fault == "llm_retry" else (200,)
        w = self._fw_wrapper(parent, start, end)
        self._fw_llm(stack, call.model, served_raw, w, start + 200_000, end - 200_000, statuses,
                     call.resp_id, call.tokens)  # fmt: skip
        chain = [_entry(stack.provider, served_raw, "error:500")] if fault == "llm_retry" else []
        chain.append(_entry(stack.provider, served_raw, "ok"))
        if conv in _NO_SERVED_MODEL:
            served = req  # the span names the model asked for only
        return self._expect(self.last_llm, req, served, ev, chain=chain,
                            mismatch=fault == "mismatch")  # fmt: skip

    def _fw_wrapper(self, parent: bytes, start: int, end: int, failed: bool = False) -> bytes:
        """The spans a framework's runtime opens around one model call (a LangGraph agent
        node, an OpenAI Agents turn, a LlamaIndex agent step); the LLM span's parent."""
        conv, b = self.conv, self.b
        err = "run failed" if failed else None
        if conv == "langchain_oi":
            node = b.span(
                S_OI_LANGCHAIN, "agent", "internal", parent, start, end,
                {"openinference.span.kind": "AGENT"}, error=err, ok=not failed,
            )  # fmt: skip
            return b.span(
                S_OI_LANGCHAIN, "RunnableSequence", "internal", node, start + 50_000,
                end - 50_000, {"openinference.span.kind": "CHAIN"}, error=err, ok=not failed,
            )  # fmt: skip
        if conv == "langchain_traceloop":
            node = b.span(
                S_TL_LANGCHAIN, "execute_task agent", "internal", parent, start, end,
                {"traceloop.span.kind": "task", "gen_ai.task.name": "agent"}, error=err,
            )  # fmt: skip
            return b.span(
                S_TL_LANGCHAIN, "execute_task RunnableSequence", "internal", node,
                start + 50_000, end - 50_000,
                {"traceloop.span.kind": "task", "gen_ai.task.name": "RunnableSequence"},
                error=err,
            )  # fmt: skip
        if conv == "openai_agents":
            self.turn = b.span(
                S_OI_AGENTS, "turn", "internal", parent, start, end,
                {"openinference.span.kind": "CHAIN"}, ok=True,
            )  # fmt: skip
            return self.turn
        if conv == "llamaindex":
            return b.span(
                S_OI_LLAMA, "BaseWorkflowAgent.run_agent_step", "internal", parent, start, end,
                {"openinference.span.kind": "CHAIN"}, error=err, ok=not failed,
            )  # fmt: skip
        return parent  # PydanticAI: the chat span is the agent's child

    def _fw_llm(
        self,
        stack: Model,
        model: str,
        served_raw: str,
        parent: bytes,
        start: int,
        end: int,
        statuses: Sequence[int],
        rid: str,
        tokens: tuple[int, int],
        beside: bytes = b"",
    ) -> None:
        """One LLM span (`self.last_llm`) with its requests, where the instrumentation puts
        them: under it (PydanticAI, OpenAI Agents, LlamaIndex), beside it (Traceloop:
        under its parent, or `beside`), or under the app root (OpenInference's LangChain
        spans are never current). An Anthropic call also gets the Anthropic SDK's own span
        around its request."""
        conv, b, r = self.conv, self.b, self.r
        failed = bool(statuses) and statuses[-1] >= 400
        anthropic = stack.provider == "anthropic"
        tin, tout = tokens
        err = "Error code: 500" if failed else None
        resp = served_raw if not failed else None
        rid_ = rid if not failed else None
        host = stack.host
        sdk_name = "Anthropic" if anthropic else "OpenAI"
        if conv == "langchain_oi":
            meta = {"id": rid_, "model_name": resp} if resp else {}
            out = json.dumps(
                {
                    "generations": [[{"text": "...", "message": {"kwargs": {
                        "content": "...", "response_metadata": meta}}}]],
                    "llm_output": {"id": rid_, "model_name": resp} if rid_ else None,
                    "type": "LLMResult",
                }
            ) if resp else None  # fmt: skip
            attrs: dict[str, Any] = {
                "openinference.span.kind": "LLM",
                "llm.provider": stack.provider,
                "llm.system": stack.provider,
                "llm.invocation_parameters": json.dumps({"model": model, "stream": False}),
                "llm.model_name": resp or model,
                "llm.token_count.prompt": tin if not failed else None,
                "llm.token_count.completion": tout if not failed else None,
                "output.value": out,
            }
            sid = b.span(S_OI_LANGCHAIN, f"Chat{sdk_name}", "internal", parent, start, end,
                         attrs, error=err, exception="APIError" if failed else None,
                         ok=not failed)  # fmt: skip
            req_parent = self.root_id
        elif conv == "langchain_traceloop":
            attrs = {
                "gen_ai.provider.name": stack.provider,
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                "gen_ai.response.model": resp or model,
                "gen_ai.response.id": rid_ or None,
                "gen_ai.usage.input_tokens": tin if not failed else None,
                "gen_ai.usage.output_tokens": tout if not failed else None,
                "gen_ai.task.status": "failure" if failed else None,
                "error.type": "OpenAIAPIError" if failed else None,
            }
            sid = b.span(S_TL_LANGCHAIN, f"Chat{sdk_name}.chat", "client", parent, start, end,
                         attrs, error=err)  # fmt: skip
            req_parent = beside or parent
        elif conv == "pydantic_ai":
            h, _, port = host.partition(":")
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": stack.provider,
                "gen_ai.system": stack.provider,
                "server.address": h,
                "server.port": int(port or 443),
                "gen_ai.request.model": model,
                "gen_ai.response.model": resp,
                "gen_ai.response.id": rid_ or None,
                "gen_ai.usage.input_tokens": tin if not failed else None,
                "gen_ai.usage.output_tokens": tout if not failed else None,
            }
            sid = b.span(S_PYDANTIC_AI, f"chat {model}", "client", parent, start, end, attrs,
                         error=err, exception="ModelHTTPError" if failed else None)  # fmt: skip
            req_parent = sid
        elif conv == "openai_agents":  # OpenAI-compatible endpoints, Anthropic's included
            attrs = {
                "openinference.span.kind": "LLM",
                "llm.system": "openai",
                "llm.model_name": model,
                "llm.invocation_parameters": json.dumps({"base_url": f"https://{host}/v1/"}),
                "llm.token_count.prompt": tin if not failed else None,
                "llm.token_count.completion": tout if not failed else None,
            }
            sid = b.span(S_OI_AGENTS, "generation", "internal", parent, start, end, attrs,
                         error=err, ok=not failed)  # fmt: skip
            req_parent = sid
            anthropic = False  # through the OpenAI SDK: no Anthropic SDK span
        else:  # llamaindex: the request's preparation, then the call
            params = json.dumps({"model_name": model, "is_chat_model": True})
            base = {
                "openinference.span.kind": "LLM",
                "llm.provider": stack.provider,
                "llm.system": stack.provider,
                "llm.model_name": model,
                "llm.invocation_parameters": params,
            }
            b.span(S_OI_LLAMA, f"{sdk_name}._prepare_chat_with_tools", "internal", parent,
                   start, start + 300_000, base, ok=True)  # fmt: skip
            start += 400_000
            attrs = {
                **base,
                "llm.token_count.prompt": tin if not failed else None,
                "llm.token_count.completion": tout if not failed else None,
            }
            sid = b.span(S_OI_LLAMA, f"{sdk_name}.achat", "internal", parent, start, end,
                         attrs, error=err, exception="APIError" if failed else None,
                         ok=not failed)  # fmt: skip
            req_parent = sid
        self.last_llm = sid
        if not statuses:
            return
        a, z = start + 100_000, end - 100_000
        if anthropic:  # the Anthropic SDK traces itself, around its requests
            h, _, port = host.partition(":")
            req_parent = b.span(
                S_ANTHROPIC_SDK, "anthropic.messages.create", "client", req_parent, a, z,
                {
                    "gen_ai.provider.name": "anthropic",
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "gen_ai.response.model": resp,
                    "gen_ai.response.id": rid_ or None,
                    "server.address": h,
                    "server.port": int(port or 443),
                    "http.response.status_code": statuses[-1],
                    "error.type": "api_error" if failed else None,
                },
                error=err, ok=not failed,
            )  # fmt: skip
            a, z = a + 50_000, z - 50_000
        del r
        self._http_children(req_parent, stack, a, z, statuses)

    def _fw_framework_retry(
        self, call: _Call, parent: bytes, start: int, end: int, served_raw: str
    ) -> dict[str, Any]:
        """The framework retries the call (`.with_retry()`, the Agents runner's retry): two
        sibling LLM spans, the first failed, each with its own request."""
        stack, conv, b = call.stack, self.conv, self.b
        mid = start + (end - start) // 3
        if conv == "langchain_oi":  # RunnableRetry: a CHAIN named after the model
            w = self._fw_wrapper(parent, start, end)
            retry = b.span(S_OI_LANGCHAIN, "ChatOpenAI" if stack.provider != "anthropic"
                           else "ChatAnthropic", "internal", w, start + 100_000, end - 100_000,
                           {"openinference.span.kind": "CHAIN"}, ok=True)  # fmt: skip
        elif conv == "langchain_traceloop":
            w = self._fw_wrapper(parent, start, end)
            retry = b.span(S_TL_LANGCHAIN, "execute_task ChatOpenAI", "internal", w,
                           start + 100_000, end - 100_000,
                           {"traceloop.span.kind": "task"})  # fmt: skip
        else:  # openai_agents: both in one turn
            retry = self._fw_wrapper(parent, start, end)
        self._fw_llm(stack, call.model, "", retry, start + 200_000, mid, (500,), "", (0, 0))
        self._fw_llm(stack, call.model, served_raw, retry, mid + 500_000, end - 200_000, (200,),
                     call.resp_id, call.tokens)  # fmt: skip
        req = (stack.provider, normalize_model(call.model))
        served = req if conv in _NO_SERVED_MODEL else (stack.provider, normalize_model(served_raw))
        chain = [
            _entry(stack.provider, call.model, "error:500"),
            _entry(*served, "ok"),
        ]
        return self._expect(self.last_llm, req, served, "http_host", chain=chain)

    def _fw_fallback(self, call: _Call, parent: bytes, start: int, end: int) -> dict[str, Any]:
        """The framework's fallback: LangChain's `.with_fallbacks()` (a wrapper beside the
        attempts), PydanticAI's FallbackModel (one span named after the model that
        answered, a failed attempt child), or the app running the agent again on another
        model (OpenAI Agents, LlamaIndex: a failed agent subtree, then another)."""
        stack, conv, b, r = call.stack, self.conv, self.b, self.r
        fb = FALLBACK_OF[self.p.stack_name]
        fb_model = fb.planner
        fb_served = fb.served[fb_model]
        mid = start + (end - start) // 3
        w = parent
        if conv in ("langchain_oi", "langchain_traceloop"):
            w = self._fw_wrapper(parent, start, end)
            if conv == "langchain_oi":
                b.span(S_OI_LANGCHAIN, "RunnableWithFallbacks", "internal", w,
                       start + 100_000, end - 100_000, {"openinference.span.kind": "CHAIN"},
                       ok=True)  # fmt: skip
                beside = b""
            else:  # the requests land under the wrapper task, the LLM spans beside it
                beside = b.span(S_TL_LANGCHAIN, "execute_task RunnableWithFallbacks",
                                "internal", w, start + 100_000, end - 100_000,
                                {"traceloop.span.kind": "task"})  # fmt: skip
            self._fw_llm(stack, call.model, "", w, start + 200_000, mid, (500,), "", (0, 0),
                         beside)  # fmt: skip
            self._fw_llm(fb, fb_model, fb_served, w, mid + 500_000, end - 200_000, (200,),
                         call.resp_id, call.tokens, beside)  # fmt: skip
            sid = self.last_llm
        elif conv == "pydantic_ai":
            h, _, port = fb.host.partition(":")
            sid = b.span(
                S_PYDANTIC_AI, f"chat {fb_model}", "client", parent, start, end,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": fb.provider,
                    "server.address": h,
                    "server.port": int(port or 443),
                    "gen_ai.request.model": fb_model,
                    "gen_ai.response.model": fb_served,
                    "gen_ai.response.id": call.resp_id,
                    "gen_ai.usage.input_tokens": call.tokens[0],
                    "gen_ai.usage.output_tokens": call.tokens[1],
                },
            )  # fmt: skip
            sh, _, sport = stack.host.partition(":")
            b.span(
                S_PYDANTIC_AI, f"model request attempt {call.model}", "internal", sid,
                start + 100_000, mid,
                {
                    "gen_ai.provider.name": stack.provider,
                    "server.address": sh,
                    "server.port": int(sport or 443),
                    "gen_ai.request.model": call.model,
                    "pydantic_ai.model_request.attempt": 0,
                },
                error="Error code: 500", exception="ModelHTTPError",
            )  # fmt: skip
            # the attempts' requests (and the Anthropic SDK's spans) are the chat span's
            # children, each within its attempt's time
            for st, model, answer, a, z, code in (
                (stack, call.model, None, start + 300_000, mid - 200_000, 500),
                (fb, fb_model, fb_served, mid + 500_000, end - 300_000, 200),
            ):
                p = sid
                if st.provider == "anthropic":
                    ah, _, aport = st.host.partition(":")
                    p = b.span(
                        S_ANTHROPIC_SDK, "anthropic.messages.create", "client", sid, a, z,
                        {
                            "gen_ai.provider.name": "anthropic",
                            "gen_ai.request.model": model,
                            "gen_ai.response.model": answer,
                            "gen_ai.response.id": call.resp_id if answer else None,
                            "server.address": ah,
                            "server.port": int(aport or 443),
                            "http.response.status_code": code,
                        },
                        error="Error code: 500" if code >= 400 else None, ok=code < 400,
                    )  # fmt: skip
                    a, z = a + 50_000, z - 50_000
                self._http_children(p, st, a, z, (code,))
        else:  # the app catches the failed run and runs the agent again on another model
            fail_end = start + (end - start) // 4
            run = self._step("fallback", self.root_id, start, fail_end, failed=True)
            w0 = self._fw_wrapper(run, start + 50_000, fail_end - 50_000)
            self._fw_llm(stack, call.model, "", w0, start + 100_000, fail_end - 100_000,
                         (500,), "", (0, 0))  # fmt: skip
            w = self._fw_wrapper(parent, fail_end + 500_000, end)
            self._fw_llm(fb, fb_model, fb_served, w, fail_end + 600_000, end - 100_000, (200,),
                         call.resp_id, call.tokens)  # fmt: skip
            sid = self.last_llm
        del r
        fb_req = (_claimed(fb.provider, fb_model), normalize_model(fb_model))
        served = fb_req if conv in _NO_SERVED_MODEL else (fb.provider, normalize_model(fb_served))
        chain = [_entry(stack.provider, call.model, "error:500"), _entry(*served, "ok")]
        return self._expect(sid, fb_req, served, "http_host", chain=chain, fallback=True)

    def _http_children(
        self, parent: bytes, stack: Model, start: int, end: int, statuses: Sequence[int]
    ) -> None:
        if not statuses:
            return
        n = len(statuses)
        d = (end - start) // n
        path = "/v1/messages" if stack.provider == "anthropic" else "/v1/chat/completions"
        if stack.provider == "azure.ai.openai":
            path = "/openai/deployments/gpt-4o/chat/completions"
        for i, st in enumerate(statuses):
            a = start + i * d + 200_000
            b = start + (i + 1) * d - 200_000
            self.b.span(
                S_HTTPX,
                "POST",
                "client",
                parent,
                a,
                b,
                _http_attrs(stack.host, "POST", st, self._new_http(), path, resend=i),
                error=str(st) if st >= 400 else None,
            )

    def _expect(
        self,
        sid: bytes,
        requested: tuple[str, str],
        served: tuple[str, str],
        evidence: str,
        *,
        chain: list[str],
        mismatch: bool = False,
        fallback: bool = False,
        cache: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        retries = sum(
            1
            for i in range(1, len(chain))
            if not chain[i - 1].endswith(":ok")
            and chain[i - 1].rsplit(":", 2)[0] == chain[i].rsplit(":", 2)[0]
        )
        return {
            "span_id": sid.hex(),
            "requested": f"{requested[0]}/{requested[1]}",
            "served": f"{served[0]}/{served[1]}",
            "evidence": evidence,
            "mismatch": mismatch,
            "cache_hit": cache is not None,
            "cache_type": cache[0] if cache else None,
            "cache_evidence": cache[1] if cache else None,
            "attempts": len(chain),
            "retries": retries,
            "fallback": fallback,
            "chain": chain,
        }

    # -- the agent-tracing guide (`agent_guide`) -----------------------------------------------
    def _guide_tool(self, tool: _Tool, parent: bytes, start: int, end: int) -> None:
        """A tool retry as the guide records it (two runs; or one run with `retry_count`,
        an attribute or an event), or a tool call a policy blocked (`policy_blocked`)."""
        r, b = self.r, self.b
        name = tool.name
        res = json.dumps(_valid_result(name, r), separators=(",", ":"))
        base = {"tool_name": name, "latency_ms": (end - start) // 1_000_000}
        if tool.fault == "policy_blocked":
            sid = b.span(
                S_APP, f"tool.invoke:{name}", "internal", parent, start, end,
                {**base, "error_code": "POLICY_BLOCKED"},
                error="blocked by policy" if r.random() < 0.5 else None,
                events=[("policy_blocked", start + (end - start) // 2,
                         {"policy": "no-external-email", "tool_name": name})],
            )  # fmt: skip
            self.blocked.append(sid.hex())
            return
        how = r.random()
        if how < 0.5:  # a failed run, then another
            mid = start + (end - start) // 3
            self._tool_span(name, parent, start, mid, result=None, error="TimeoutError")
            sid = self._tool_span(name, parent, mid + 500_000, end, result=_valid_result(name, r))
            self.tool_retries.append({"span_id": sid.hex(), "tool": name, "retries": 1})
            return
        n = r.randint(1, 3)
        attrs: dict[str, Any] = {**base, "gen_ai.tool.call.result": res}
        events: list[tuple[str, int, dict[str, Any]]] = []
        if how < 0.7:
            attrs["retry_count"] = n
        elif how < 0.85:
            events.append((f"retry_count={n}", end - 100_000, {}))
        else:
            events.append(("tool.retry", end - 100_000, {"retry_count": n}))
        sid = b.span(S_APP, f"tool.invoke:{name}", "internal", parent, start, end, attrs,
                     events=events)  # fmt: skip
        self.tool_retries.append({"span_id": sid.hex(), "tool": name, "retries": n})

    def _guide_call(
        self, call: _Call, parent: bytes, start: int, end: int, served_raw: str
    ) -> dict[str, Any]:
        """An LLM call as the guide records it: the router's choice (`router_decision`) is
        the model asked for, `ai.model_name` the model it ran on; retries and fallbacks
        as events (`rate_limited`, `timeout`, `fallback_triggered`), beside the SDK's
        requests when the app traces HTTP; a cache hit as an event."""
        stack, fault, r = call.stack, call.fault, self.r
        name = "agent.step:respond" if call.step == "final" else "llm.generate"
        asked = call.model
        provider, ran_on = stack.provider, served_raw
        events: list[tuple[str, int, dict[str, Any]]] = []
        requests: list[tuple[Model, int | str]] = []  # (stack, status or error type)
        mid = start + (end - start) // 3
        fail_kind = r.choice(("rate_limited", "timeout"))
        failure: int | str = 429 if fail_kind == "rate_limited" else "httpx.ReadTimeout"
        chain_fail = "error:" + ("429" if failure == 429 else "ReadTimeout")
        if not self.g_http:
            chain_fail = "error:" + fail_kind
        fb = FALLBACK_OF[self.p.stack_name]
        if fault == "fallback":
            fb_model = fb.planner
            provider, ran_on = fb.provider, fb.served[fb_model]
            if r.random() < 0.6:  # a failure, then the fallback
                events.append((fail_kind, mid - 200_000, {}))
                reason = ""
            else:  # the fallback alone, with its reason
                reason = r.choice(("provider_error", "overloaded"))
                failure = 500
                chain_fail = "error:" + ("500" if self.g_http else reason)
            ev_name = r.choice(("fallback_triggered", "fallback_triggered=true"))
            events.append((ev_name, mid, {"from_model": asked, "to_model": fb_model,
                                          "reason": reason or None}))  # fmt: skip
            requests = [(stack, failure), (fb, 200)]
        elif fault == "llm_retry":
            events.append((fail_kind, mid - 200_000, {}))
            requests = [(stack, failure), (stack, 200)]
        elif fault == "mismatch":
            ran_on = stack.substitute[asked]
            requests = [(stack, 200)]
        elif fault == "cache_hit":
            ev_name = r.choice(("semantic_cache_hit", "cache_hit"))
            events.append((ev_name, start + 100_000, {}))
        else:
            requests = [(stack, 200)]
        if "governance" in self.p.faults and call.step == "planner":
            events.append(("quota_exceeded", start + 50_000, {"quota": "tokens_per_minute"}))
            self.governance["quota_exceeded"] += 1
        if self.g_plain:
            attrs: dict[str, Any] = {"model_provider": provider, "model_name": ran_on}
        else:
            attrs = {
                "ai.model_provider": provider,
                "ai.model_name": ran_on,
                "ai.router_strategy": "cost_optimized",
                "ai.prompt_version": "v3",
            }
        alt = fb.planner
        attrs["router_decision"] = (
            json.dumps({"selected": asked, "candidates": [asked, alt], "reason": "cheapest"})
            if r.random() < 0.7
            else asked
        )
        sid = self.b.span(S_APP, name, "internal", parent, start, end, attrs,
                          events=events)  # fmt: skip
        if self.g_http and requests:
            under = sid
            if self.g_twin:  # one call, two spans: its requests under the other one
                under = self.b.span(
                    S_LITELLM, "litellm_request", "client", parent, start + 100_000,
                    end - 100_000,
                    {"gen_ai.system": requests[0][0].provider, "gen_ai.request.model": asked},
                )  # fmt: skip
            self._guide_requests(under, start + 100_000, end - 100_000, requests)
        req = (_claimed(provider, asked), normalize_model(asked))
        served = (provider, normalize_model(ran_on))
        evidence = "http_host" if self.g_http and requests else "response_model"
        if fault == "fallback":
            chain = [_entry(stack.provider, asked, chain_fail), _entry(*served, "ok")]
            return self._expect(sid, req, served, evidence, chain=chain, fallback=True,
                                mismatch=True)  # fmt: skip
        if fault == "llm_retry":
            chain = [_entry(*served, chain_fail), _entry(*served, "ok")]
            return self._expect(sid, req, served, evidence, chain=chain)
        cache = None
        if fault == "cache_hit":
            cache = ("semantic" if events[0][0].startswith("semantic") else "exact", "span_event")
        return self._expect(sid, req, served, evidence, chain=[_entry(*served, "ok")],
                            mismatch=fault == "mismatch", cache=cache)  # fmt: skip

    def _guide_requests(
        self, parent: bytes, start: int, end: int, requests: list[tuple[Model, int | str]]
    ) -> None:
        """The SDK's HTTP requests under a guide LLM span: a status, or a timeout (no
        response: an error type)."""
        d = (end - start) // len(requests)
        for i, (st, outcome) in enumerate(requests):
            a, z = start + i * d + 200_000, start + (i + 1) * d - 200_000
            path = "/v1/messages" if st.provider == "anthropic" else "/v1/chat/completions"
            resend = sum(1 for x, _ in requests[:i] if x is st)  # (a fallback is no resend)
            if isinstance(outcome, int):
                attrs = _http_attrs(st.host, "POST", outcome, True, path, resend=resend)
                err = str(outcome) if outcome >= 400 else None
            else:
                h, _, port = st.host.partition(":")
                attrs = {
                    "http.request.method": "POST",
                    "url.full": f"https://{st.host}{path}",
                    "server.address": h,
                    "server.port": int(port or 443),
                    "http.request.resend_count": resend or None,
                    "error.type": outcome,
                }
                err = "timed out"
            self.b.span(S_HTTPX, "POST", "client", parent, a, z, attrs, error=err)

    def _guide_signals(self, root: bytes, start: int, end: int) -> None:
        """What the guide records beside the agent's work: an input guardrail (that may
        block), evaluations after the answer (`eval.run`), a key rotation."""
        p, r, b = self.p, self.r, self.b
        head = start + _OVERHEAD_NS // 4, start + _OVERHEAD_NS * 3 // 4
        blocks = "policy_blocked" in p.faults and not self.blocked
        if blocks or r.random() < 0.3:
            attrs: dict[str, Any] = {"guardrail.name": "pii_filter", "guardrail.type": "input"}
            if r.random() < 0.5:
                attrs["guardrail.blocked"] = blocks
            else:
                attrs["guardrail.action"] = "block" if blocks else "allow"
            sid = b.span(S_APP, "guardrail.check", "internal", root, *head, attrs)
            if blocks:
                self.blocked.append(sid.hex())
        n = r.choice((0, 1, 1, 2))
        if "eval_failed" in p.faults:
            n = max(n, 1)
        if n:
            failing = r.randrange(n) if "eval_failed" in p.faults else -1
            tail = end - _OVERHEAD_NS + 100_000
            d = (_OVERHEAD_NS - 200_000) // n
            failed, low = 0, None
            for i in range(n):
                ok = i != failing
                metric = r.choice(("faithfulness", "relevance", "groundedness"))
                attrs = {("eval.type" if r.random() < 0.5 else "evaluator_type"): metric}
                if r.random() < 0.2:  # a verdict and no score
                    attrs["eval.result"] = "pass" if ok else "fail"
                else:
                    score = round(r.uniform(0.72, 0.99) if ok else r.uniform(0.1, 0.65), 3)
                    attrs[f"eval.score.{metric}"] = score
                    attrs["eval.threshold"] = 0.7
                    if r.random() < 0.5:
                        attrs["eval.passed"] = ok
                    low = score if low is None else min(low, score)
                failed += not ok
                b.span(S_APP, "eval.run", "internal", root, tail + i * d,
                       tail + (i + 1) * d - 50_000, attrs)  # fmt: skip
            self.evals = (n, failed, low)
        if "governance" in p.faults and r.random() < 0.5:
            self._root_event(root, "key_rotated", start + 10_000, {"key_id": "k-2"})
            self.governance["key_rotated"] += 1

    def _root_event(self, root: bytes, name: str, t: int, attrs: dict[str, Any]) -> None:
        for spans in self.b.groups.values():
            for s in spans:
                if s.span_id == root:
                    ev = s.events.add()
                    ev.name = name
                    ev.time_unix_nano = t
                    ev.attributes.extend(key_values(attrs))
                    return

    # -- gateway conventions ---------------------------------------------------------------
    def _gw_litellm(
        self, call: _Call, parent: bytes, start: int, end: int, served_raw: str
    ) -> dict[str, Any]:
        """LiteLLM legacy, in-process SDK with USE_OTEL_LITELLM_REQUEST_SPAN: one
        `litellm_request` span per recorded attempt (later retries collapse into markers)."""
        stack, fault = call.stack, call.fault
        prov = _LITELLM_PROVIDER[stack.provider]
        group = call.model
        req = (stack.provider, normalize_model(group))

        def span(
            s: int,
            e: int,
            provider: str,
            model: str,
            served: str | None,
            *,
            headers: dict[str, int],
            failed: bool = False,
            cache: bool = False,
            rid: str | None = None,
        ) -> bytes:
            hidden: dict[str, Any] = {
                "model_id": f"dep-{provider}",
                "api_base": f"https://{_API_BASE[provider]}",
                "litellm_model_name": f"{provider}/{served}" if served else None,
                "response_cost": 0.0 if cache else round(self.r.uniform(0.001, 0.05), 5),
                "cache_key": "ck-" + (rid or "") if cache else None,
                "additional_headers": {
                    "x-litellm-attempted-retries": headers.get("retries", 0),
                    "x-litellm-attempted-fallbacks": headers.get("fallbacks", 0),
                    "x-litellm-max-retries": 2,
                },
            }
            attrs = {
                "gen_ai.system": provider,
                "gen_ai.request.model": model,
                "llm.request.type": "acompletion",
                "gen_ai.operation.name": "chat",
                "gen_ai.response.model": served,
                "gen_ai.response.id": rid,
                "gen_ai.usage.input_tokens": None if failed else self.r.randint(200, 4000),
                "gen_ai.usage.output_tokens": None if failed else self.r.randint(20, 800),
                "gen_ai.cost.total_cost": None if failed else hidden["response_cost"],
                "hidden_params": json.dumps(hidden),
                "llm.is_streaming": False,
                "litellm.cache_hit": True if cache else None,
                "error.type": "litellm.InternalServerError" if failed else None,
            }
            sid = self.b.span(
                S_LITELLM,
                "litellm_request",
                "internal",
                parent,
                s,
                e,
                attrs,
                error="InternalServerError" if failed else None,
                exception="litellm.InternalServerError" if failed else None,
            )
            self.b.span(
                S_LITELLM,
                "raw_gen_ai_request",
                "internal",
                sid,
                s + 100_000,
                e - 100_000,
                {f"llm.{provider}.model": model},
            )
            return sid

        mid = start + (end - start) // 3
        if fault in ("llm_retry", "fallback"):
            span(start, mid, prov, group, None, headers={}, failed=True)
            if fault == "llm_retry":
                sid = span(
                    mid + 500_000,
                    end,
                    prov,
                    group,
                    served_raw,
                    headers={"retries": 1},
                    rid=call.resp_id,
                )
                chain = [
                    _entry(stack.provider, group, "error:InternalServerError"),
                    _entry(stack.provider, served_raw, "ok"),
                ]
                return self._expect(
                    sid, req, (stack.provider, normalize_model(served_raw)), "gateway", chain=chain
                )
            fb = FALLBACK_OF[self.p.stack_name]
            fb_served = fb.served[fb.planner]
            fbp = _LITELLM_PROVIDER[fb.provider]
            sid = span(
                mid + 500_000,
                end,
                fbp,
                group,
                fb_served,
                headers={"fallbacks": 1},
                rid=call.resp_id,
            )
            chain = [
                _entry(stack.provider, group, "error:InternalServerError"),
                _entry(fb.provider, fb_served, "ok"),
            ]
            return self._expect(
                sid,
                (_claimed(fb.provider, group), normalize_model(group)),
                (fb.provider, normalize_model(fb_served)),
                "gateway",
                chain=chain,
                mismatch=True,
                fallback=True,
            )
        cache = fault == "cache_hit"
        sid = span(start, end, prov, group, served_raw, headers={}, cache=cache, rid=call.resp_id)
        return self._expect(
            sid,
            req,
            (stack.provider, normalize_model(served_raw)),
            "gateway",
            chain=[_entry(stack.provider, served_raw, "ok")],
            mismatch=fault == "mismatch",
            cache=("unknown", "litellm_cache_hit") if cache else None,
        )

    def _app_to_gateway(
        self,
        call: _Call,
        parent: bytes,
        start: int,
        end: int,
        resp_model: str | None,
        *,
        failed: bool = False,
        headers: dict[str, str] | None = None,
    ) -> tuple[bytes, bytes]:
        """The app's OTel GenAI span for a call through a gateway, and its HTTP child."""
        host = GATEWAY_HOSTS[self.conv]
        h, _, port = host.partition(":")
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",  # the app uses the OpenAI SDK against the gateway
            "gen_ai.request.model": call.model,
            "gen_ai.response.model": resp_model,
            "gen_ai.response.id": call.resp_id if not failed else None,
            "gen_ai.usage.input_tokens": self.r.randint(200, 4000),
            "gen_ai.usage.output_tokens": self.r.randint(20, 800),
            "server.address": h,
            "server.port": int(port or 443),
        }
        sid = self.b.span(S_GENAI, f"chat {call.model}", "client", parent, start, end, attrs)
        ha = _http_attrs(host, "POST", 200, True, "/v1/chat/completions")
        for k, v in (headers or {}).items():
            ha[f"http.response.header.{k}"] = [v]
        hid = self.b.span(S_HTTPX, "POST", "client", sid, start + 200_000, end - 200_000, ha)
        return sid, hid

    def _gw_litellm_v2(
        self, call: _Call, parent: bytes, start: int, end: int, served_raw: str
    ) -> dict[str, Any]:
        stack, fault = call.stack, call.fault
        fb = FALLBACK_OF[self.p.stack_name]
        final_stack = fb if fault == "fallback" else stack
        final_served = fb.served[fb.planner] if fault == "fallback" else served_raw
        app_req = (_claimed("openai", call.model), normalize_model(call.model))
        sid, hid = self._app_to_gateway(call, parent, start, end, final_served)
        a, b = start + 400_000, end - 400_000
        server = self.b.span(
            S_LITELLM,
            "POST /v1/chat/completions",
            "server",
            hid,
            a,
            b,
            {
                "http.request.method": "POST",
                "http.route": "/v1/chat/completions",
                "url.path": "/v1/chat/completions",
            },
            service="litellm-proxy",
        )
        if fault == "cache_hit":
            served = (_claimed("openai", final_served), normalize_model(final_served))
            return self._expect(
                sid,
                app_req,
                served,
                "response_model",
                chain=[_entry(*served, "ok")],
                cache=("unknown", "no_provider_call"),
                mismatch=served != app_req,
            )

        def attempt(
            s: int, e: int, st: Model, model: str, served: str | None, failed: bool
        ) -> None:
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": st.provider,
                "gen_ai.request.model": model,
                "litellm.provider.model": st.served[model] if fault != "mismatch" else served,
                "gen_ai.response.model": served,
                "gen_ai.response.id": None if failed else call.resp_id,
                "server.address": st.host,
                "litellm.call_id": f"lc-{self.r.getrandbits(40):010x}",
                "litellm.cost.total": None if failed else round(self.r.uniform(0.001, 0.05), 5),
                "error.type": "litellm.InternalServerError" if failed else None,
            }
            self.b.span(
                S_LITELLM,
                f"chat {model}",
                "client",
                server,
                s,
                e,
                attrs,
                error="InternalServerError" if failed else None,
                service="litellm-proxy",
            )

        mid = a + (b - a) // 3
        if fault == "llm_retry":
            attempt(a + 100_000, mid, stack, call.model, None, True)
            attempt(mid + 100_000, b - 100_000, stack, call.model, served_raw, False)
            chain = [
                _entry(stack.provider, call.model, "error:InternalServerError"),
                _entry(stack.provider, served_raw, "ok"),
            ]
        elif fault == "fallback":
            attempt(a + 100_000, mid, stack, call.model, None, True)
            attempt(mid + 100_000, b - 100_000, fb, fb.planner, final_served, False)
            chain = [
                _entry(stack.provider, call.model, "error:InternalServerError"),
                _entry(fb.provider, final_served, "ok"),
            ]
        else:
            attempt(a + 100_000, b - 100_000, stack, call.model, served_raw, False)
            chain = [_entry(stack.provider, served_raw, "ok")]
        served = (final_stack.provider, normalize_model(final_served))
        mm = served != app_req
        return self._expect(
            sid, app_req, served, "gateway", chain=chain, mismatch=mm, fallback=fault == "fallback"
        )

    def _gw_bifrost(
        self, call: _Call, parent: bytes, start: int, end: int, served_raw: str
    ) -> dict[str, Any]:
        stack, fault = call.stack, call.fault
        fb = FALLBACK_OF[self.p.stack_name]
        final_stack = fb if fault == "fallback" else stack
        final_served = fb.served[fb.planner] if fault == "fallback" else served_raw
        app_req = (_claimed("openai", call.model), normalize_model(call.model))
        sid, hid = self._app_to_gateway(call, parent, start, end, final_served)
        a, b = start + 400_000, end - 400_000
        cache = fault == "cache_hit"
        explicit = cache and self.r.random() < 0.5
        gattrs: dict[str, Any] = {"http.request.method": "POST", "url.path": "/v1/chat/completions"}
        if explicit:
            hit_type = self.r.choice(("direct", "semantic"))
            gattrs.update(
                {
                    "bifrost.cache_debug.cache_hit": True,
                    "bifrost.cache_debug.hit_type": hit_type,
                    "bifrost.cache_debug.provider_used": stack.provider,
                    "bifrost.cache_debug.model_used": served_raw,
                }
            )
        server = self.b.span(
            S_BIFROST, "http.request", "server", hid, a, b, gattrs, service="bifrost"
        )
        if cache:
            served = (stack.provider, normalize_model(served_raw))
            if explicit:
                ctype = "exact" if hit_type == "direct" else "semantic"
                return self._expect(
                    sid,
                    app_req,
                    served,
                    "gateway",
                    chain=[_entry(*served, "ok")],
                    cache=(ctype, "bifrost_cache_debug"),
                    mismatch=served != app_req,
                )
            served = (_claimed("openai", final_served), normalize_model(final_served))
            return self._expect(
                sid,
                app_req,
                served,
                "response_model",
                chain=[_entry(*served, "ok")],
                cache=("unknown", "no_provider_call"),
                mismatch=served != app_req,
            )

        def attempt(
            name: str,
            s: int,
            e: int,
            st: Model,
            model: str,
            served: str | None,
            retries: int,
            fb_index: int,
            failed: bool,
        ) -> None:
            attrs = {
                "gen_ai.provider.name": st.provider,
                "gen_ai.request.model": model,
                "gen_ai.response.model": served,
                "gen_ai.response.id": None if failed else call.resp_id,
                "gen_ai.usage.input_tokens": None if failed else self.r.randint(200, 4000),
                "gen_ai.usage.output_tokens": None if failed else self.r.randint(20, 800),
                "gen_ai.usage.cost": None if failed else round(self.r.uniform(0.001, 0.05), 5),
                "bifrost.retries": retries,
                "bifrost.fallback_index": fb_index,
                "http.response.status_code": 500 if failed else 200,
                "error.type": "provider_error" if failed else None,
            }
            self.b.span(
                S_BIFROST,
                name,
                "internal",
                server,
                s,
                e,
                attrs,
                error="provider error" if failed else None,
                service="bifrost",
            )

        mid = a + (b - a) // 3
        if fault == "llm_retry":
            attempt("llm.call", a + 100_000, mid, stack, call.model, None, 0, 0, True)
            attempt("retry", mid + 100_000, b - 100_000, stack, call.model, served_raw, 1, 0, False)
            chain = [
                _entry(stack.provider, call.model, "error:500"),
                _entry(stack.provider, served_raw, "ok"),
            ]
        elif fault == "fallback":
            attempt("llm.call", a + 100_000, mid, stack, call.model, None, 0, 0, True)
            attempt(
                "fallback", mid + 100_000, b - 100_000, fb, fb.planner, final_served, 0, 1, False
            )
            chain = [
                _entry(stack.provider, call.model, "error:500"),
                _entry(fb.provider, final_served, "ok"),
            ]
        else:
            attempt(
                "llm.call", a + 100_000, b - 100_000, stack, call.model, served_raw, 0, 0, False
            )
            chain = [_entry(stack.provider, served_raw, "ok")]
        served = (final_stack.provider, normalize_model(final_served))
        return self._expect(
            sid,
            app_req,
            served,
            "gateway",
            chain=chain,
            mismatch=served != app_req,
            fallback=fault == "fallback",
        )

    def _gw_portkey(
        self, call: _Call, parent: bytes, start: int, end: int, served_raw: str
    ) -> dict[str, Any]:
        stack, fault = call.stack, call.fault
        fb = FALLBACK_OF[self.p.stack_name]
        final_stack = fb if fault == "fallback" else stack
        final_served = fb.served[fb.planner] if fault == "fallback" else served_raw
        app_req = (_claimed("openai", call.model), normalize_model(call.model))
        cache_status = "MISS"
        ctype = None
        if fault == "cache_hit":
            cache_status = self.r.choice(("HIT", "SEMANTIC HIT"))
            ctype = "exact" if cache_status == "HIT" else "semantic"
        headers = {
            "x-portkey-provider": _PORTKEY_PROVIDER[final_stack.provider],
            "x-portkey-cache-status": cache_status,
            "x-portkey-retry-attempt-count": "1" if fault == "llm_retry" else "0",
            "x-portkey-last-used-option-index": "1" if fault == "fallback" else "0",
            "x-portkey-trace-id": self.b.trace_id.hex(),
        }
        sid, _ = self._app_to_gateway(call, parent, start, end, final_served, headers=headers)
        served = (final_stack.provider, normalize_model(final_served))
        if fault == "llm_retry":
            chain = [_entry(*served, "error:unknown"), _entry(*served, "ok")]
        elif fault == "fallback":
            chain = [_entry(*app_req, "error:unknown"), _entry(*served, "ok")]
        else:
            chain = [_entry(*served, "ok")]
        return self._expect(
            sid,
            app_req,
            served,
            "gateway",
            chain=chain,
            mismatch=served != app_req,
            fallback=fault == "fallback",
            cache=(ctype, "portkey_header") if ctype else None,
        )


_TOOL_RESULT_KEY = {
    "openinference": "output.value",
    "openllmetry": "traceloop.entity.output",
    "langchain_oi": "output.value",
    "openai_agents": "output.value",
    "llamaindex": "output.value",
}
_LITELLM_PROVIDER = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure.ai.openai": "azure",
    "aws.bedrock": "bedrock",
}
_PORTKEY_PROVIDER = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure.ai.openai": "azure-openai",
    "aws.bedrock": "bedrock",
}
_API_BASE = {
    "openai": "api.openai.com/v1",
    "anthropic": "api.anthropic.com",
    "azure": "contoso.openai.azure.com",
    "bedrock": "bedrock-runtime.us-east-1.amazonaws.com",
}


def _claimed(provider: str, model: str) -> str:
    """What a span asks for: its provider claim unless the model's family contradicts it
    (the OpenAI SDK pointed at a gateway for a Claude model still says `openai`)."""
    fam = model_family(model)
    return provider if not fam or compatible(fam, provider) else fam


def _entry(provider: str, model: str, outcome: str) -> str:
    return f"{provider}/{normalize_model(model)}:{outcome}"


def _http_attrs(
    host: str, method: str, status: int, new: bool, path: str, resend: int = 0
) -> dict[str, Any]:
    h, _, port = host.partition(":")
    scheme = "https" if not port else "http"
    url = f"{scheme}://{host}{path}"
    if new:
        return {
            "http.request.method": method,
            "url.full": url,
            "server.address": h,
            "server.port": int(port or 443),
            "http.response.status_code": status,
            "network.protocol.version": "1.1",
            "http.request.resend_count": resend or None,
            "error.type": str(status) if status >= 400 else None,
        }
    return {"http.method": method, "http.url": url, "http.status_code": status}


# -- load streams ---------------------------------------------------------------------------------


class LoadStream:
    """Encoded requests for load tests: `templates` generated traces are encoded once; each
    request repeats them with fresh trace ids (a bytes replace), ~1 us per span."""

    def __init__(
        self,
        seed: int = 0,
        templates: int = 500,
        rates: FaultRates | None = None,
        conventions: Sequence[str] = CONVENTIONS,
        content: bool = False,
    ) -> None:
        gen = Generator(seed, rates=rates, conventions=conventions, content=content)
        self._r = random.Random(seed ^ 0x5EED)
        self.templates: list[tuple[bytes, bytes, int, dict[str, Any]]] = []
        for t in gen.traces(templates):
            body = b"".join(frame(b"\x0a", rs.SerializeToString()) for rs in t.resource_spans)
            self.templates.append((t.trace_id, body, t.span_count, t.truth))
        # the generator's first traces of each task class are its fault-free warm-up: in
        # generation order a short run would send nothing else
        self._r.shuffle(self.templates)

    def requests(
        self, total_spans: int, spans_per_request: int = 2000
    ) -> Iterator[tuple[bytes, int]]:
        """(encoded ExportTraceServiceRequest, span count) until `total_spans` are produced."""
        made = 0
        parts: list[bytes] = []
        n = 0
        r = self._r
        k = len(self.templates)
        i = r.randrange(k)  # each stream (a sender thread) starts at its own place
        while made < total_spans:
            tid, body, count, _ = self.templates[i % k]
            i += 1
            parts.append(body.replace(tid, r.getrandbits(128).to_bytes(16, "big")))
            n += count
            made += count
            if n >= spans_per_request:
                yield b"".join(parts), n
                parts, n = [], 0
        if parts:
            yield b"".join(parts), n


def batches(
    traces: Iterable[GeneratedTrace], per_batch: int
) -> Iterator[tuple[ExportTraceServiceRequest, list[dict[str, Any]]]]:
    """Whole traces grouped `per_batch` to a request, with their truths."""
    req = ExportTraceServiceRequest()
    truths: list[dict[str, Any]] = []
    for t in traces:
        req.resource_spans.extend(t.resource_spans)
        truths.append(t.truth)
        if len(truths) >= per_batch:
            yield req, truths
            req, truths = ExportTraceServiceRequest(), []
    if truths:
        yield req, truths


# -- CLI ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.generator", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--traces", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rates", default="", help="e.g. fallback=0.1,slow=0.05 or all=0.05")
    ap.add_argument("--conventions", default=",".join(CONVENTIONS))
    ap.add_argument("--warmup", type=int, default=25)
    ap.add_argument("--per-request", type=int, default=20, help="traces per request")
    ap.add_argument("--out", help="where to write the traces")
    ap.add_argument("--format", choices=("proto", "json"), default="proto")
    ap.add_argument("--truth", help="ground truth, one JSON object per trace")
    ap.add_argument("--schemas", help="write the tools' JSON Schemas to this directory")
    ap.add_argument(
        "--content",
        action="store_true",
        help="LLM calls carry their messages (content capture on), in each convention's form",
    )
    args = ap.parse_args(argv)
    if args.schemas:
        write_tool_schemas(args.schemas)
    gen = Generator(
        args.seed,
        rates=FaultRates.parse(args.rates),
        conventions=[c for c in args.conventions.split(",") if c],
        warmup=args.warmup,
        content=args.content,
    )
    out = open(args.out, "wb") if args.out else None  # noqa: SIM115
    truth = open(args.truth, "w") if args.truth else None  # noqa: SIM115
    t0 = time.perf_counter()
    spans = 0
    try:
        for req, truths in batches(gen.traces(args.traces), args.per_request):
            spans += sum(t["spans"] for t in truths)
            if out is not None:
                if args.format == "json":
                    from pipeline import otlpjson

                    out.write(otlpjson.encode(req) + b"\n")
                else:
                    data = req.SerializeToString()
                    out.write(struct.pack(">I", len(data)) + data)
            if truth is not None:
                for t in truths:
                    truth.write(json.dumps(t, sort_keys=True) + "\n")
    finally:
        if out is not None:
            out.close()
        if truth is not None:
            truth.close()
    dt = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "traces": args.traces,
                "spans": spans,
                "seconds": round(dt, 3),
                "rates": asdict(gen.rates),
            }
        ),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
