"""The per-batch GenAI span index: one pass over a batch's encoding, one compact record per
span that can matter (LLM calls, gateway spans, their HTTP children, tool calls, roots).

Read from the wire (`pipeline.wirescan`): one native pass gives every span's cheap fields
(scope name, span name, kind, ids, times, status). Each span is first classified from those
(memoised per distinct (scope, name, kind)); attributes are read at most once, only on spans
whose role needs them, and only the keys in `Keys.slots` become Python values. Spans that
cannot matter (database, web-server, framework spans) get no record at all.

See `processors.genai` for the public interface.
"""

from __future__ import annotations

import re
from typing import Any, Final, cast

import msgspec

from pipeline import wirescan
from pipeline.wirescan import Row, SpanInfo
from processors.genai.config import AttributeMappings, GenAIConfig
from processors.genai.models import HostResolver, canonical_provider

__all__ = [
    "AGENT",
    "CALL_ROLES",
    "GATEWAY",
    "HTTP",
    "LLM",
    "OTHER",
    "TOOL",
    "Built",
    "Keys",
    "SpanRecord",
    "build_records",
    "is_call",
]

_COLLECT: Final = wirescan.collect  # bound once: a module attribute lookup per span otherwise

# roles
OTHER: Final = 0
LLM: Final = 1
GATEWAY: Final = 2
HTTP: Final = 3
TOOL: Final = 4
AGENT: Final = 5
UNKNOWN: Final = 6
CALL_ROLES: Final = (LLM, GATEWAY)


def is_call(role: int) -> bool:
    """An LLM or gateway span (one of `CALL_ROLES`)."""
    return role in (LLM, GATEWAY)


ROLE_NAMES: Final = {
    OTHER: "other",
    LLM: "llm",
    GATEWAY: "gateway",
    HTTP: "http",
    TOOL: "tool",
    AGENT: "agent",
    UNKNOWN: "unknown",
}

_CLIENT: Final = 3  # Span.SPAN_KIND_CLIENT
_SERVER: Final = 2  # Span.SPAN_KIND_SERVER
_ERROR: Final = 2  # Status.STATUS_CODE_ERROR

# -- scopes ----------------------------------------------------------------------------------
SC_APP: Final = 0
SC_LLM: Final = 1
SC_HTTP: Final = 2
SC_INFRA: Final = 3
SC_OI: Final = 4
SC_LITELLM: Final = 5
SC_BIFROST: Final = 6
_HTTP_SCOPES: Final = (
    "httpx",
    "requests",
    "aiohttp_client",
    "urllib3",
    "urllib",
    "httplib",
    "http_client",
    "okhttp",
    "net/http",
    "fetch",
    "undici",
)
_INFRA_SCOPES: Final = (
    "sqlalchemy",
    "psycopg",
    "asyncpg",
    "redis",
    "pymongo",
    "pymysql",
    "mysql",
    "sqlite3",
    "dbapi",
    "fastapi",
    "flask",
    "django",
    "asgi",
    "wsgi",
    "starlette",
    "tornado",
    "falcon",
    "pyramid",
    "aiohttp_server",
    "aiohttp.server",
    "grpc",
    "celery",
    "kafka",
    "confluent_kafka",
    "aiokafka",
    "pika",
    "aio_pika",
    "boto",
    "botocore",
    "logging",
    "threading",
    "asyncio",
    "jinja2",
    "elasticsearch",
    "cassandra",
    "system_metrics",
    "click",
)
_LLM_SCOPES: Final = (
    "openai",
    "anthropic",
    "bedrock",
    "vertexai",
    "vertex_ai",
    "google_genai",
    "google_generativeai",
    "mistralai",
    "cohere",
    "groq",
    "ollama",
    "together",
    "replicate",
    "watsonx",
    "genai",
)


def scope_hint(scope: str) -> int:
    s = scope.lower()
    if s.startswith("openinference"):
        return SC_OI
    if "litellm" in s:
        return SC_LITELLM
    if "bifrost" in s:
        return SC_BIFROST
    if s == "com.anthropic.sdk.python" or s.startswith("opentelemetry.util.genai"):
        return SC_LLM
    tail = s
    for prefix in ("opentelemetry.instrumentation.", "io.opentelemetry.", "go.opentelemetry.io/"):
        if s.startswith(prefix):
            tail = s[len(prefix) :]
            break
    else:
        return SC_APP
    head = tail.split(".", 1)[0].split("/", 1)[0]
    if head in _HTTP_SCOPES:
        return SC_HTTP
    if head in _LLM_SCOPES or any(head.startswith(p) for p in _LLM_SCOPES):
        return SC_LLM
    if head in _INFRA_SCOPES or any(head.startswith(p) for p in _INFRA_SCOPES):
        return SC_INFRA
    return SC_APP


# -- span names ------------------------------------------------------------------------------
_LLM_OPS: Final = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings", "completion"}
)
_AGENT_OPS: Final = frozenset({"invoke_agent", "create_agent", "invoke_workflow"})
_HTTP_METHODS: Final = frozenset(
    {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE", "HTTP"}
)
# Traceloop/OpenLLMetry `<vendor>.<op>` LLM span names
_DOTTED_LLM_OPS: Final = frozenset(
    {"chat", "completion", "completions", "embeddings", "response", "responses", "generate"}
)
_TRACELOOP_KINDS: Final = {"tool": TOOL, "agent": AGENT, "workflow": AGENT, "task": AGENT}
# OpenInference LLM-kind spans that are no model call (LlamaIndex traces the method that
# prepares a tool-calling request beside the one that sends it)
_OI_NOT_CALLS: Final = ("._prepare_chat_with_tools", "._prepare_chat_with_tools_async")


def name_role(hint: int, name: str, kind: int) -> int:
    """The role a span has by its cheap fields; UNKNOWN means 'read its attributes'."""
    if hint == SC_OI:
        if name.endswith(_OI_NOT_CALLS):
            return OTHER  # an LLM-kind span that sends nothing (LlamaIndex's preparation)
        return UNKNOWN  # the kind is an attribute (openinference.span.kind)
    first, sep, rest = name.partition(" ")
    if sep:
        if first in _LLM_OPS and rest:
            return LLM
        if first == "execute_tool":
            return TOOL
        if first in _AGENT_OPS:
            return AGENT
        if first in _HTTP_METHODS:
            if kind == _SERVER and hint in (SC_LITELLM, SC_BIFROST):
                return GATEWAY
            if kind == _CLIENT or hint == SC_HTTP:
                return HTTP
            return OTHER if hint in (SC_HTTP, SC_INFRA) else UNKNOWN
        if name in ("Received Proxy Server Request", "Failed Proxy Server Request"):
            return GATEWAY
    else:
        if name in ("litellm_request", "llm_request"):
            return LLM
        if name in ("llm.call", "retry", "fallback") and hint in (SC_BIFROST, SC_APP):
            return LLM
        if name == "http.request" and hint == SC_BIFROST:
            return GATEWAY
        if name == "mcp.tool" or name == "execute_tool":
            return TOOL
        if first in _HTTP_METHODS:
            if kind == _SERVER and hint in (SC_LITELLM, SC_BIFROST):
                return GATEWAY
            if kind == _CLIENT or hint == SC_HTTP:
                return HTTP
        if name == "raw_gen_ai_request":
            return OTHER  # LiteLLM's raw provider payload under litellm_request
        dot = name.rfind(".")
        if dot > 0:
            suffix = name[dot + 1 :]
            t = _TRACELOOP_KINDS.get(suffix)
            if t is not None and hint == SC_APP:
                return t
            if suffix in _DOTTED_LLM_OPS or name.endswith(".messages.create"):
                return LLM
    if hint in (SC_HTTP, SC_INFRA):
        return HTTP if (hint == SC_HTTP and kind == _CLIENT) else OTHER
    if hint == SC_LLM:
        return OTHER  # e.g. count_tokens: not a generation
    return UNKNOWN


# -- attribute keys --------------------------------------------------------------------------
def _header_keys(name: str) -> tuple[str, ...]:
    return (name, "http.response.header." + name, "gen_ai.response.header." + name)


# fields: each collected key feeds one field; among several keys of a field present on one
# span, the earlier in its tuple wins (config keys come before all of them)
F_PROVIDER: Final = 0
F_REQ_MODEL: Final = 1
F_RESP_MODEL: Final = 2
F_OI_MODEL: Final = 3
F_OI_PARAMS: Final = 4
F_OI_OUTPUT: Final = 5
F_PK_PROVIDER: Final = 6
F_PK_CACHE: Final = 7
F_PK_RETRIES: Final = 8
F_PK_OPTION: Final = 9
F_LL_RETRIES: Final = 10
F_LL_FALLBACKS: Final = 11
F_LL_API_BASE: Final = 12
F_LL_PROVIDER_MODEL: Final = 13
F_HIDDEN: Final = 14
F_LL_CACHE: Final = 15
F_BF_PROVIDER: Final = 16
F_BF_HIT: Final = 17
F_BF_HIT_TYPE: Final = 18
F_BF_CACHE_PROVIDER: Final = 19
F_BF_CACHE_MODEL: Final = 20
F_CACHE_JSON: Final = 21
F_RETRIES: Final = 22
F_FB_INDEX: Final = 23
F_HOST: Final = 24
F_URL: Final = 25
F_PORT: Final = 26
F_STATUS: Final = 27
F_RESEND: Final = 28
F_ERROR_TYPE: Final = 29
F_RESP_ID: Final = 30
F_TOKENS_IN: Final = 31
F_TOKENS_OUT: Final = 32
F_COST: Final = 33
F_OP: Final = 34
F_OI_KIND: Final = 35
F_TL_KIND: Final = 36
F_REQ_TYPE: Final = 37
F_TOOL_NAME: Final = 38
F_TOOL_RESULT: Final = 39
F_TOOL_CALL_ID: Final = 40
F_SIEVE: Final = 41
F_X_SERVED_PROVIDER: Final = 42
F_X_SERVED_MODEL: Final = 43
F_X_CACHE_HIT: Final = 44
F_X_CACHE_TYPE: Final = 45
F_CF_STEP: Final = 46
N_FIELDS: Final = 47

FIELD_KEYS: Final[dict[int, tuple[str, ...]]] = {
    F_PROVIDER: ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"),
    F_REQ_MODEL: (
        "gen_ai.request.model",
        "llm.request.model_name",
        "bifrost.alias",
        "original_model_requested",
        "extra_fields.original_model_requested",
        "model_requested",
        "litellm.model_group",
    ),
    F_RESP_MODEL: (
        "gen_ai.response.model",
        "llm.response.model_name",
        "resolved_model_used",
        "extra_fields.resolved_model_used",
        "model_deployment",
    ),
    F_OI_MODEL: ("llm.model_name",),  # OpenInference: the response model when present
    F_OI_PARAMS: ("llm.invocation_parameters",),
    F_OI_OUTPUT: ("output.value",),
    F_PK_PROVIDER: _header_keys("x-portkey-provider"),
    F_PK_CACHE: _header_keys("x-portkey-cache-status"),
    F_PK_RETRIES: _header_keys("x-portkey-retry-attempt-count"),
    F_PK_OPTION: _header_keys("x-portkey-last-used-option-index"),
    F_CF_STEP: _header_keys("cf-aig-step"),  # Cloudflare AI Gateway: the fallback step served
    F_LL_RETRIES: _header_keys("x-litellm-attempted-retries"),
    F_LL_FALLBACKS: _header_keys("x-litellm-attempted-fallbacks"),
    F_LL_API_BASE: _header_keys("x-litellm-model-api-base"),
    F_LL_PROVIDER_MODEL: ("litellm.provider.model",),
    F_HIDDEN: ("hidden_params", "metadata.hidden_params", "litellm.hidden_params"),
    F_LL_CACHE: ("litellm.cache_hit", "cache_hit", "metadata.cache_hit"),
    F_BF_PROVIDER: ("bifrost.provider.name", "extra_fields.provider"),
    F_BF_HIT: (
        "bifrost.cache_debug.cache_hit",
        "cache_debug.cache_hit",
        "extra_fields.cache_debug.cache_hit",
    ),
    F_BF_HIT_TYPE: (
        "bifrost.cache_debug.hit_type",
        "cache_debug.hit_type",
        "extra_fields.cache_debug.hit_type",
    ),
    F_BF_CACHE_PROVIDER: (
        "bifrost.cache_debug.provider_used",
        "cache_debug.provider_used",
        "extra_fields.cache_debug.provider_used",
    ),
    F_BF_CACHE_MODEL: (
        "bifrost.cache_debug.model_used",
        "cache_debug.model_used",
        "extra_fields.cache_debug.model_used",
    ),
    F_CACHE_JSON: ("cache_debug", "bifrost.cache_debug", "extra_fields.cache_debug"),
    F_RETRIES: ("bifrost.retries", "gen_ai.number_of_retries", "retry.count"),
    F_FB_INDEX: ("bifrost.fallback_index", "gen_ai.fallback_index"),
    F_HOST: ("server.address", "net.peer.name", "http.host"),
    F_URL: ("url.full", "http.url"),
    F_PORT: ("server.port", "net.peer.port"),
    F_STATUS: ("http.response.status_code", "http.status_code"),
    F_RESEND: ("http.request.resend_count", "http.request.header.x-stainless-retry-count"),
    F_ERROR_TYPE: ("error.type", "gen_ai.error.type", "exception.type"),
    F_RESP_ID: ("gen_ai.response.id",),
    F_TOKENS_IN: (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.token_count.prompt",
    ),
    F_TOKENS_OUT: (
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.token_count.completion",
    ),
    F_COST: (
        "litellm.cost.total",
        "gen_ai.cost.total_cost",
        "gen_ai.usage.cost",
        "llm.cost.total",
        "gen_ai.usage.cost.total",
    ),
    F_OP: ("gen_ai.operation.name",),
    F_OI_KIND: ("openinference.span.kind",),
    F_TL_KIND: ("traceloop.span.kind",),
    F_REQ_TYPE: ("llm.request.type",),
    F_TOOL_NAME: ("gen_ai.tool.name", "tool.name"),
    F_TOOL_RESULT: ("gen_ai.tool.call.result", "traceloop.entity.output"),
    F_TOOL_CALL_ID: ("gen_ai.tool.call.id", "tool.id", "tool_call.id"),
    # an earlier tracesieve already enriched: keys written on every call span it saw
    # (evidence is left out when nothing tells, so it alone misses some)
    F_SIEVE: (
        "sieve.provider.mismatch",
        "sieve.cache.hit",
        "sieve.attempt.count",
        "sieve.provider.evidence",
    ),
}
# config (`attributes:`) fields -> the field they feed (None: a field of their own)
_CONFIG_FIELDS: Final[dict[str, int]] = {
    "provider": F_PROVIDER,
    "request_model": F_REQ_MODEL,
    "response_model": F_RESP_MODEL,
    "served_provider": F_X_SERVED_PROVIDER,
    "served_model": F_X_SERVED_MODEL,
    "cache_hit": F_X_CACHE_HIT,
    "cache_type": F_X_CACHE_TYPE,
    "retries": F_RETRIES,
    "fallback_index": F_FB_INDEX,
    "response_id": F_RESP_ID,
    "tool_name": F_TOOL_NAME,
}
TOOL_RESULT_KEYS: Final = ("gen_ai.tool.call.result", "output.value", "traceloop.entity.output")


class Keys:
    """The attribute keys an index collects (built-in plus config mappings, each with its
    field and priority) and the host table. One instance per distinct `GenAIConfig`."""

    def __init__(self, cfg: GenAIConfig | None = None) -> None:
        self.cfg = cfg or GenAIConfig()
        keymap: dict[str, tuple[int, int]] = {}
        for f, names in FIELD_KEYS.items():
            for prio, k in enumerate(names):
                keymap.setdefault(k, (f, prio))
        a: AttributeMappings = self.cfg.attributes
        for name, f in _CONFIG_FIELDS.items():
            for prio, k in enumerate(getattr(a, name)):
                keymap[k] = (f, prio - 100)  # config keys first
        self.keymap = keymap  # key -> (field, priority)
        self.slots = wirescan.Slots(keymap)
        self.hosts = HostResolver(self.cfg.hosts)
        self.fingerprint = _fingerprint(self.cfg)


def _fingerprint(cfg: GenAIConfig) -> str:
    if not cfg.hosts and not cfg.attributes.all_keys():
        return ""
    parts = [f"{h}={p}" for h, p in sorted(cfg.hosts.items())]
    a = cfg.attributes
    parts += [f"{f}:{','.join(getattr(a, f))}" for f in a.__struct_fields__ if getattr(a, f)]
    return ";".join(parts)


_KEYS: Final[dict[str, Keys]] = {}


def keys_for(cfg: GenAIConfig | None) -> Keys:
    """The shared `Keys` for a config (equal configs share one, and so one index)."""
    fp = _fingerprint(cfg) if cfg is not None else ""
    got = _KEYS.get(fp)
    if got is None:
        got = _KEYS[fp] = Keys(cfg)
    return got


# -- values ----------------------------------------------------------------------------------
Value = str | int | float | bool | bytes | list[Any] | dict[str, Any] | None


# isinstance with a tuple of types, not `int | float`: compiled, a union would be built
# at every call
def as_str(v: Value) -> str:
    if type(v) is str:
        return v
    if isinstance(v, list):
        return as_str(v[0]) if v else ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(int(v)) if float(v).is_integer() else str(v)
    return ""


def as_float(v: Value) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    s = as_str(v)
    try:
        return float(s) if s else None
    except ValueError:
        return None


def as_int(v: Value) -> int:
    if type(v) is int:
        return v
    f = as_float(v)
    return int(f) if f is not None else 0


def as_bool(v: Value) -> bool:
    if isinstance(v, (bool, int, float)):
        return bool(v)
    return as_str(v).strip().lower() in ("true", "1", "yes", "hit", "semantic hit")


_CLASS_REPR: Final = re.compile(r"^<class '([^']+)'>$")


def normalize_error_type(t: str) -> str:
    """`<class 'openai.InternalServerError'>`, `openai.InternalServerError` ->
    `InternalServerError`; `500` stays `500`."""
    m = _CLASS_REPR.match(t)
    if m:
        t = m.group(1)
    if "." in t and not t.replace(".", "").isdigit():
        t = t.rsplit(".", 1)[1]
    return t


def host_of_url(url: str) -> str:
    """`https://api.openai.com:443/v1/...` -> `api.openai.com:443` (no parsing library)."""
    i = url.find("://")
    rest = url[i + 3 :] if i >= 0 else url
    for sep in "/?#":
        j = rest.find(sep)
        if j >= 0:
            rest = rest[:j]
    at = rest.rfind("@")
    return rest[at + 1 :] if at >= 0 else rest


# -- the record ------------------------------------------------------------------------------
class SpanRecord:
    """What the index knows about one span. Class attributes are the defaults; instances set
    only what they found (cheap to create). Fields under 'results' are filled by the
    analyses in `processors.genai.analysis`."""

    # identity and cheap fields: slots, always set; the rest live in a __dict__ made only
    # when a record gets one of them (fewer GC-tracked objects for plain records)
    __slots__ = (
        "__dict__",
        "b0",
        "b1",
        "children",
        "end",
        "error",
        "hint",
        "is_root",
        "key",
        "kind",
        "name",
        "parent",
        "parent_key",
        "raw",
        "role",
        "scope",
        "start",
        "trace_id",
    )
    raw: bytes  # the batch encoding the span was read from (the index's base)
    b0: int  # the Span message's bounds in `raw`
    b1: int
    key: bytes  # trace_id + span_id
    parent_key: bytes  # trace_id + parent_span_id, b"" for a root
    trace_id: bytes
    name: str
    kind: int
    role: int
    start: int
    end: int
    error: bool  # status ERROR
    scope: str
    hint: int
    is_root: bool
    parent: SpanRecord | None
    children: list[SpanRecord] | None
    # attributes (set when the span was scanned)
    scanned: bool = False
    provider_attr: str = ""  # canonical provider the span claims
    req_model: str = ""
    resp_model: str = ""
    gw: str = ""  # gateway that asserted served fields: portkey|litellm|bifrost|config
    gw_provider: str = ""
    gw_model: str = ""
    gw_attempt: bool = False  # a gateway's own per-attempt span (LiteLLM V2, Bifrost)
    host: str = ""
    http_status: int = 0
    resend: int = 0
    error_type: str = ""
    resp_id: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = None
    cache_flag: int = 0  # 0 no marker, 1 explicit hit, 2 explicit miss
    cache_type: str = ""
    cache_src: str = ""
    retries_marker: int = 0
    fallback_marker: int = 0
    tool_name: str = ""
    tool_call_id: str = ""
    op: str = ""
    enriched: bool = False  # carries sieve.* from an earlier tracesieve
    duplicate: bool = False  # a second span for the same call (double instrumentation)
    n_http: int = 0  # HTTP children
    marked: bool = False  # it or a record under it has a retry/fallback marker
    # results (analysis)
    req_provider: str = ""
    req_from_family: bool = False
    req_model_n: str = ""
    served_provider: str = ""
    served_model: str = ""
    evidence: str = ""
    mismatch: bool = False
    resolved: bool = False
    cache_hit: bool = False
    cache_evidence: str = ""
    cache_hit_type: str = ""
    logical: bool = False  # stands for a logical call (gets the chain)
    superseded: bool = False  # a failed attempt that a later sibling call replaced
    chain: list[str] | None = None
    attempt_count: int = 0
    retry_count: int = 0
    fallback_fired: bool = False
    final_ok: bool = True  # logical call / tool run: did the last attempt succeed
    tool_retries: int = 0

    def __init__(self, raw: bytes, info: Row, role: int, hint: int = SC_APP) -> None:
        # `info` is a wirescan.SpanInfo
        self.raw = raw
        self.scope = info[0]
        self.name = info[1]
        self.kind = info[2]
        self.trace_id = info[3]
        self.key = info[4]
        pk: bytes = info[5]
        self.parent_key = pk
        self.start = info[6]
        self.end = info[7]
        self.error = info[8] == _ERROR
        self.b0 = info[9]
        self.b1 = info[10]
        self.role = role
        self.hint = hint
        self.is_root = not pk
        self.parent = None
        self.children = None

    @property
    def span_id(self) -> bytes:
        return self.key[16:]

    @property
    def ok(self) -> bool:
        return not self.error and self.http_status < 400

    def attribute(self, key: str) -> Value:
        """An attribute of the span as a plain value (None when absent), read from the
        span's encoding."""
        got = wirescan.attributes(self.raw, self.b0, self.b1, frozenset((key,)), "")
        return got[0][1] if got else None

    def __repr__(self) -> str:
        return f"SpanRecord({ROLE_NAMES[self.role]} {self.name!r} {self.key[16:].hex()})"


# -- building --------------------------------------------------------------------------------
_KINDS: Final = 6  # span kinds: memo lists are indexed by kind (others share slot 0)
_role_memo: Final[dict[int, list[dict[str, int]]]] = {}  # hint -> kind -> name -> role
_hint_memo: Final[dict[str, int]] = {}


class Built:
    """What `build_records` returns (see `GenAIIndex`)."""

    __slots__ = ("by_key", "failed_agents", "has_markers", "records", "tool_spans")

    def __init__(self) -> None:
        self.records: list[SpanRecord] = []
        self.by_key: dict[bytes, SpanRecord] = {}
        self.tool_spans: list[SpanInfo] = []  # every tool span
        self.has_markers = False  # any retry/fallback marker > 0 in the batch
        self.failed_agents: list[SpanRecord] = []  # agent/chain spans in ERROR, not roots


def build_records(raw: bytes, keys: Keys, spans: list[SpanInfo]) -> Built:
    """Records of a batch's spans that can matter, in batch order, from its encoding.

    `spans` are `wirescan.spans(raw)`. Phase 1 reads only cheap fields. Records are made
    for call spans (LLM, gateway), roots, agent spans in ERROR, and spans to classify by
    attributes; HTTP spans wait until their parent is known to be a call (or until a call
    that has none of its own adopts them, `_adopt`); tool spans get a record only when a
    tool of the same name failed in the same trace (retry runs and swallowed errors need
    them)."""
    out = Built()
    records = out.records
    by_key = out.by_key
    to_scan: list[SpanRecord] = []
    https: list[Row] = []
    tools = cast("list[Row]", out.tool_spans)
    failed_tools: set[tuple[bytes, str]] = set()  # (trace id, tool name)
    last_scope = None
    memo: list[dict[str, int]] = []
    hint = SC_APP
    for info in cast("list[Row]", spans):
        scope: str = info[0]
        name: str = info[1]
        kind: int = info[2]
        parent: bytes = info[5]
        if scope is not last_scope:
            last_scope = scope
            h = _hint_memo.get(scope)
            if h is None:
                h = _hint_memo[scope] = scope_hint(scope)
            hint = h
            got = _role_memo.get(hint)
            if got is None:
                got = _role_memo[hint] = [{} for _ in range(_KINDS)]
            memo = got
        by_name = memo[kind if 0 <= kind < _KINDS else 0]
        role = by_name.get(name)
        if role is None:
            if len(by_name) > 20_000:
                by_name.clear()
            role = by_name[name] = name_role(hint, name, kind)
        if parent:
            if role == OTHER or (role == AGENT and info[8] != _ERROR):
                continue  # cannot matter: no record at all
            if role == HTTP:
                https.append(info)
                continue
            if role == TOOL and (" " in name or name.endswith(".tool")):
                tools.append(info)
                if info[8] == _ERROR:
                    failed_tools.add((info[3], _tool_name_of(name)))
                continue
        rec = SpanRecord(raw, info, role, hint)
        records.append(rec)
        by_key[rec.key] = rec
        if role == AGENT:
            if parent:
                out.failed_agents.append(rec)
        elif role != OTHER:
            to_scan.append(rec)
    call_keys: set[bytes] = set()
    calls: list[SpanRecord] = []
    for rec in to_scan:
        _scan(rec, keys, out)
        role = rec.role
        if role in (LLM, GATEWAY):
            call_keys.add(rec.key)
            calls.append(rec)
        elif role == TOOL:
            tools.append(_info(rec))
            if rec.error:
                failed_tools.add((rec.trace_id, rec.tool_name))
        elif role == AGENT and rec.error and not rec.is_root:
            out.failed_agents.append(rec)
    # HTTP spans under calls (and the gateway server spans under those HTTP spans)
    http_recs: list[SpanRecord] = []
    orphans: list[Row] = []  # HTTP spans under no call: a call may adopt them (`_adopt`)
    tool_keys: set[bytes] | None = None
    for info in https:
        pk: bytes = info[5]
        if pk not in call_keys:
            if tool_keys is None:
                tool_keys = {t[4] for t in tools}
            if pk not in tool_keys:  # a tool's own request is no LLM call's
                orphans.append(info)
            continue
        p = by_key[pk]
        rec = SpanRecord(raw, info, HTTP, SC_HTTP)
        records.append(rec)
        by_key[rec.key] = rec
        http_recs.append(rec)
        p.n_http += 1
    _link(records, by_key)
    if calls:
        _adopt(raw, records, by_key, calls, orphans, http_recs)
    hosts = keys.hosts
    for rec in http_recs:
        p = by_key[rec.parent_key] if rec.parent is None else rec.parent
        # A lone successful request of a call whose own server.address names a provider
        # tells nothing more: skip its attributes. (HTTP spans with a gateway's server span
        # under them are skipped below, once linked.)
        if p.n_http == 1 and not rec.error and p.host and hosts.provider(p.host):
            continue
        if not (rec.children and not rec.error):
            _scan(rec, keys, out)
    # tools: all tool spans, and records for those of a name that failed in their trace
    tool_recs: list[SpanRecord] = []
    for info in tools if failed_tools else ():
        if info[4] not in by_key and (info[3], _tool_name_of(info[1])) in failed_tools:
            rec = SpanRecord(raw, info, TOOL)
            rec.tool_name = _tool_name(rec)
            records.append(rec)
            tool_recs.append(rec)
            by_key[rec.key] = rec
    _link(tool_recs, by_key)
    for rec in http_recs:
        if rec.scanned and rec.parent is not None:
            _propagate(rec, rec.parent)
    if out.has_markers:
        for rec in records:
            if rec.retries_marker or rec.fallback_marker or rec.resend:
                r: SpanRecord | None = rec
                while r is not None and not r.marked:
                    r.marked = True
                    r = r.parent
    return out


def _adopt(
    raw: bytes,
    records: list[SpanRecord],
    by_key: dict[bytes, SpanRecord],
    calls: list[SpanRecord],
    orphans: list[Row],
    http_recs: list[SpanRecord],
) -> None:
    """Give a call span the requests it made when the instrumentation did not parent them to
    it: instrumentations that trace an agent framework through its callbacks start their
    LLM spans without making them current, so the HTTP client spans (and the provider SDK's
    own span, e.g. the Anthropic SDK's) land beside them, under an ancestor or a sibling;
    PydanticAI's fallback span keeps a failed attempt's request beside that attempt's span.

    A call adopts, by time (starting and ending within it): an HTTP span under no call; a
    provider SDK's call span under no call, within a framework's call; and, under a call
    that has attempt (call) children, an HTTP span or SDK span beside them within one of
    them. The adopter is the tightest such call that had no HTTP or call child of its own
    (a call that has one was parented right). Adopted HTTP spans become records."""
    leaves: dict[bytes, list[SpanRecord]] = {}  # trace -> calls with no HTTP/call child
    moving: list[SpanRecord] = []  # calls that may move: SDK spans under no call
    crowded: list[SpanRecord] = []  # calls with attempt (call) children
    for c in calls:
        kids = c.children
        if c.hint == SC_LLM and c.parent_key and (c.parent is None or not is_call(c.parent.role)):
            moving.append(c)
        if kids is None:
            leaves.setdefault(c.trace_id, []).append(c)
            continue
        for x in kids:
            if x.role == LLM or x.role == GATEWAY:
                crowded.append(c)
                break
    for c in crowded:
        # a request (or the SDK's span of one) beside the attempt spans, within one of them
        kids = c.children or []
        inner = [x for x in kids if is_call(x.role) and not x.children]
        for x in list(kids):
            if x.role == HTTP or (x.hint == SC_LLM and x.children and is_call(x.role)):
                got = _container(inner, x.start, x.end, x)
                if got is not None:
                    if x.role == HTTP:
                        c.n_http -= 1
                    _detach(x)
                    _attach(x, got)
    if not leaves:
        return
    for info in orphans:
        got = _container(leaves.get(info[3]), info[6], info[7], None)
        if got is not None:
            rec = SpanRecord(raw, info, HTTP, SC_HTTP)
            records.append(rec)
            by_key[rec.key] = rec
            http_recs.append(rec)
            _attach(rec, got)
    for m in moving:
        near = leaves.get(m.trace_id)
        if near is None or (len(near) == 1 and near[0] is m):
            continue
        got = _container(near, m.start, m.end, m)
        if got is not None and got.hint != SC_LLM:
            _detach(m)
            _attach(m, got)


def _container(
    calls: list[SpanRecord] | None, start: int, end: int, skip: SpanRecord | None
) -> SpanRecord | None:
    """The tightest call of `calls` (those that had no HTTP/call child of their own) that
    contains [start, end]."""
    best: SpanRecord | None = None
    for c in calls or ():
        if (
            c is not skip
            and c.start <= start
            and end <= c.end
            and (best is None or c.end - c.start < best.end - best.start)
        ):
            best = c
    return best


def _detach(rec: SpanRecord) -> None:
    p = rec.parent
    rec.parent = None
    if p is not None and p.children is not None:
        p.children = [c for c in p.children if c is not rec]
        if not p.children:
            p.children = None


def _attach(rec: SpanRecord, p: SpanRecord) -> None:
    rec.parent = p
    if p.children is None:
        p.children = [rec]
    else:
        p.children.append(rec)
    if rec.role == HTTP:
        p.n_http += 1


def _tool_name_of(span_name: str) -> str:
    if span_name.startswith("execute_tool "):
        return span_name[13:]
    if span_name.endswith(".tool"):
        return span_name[:-5]
    return span_name


def _info(rec: SpanRecord) -> SpanInfo:
    return (
        rec.scope,
        rec.name,
        rec.kind,
        rec.trace_id,
        rec.key,
        rec.parent_key,
        rec.start,
        rec.end,
        _ERROR if rec.error else 0,
        rec.b0,
        rec.b1,
    )


def _propagate(h: SpanRecord, p: SpanRecord) -> None:
    """Gateway headers captured on an HTTP child (Portkey, LiteLLM) speak for its call."""
    if h.gw and not p.gw:
        p.gw, p.gw_provider, p.gw_model = h.gw, h.gw_provider, h.gw_model
    if h.cache_flag and p.cache_flag != 1 and (h.cache_flag == 1 or not p.cache_flag):
        p.cache_flag, p.cache_type, p.cache_src = h.cache_flag, h.cache_type, h.cache_src
    if h.retries_marker > p.retries_marker:
        p.retries_marker = h.retries_marker
    if h.fallback_marker > p.fallback_marker:
        p.fallback_marker = h.fallback_marker


def _link(records: list[SpanRecord], by_key: dict[bytes, SpanRecord]) -> None:
    linked: list[SpanRecord] = []
    for rec in records:
        if rec.parent_key and rec.parent is None:
            p = by_key.get(rec.parent_key)
            if p is not None:
                rec.parent = p
                if p.children is None:
                    p.children = [rec]
                else:
                    p.children.append(rec)
                linked.append(rec)
    if linked:
        _break_loops(linked)


_MAX_DEPTH: Final = 128  # records (calls, HTTP, tools) nested deeper are cut off: no real trace is


def _break_loops(linked: list[SpanRecord]) -> None:
    """Keep the linked records a forest of bounded depth, whatever the input.

    Parent chains that loop (hostile or broken input: a span that is its own parent, two
    spans each the other's parent) would make every walk up or down the tree endless, and
    thousands of nested call spans would make the recursive analyses overflow the stack.
    A loop is cut at the link that closes it, a chain at depth `_MAX_DEPTH`; the record
    cut off then has no parent in the batch. Each record is walked past once."""
    depth: dict[int, int] = {}
    for rec in linked:
        # the common case first: a short chain that ends (no loop, not deep), seen cheaply
        r: SpanRecord | None = rec.parent
        n = 0
        while r is not None and n < 8:
            r = r.parent
            n += 1
        if r is None:
            continue
        path: list[SpanRecord] = []
        on_path: set[int] = set()
        r = rec
        while r is not None and id(r) not in depth:
            if id(r) in on_path:
                _cut(path[-1])  # its parent is r: the link that closes the loop
                r = None
                break
            path.append(r)
            on_path.add(id(r))
            r = r.parent
        d = -1 if r is None else depth[id(r)]
        for x in reversed(path):  # from the top down
            d += 1
            if d > _MAX_DEPTH:
                _cut(x)
                d = 0
            depth[id(x)] = d


def _cut(rec: SpanRecord) -> None:
    p = rec.parent
    rec.parent = None
    if p is not None and p.children is not None:
        p.children = [c for c in p.children if c is not rec]


def _scan(rec: SpanRecord, keys: Keys, built: Built) -> None:
    """Read the span's wanted attributes once, per field the value of its highest-priority
    key present, and interpret them."""
    # per field the value of its highest-priority key present, and the fields present
    b, mask = _COLLECT(rec.raw, rec.b0, rec.b1, keys.slots, "")
    rec.scanned = True
    if not mask:
        if rec.role == UNKNOWN:
            rec.role = OTHER
        return
    _interpret(rec, b, mask, keys)
    if rec.retries_marker or rec.fallback_marker or rec.resend:
        built.has_markers = True


def _s(b: list[Value], f: int) -> str:
    v = b[f]
    return "" if v is None else as_str(v)


_OI_ROLES: Final = {
    "LLM": LLM,
    "EMBEDDING": LLM,
    "TOOL": TOOL,
    "AGENT": AGENT,
    "CHAIN": AGENT,
}
_OP_ROLES: Final = {
    "chat": LLM,
    "text_completion": LLM,
    "generate_content": LLM,
    "embeddings": LLM,
    "completion": LLM,
    "execute_tool": TOOL,
    "invoke_agent": AGENT,
    "create_agent": AGENT,
    "invoke_workflow": AGENT,
}
_MODEL_IN_JSON: Final = re.compile(r'"model"\s*:\s*"([^"]+)"')
_ID_IN_JSON: Final = re.compile(r'^\s*\{\s*"id"\s*:\s*"([^"]+)"')
_BIFROST_ATTEMPTS: Final = frozenset({"llm.call", "retry", "fallback"})
_GW_FIELDS: Final = frozenset(
    {
        F_CF_STEP,
        F_PK_PROVIDER,
        F_PK_CACHE,
        F_PK_RETRIES,
        F_PK_OPTION,
        F_LL_RETRIES,
        F_LL_FALLBACKS,
        F_LL_API_BASE,
        F_LL_PROVIDER_MODEL,
        F_HIDDEN,
        F_LL_CACHE,
        F_BF_PROVIDER,
        F_BF_HIT,
        F_CACHE_JSON,
        F_RETRIES,
        F_FB_INDEX,
        F_X_SERVED_PROVIDER,
        F_X_SERVED_MODEL,
        F_X_CACHE_HIT,
    }
)
_HTTP_GW_FIELDS: Final = frozenset(
    {
        F_CF_STEP,
        F_PK_PROVIDER,
        F_PK_CACHE,
        F_PK_RETRIES,
        F_PK_OPTION,
        F_LL_RETRIES,
        F_LL_FALLBACKS,
        F_LL_API_BASE,
        F_X_SERVED_PROVIDER,
        F_X_SERVED_MODEL,
    }
)


_GW_MASK: Final = sum(1 << f for f in _GW_FIELDS)
_HTTP_GW_MASK: Final = sum(1 << f for f in _HTTP_GW_FIELDS)


def _interpret(rec: SpanRecord, b: list[Value], mask: int, keys: Keys) -> None:
    role = rec.role
    if role == UNKNOWN or rec.hint == SC_OI:
        role = rec.role = _role_from_attributes(rec, b)
    if b[F_SIEVE] is not None:
        rec.enriched = True
    if role == TOOL:
        rec.tool_name = _s(b, F_TOOL_NAME) or _tool_name(rec)
        rec.tool_call_id = _s(b, F_TOOL_CALL_ID)
        return
    if role != LLM and role != GATEWAY and role != HTTP:
        return
    # (values are mostly str and int: `type(v) is str` spares the call to as_str)
    # -- transport (HTTP children, and LLM spans that carry server/http fields) --
    v = b[F_HOST]
    host = "" if v is None else v if type(v) is str else as_str(v)
    if not host:
        v = b[F_URL]
        if v is not None:
            host = host_of_url(v if type(v) is str else as_str(v))
    if host:
        v = b[F_PORT]
        if v is not None and ":" not in host:
            host = f"{host}:{as_int(v)}"
        rec.host = host
    v = b[F_STATUS]
    if v is not None:
        rec.http_status = v if type(v) is int else as_int(v)
    v = b[F_RESEND]
    if v is not None:
        rec.resend = v if type(v) is int else as_int(v)
    v = b[F_ERROR_TYPE]
    if v is not None:
        rec.error_type = normalize_error_type(as_str(v))
    if mask & (_HTTP_GW_MASK if role == HTTP else _GW_MASK):
        _gateway_fields(rec, b, keys)
    if role == HTTP:
        return
    # -- the model call --
    v = b[F_OP]
    if v is not None:
        rec.op = v if type(v) is str else as_str(v)
    v = b[F_PROVIDER]
    if v is not None:
        rec.provider_attr = canonical_provider(v if type(v) is str else as_str(v))
    v = b[F_REQ_MODEL]
    req_model = "" if v is None else v if type(v) is str else as_str(v)
    v = b[F_RESP_MODEL]
    resp_model = "" if v is None else v if type(v) is str else as_str(v)
    v = b[F_OI_MODEL]
    oi_model = ""
    if v is not None:
        s = v if type(v) is str else as_str(v)
        if rec.hint == SC_OI or b[F_OI_KIND] is not None:
            resp_model = resp_model or s
            oi_model = s
        else:
            req_model = req_model or s
    if not req_model:
        v = b[F_OI_PARAMS]
        if v is not None:
            m = _MODEL_IN_JSON.search(as_str(v))
            if m:
                req_model = m.group(1)
        # no request model anywhere (OpenAI Agents' `generation` spans): OpenInference's
        # model name is then the only model the span names, the one the framework asked for
        req_model = req_model or oi_model
    if req_model:
        rec.req_model = req_model
    if resp_model:
        rec.resp_model = resp_model
    v = b[F_RESP_ID]
    if v is not None:
        rec.resp_id = v if type(v) is str else as_str(v)
    elif rec.hint == SC_OI:
        v = b[F_OI_OUTPUT]
        if v is not None:
            text = as_str(v)
            m = _ID_IN_JSON.match(text[:200])
            if m:
                rec.resp_id = m.group(1)
            else:
                rec.resp_id = _langchain_response_id(text)
    v = b[F_COST]
    if v is not None:
        rec.cost = as_float(v)
    # tokens: next to a cost (cost 0, tokens > 0), and a call that sent nothing (a cache
    # replays the usage of the answer it stored)
    v = b[F_TOKENS_IN]
    if v is not None:
        rec.tokens_in = v if type(v) is int else as_int(v)
    v = b[F_TOKENS_OUT]
    if v is not None:
        rec.tokens_out = v if type(v) is int else as_int(v)


_LC_META: Final = '"response_metadata"'
_LC_ID: Final = re.compile(r'"id"\s*:\s*"([^"]+)"')


def _langchain_response_id(text: str) -> str:
    """The provider's response id in a LangChain `LLMResult` (OpenInference's output.value
    of a LangChain chat model): `response_metadata.id` of the first generation. A cached
    answer carries the id of the response it stored."""
    i = text.find(_LC_META)
    if i < 0:
        return ""
    m = _LC_ID.search(text, i, i + 4000)
    return m.group(1) if m else ""


def _gateway_fields(rec: SpanRecord, b: list[Value], keys: Keys) -> None:
    """Portkey and LiteLLM headers, LiteLLM V2 attempt and legacy fields, Bifrost fields,
    cache markers, and config-mapped served/cache keys."""
    s = _s(b, F_X_SERVED_PROVIDER)
    if s:
        rec.gw, rec.gw_provider = "config", canonical_provider(s)
    s = _s(b, F_X_SERVED_MODEL)
    if s:
        rec.gw, rec.gw_model = "config", s
    s = _s(b, F_PK_PROVIDER)
    if s:
        rec.gw, rec.gw_provider = "portkey", canonical_provider(s)
    s = _s(b, F_PK_CACHE)
    if s:
        _portkey_cache(rec, s)
    v = b[F_PK_RETRIES]
    if v is not None:
        rec.retries_marker = max(rec.retries_marker, as_int(v))
    v = b[F_PK_OPTION]
    if v is not None:
        rec.fallback_marker = max(rec.fallback_marker, as_int(v))
        rec.gw = rec.gw or "portkey"
    v = b[F_CF_STEP]
    if v is not None:
        rec.fallback_marker = max(rec.fallback_marker, as_int(v))
    v = b[F_LL_RETRIES]
    if v is not None:
        rec.retries_marker = max(rec.retries_marker, as_int(v))
    v = b[F_LL_FALLBACKS]
    if v is not None:
        rec.fallback_marker = max(rec.fallback_marker, as_int(v))
    s = _s(b, F_LL_API_BASE)
    if s:
        p = keys.hosts.provider(host_of_url(s))
        if p:
            rec.gw, rec.gw_provider = "litellm", p
    if rec.role == HTTP:
        return
    # LiteLLM V2: one CLIENT span per attempt; provider.model is the deployment dispatched
    s = _s(b, F_LL_PROVIDER_MODEL)
    if s:
        rec.gw, rec.gw_model, rec.gw_attempt = "litellm", s, True
        if not rec.gw_provider:
            v = b[F_PROVIDER]
            rec.gw_provider = canonical_provider(as_str(v)) if v is not None else ""
    # Bifrost
    s = _s(b, F_BF_PROVIDER)
    if s:
        rec.gw, rec.gw_provider = "bifrost", canonical_provider(s)
    bifrost = rec.hint == SC_BIFROST or rec.name in _BIFROST_ATTEMPTS
    v = b[F_RETRIES]
    if v is not None:
        rec.retries_marker = max(rec.retries_marker, as_int(v))
        rec.gw_attempt = rec.gw_attempt or bifrost
    v = b[F_FB_INDEX]
    if v is not None:
        rec.fallback_marker = max(rec.fallback_marker, as_int(v))
        rec.gw_attempt = rec.gw_attempt or bifrost
    if rec.gw_attempt and not rec.gw_provider:
        # a gateway's own attempt span: the provider it names is the one the gateway called
        v = b[F_PROVIDER]
        if v is not None:
            rec.gw, rec.gw_provider = rec.gw or "bifrost", canonical_provider(as_str(v))
    v = b[F_BF_HIT]
    if v is not None:
        hit = as_bool(v)
        t = _s(b, F_BF_HIT_TYPE)
        _set_cache(rec, hit, _cache_type(t) if t else "unknown", "bifrost_cache_debug")
        if hit:
            p = _s(b, F_BF_CACHE_PROVIDER)
            m = _s(b, F_BF_CACHE_MODEL)
            if p:
                rec.gw, rec.gw_provider = "bifrost", canonical_provider(p)
            if m:
                rec.gw, rec.gw_model = "bifrost", m
    else:
        s = _s(b, F_CACHE_JSON)
        if s:
            _cache_debug_json(rec, s)
    # LiteLLM legacy
    v = b[F_LL_CACHE]
    if v is not None:
        _set_cache(rec, as_bool(v), "unknown", "litellm_cache_hit")
    s = _s(b, F_HIDDEN)
    if s:
        _hidden_params(rec, s, keys)
    # config cache keys
    v = b[F_X_CACHE_HIT]
    if v is not None:
        t = _s(b, F_X_CACHE_TYPE)
        _set_cache(rec, as_bool(v), _cache_type(t or as_str(v)), "config_key")


def _role_from_attributes(rec: SpanRecord, b: list[Value]) -> int:
    v = b[F_OI_KIND]
    if v is not None:
        return _OI_ROLES.get(as_str(v).upper(), OTHER)
    v = b[F_OP]
    if v is not None:
        r = _OP_ROLES.get(as_str(v))
        if r is not None:
            return r
    v = b[F_TL_KIND]
    if v is not None:
        t = as_str(v)
        if t == "tool":
            return TOOL
        if t in ("workflow", "task", "agent"):
            return AGENT
    if b[F_TOOL_NAME] is not None and b[F_REQ_MODEL] is None:
        return TOOL
    if (
        b[F_REQ_MODEL] is not None
        or b[F_RESP_MODEL] is not None
        or b[F_HIDDEN] is not None
        or b[F_REQ_TYPE] is not None
        or b[F_PROVIDER] is not None
    ):
        return LLM
    return rec.role if rec.role != UNKNOWN else OTHER


def _tool_name(rec: SpanRecord) -> str:
    name = rec.name
    if name.startswith("execute_tool "):
        return name[13:]
    if name.endswith(".tool"):
        return name[:-5]
    return name


def _cache_type(t: str) -> str:
    t = t.strip().lower()
    if t in ("direct", "exact", "hit"):
        return "exact"
    if "semantic" in t:
        return "semantic"
    return "unknown"


def _set_cache(rec: SpanRecord, hit: bool, ctype: str, src: str) -> None:
    if rec.cache_flag == 1:
        return  # an explicit hit stays
    rec.cache_flag = 1 if hit else 2
    rec.cache_type = ctype if hit else ""
    rec.cache_src = src


def _portkey_cache(rec: SpanRecord, status: str) -> None:
    s = status.strip().upper()
    if s in ("HIT", "SEMANTIC HIT"):
        _set_cache(rec, True, "semantic" if s.startswith("SEMANTIC") else "exact", "portkey_header")
    else:
        _set_cache(rec, False, "", "portkey_header")


_DECODE: Final = msgspec.json.Decoder().decode  # bound once: no lookups per call


def _loads(text: str) -> Any:
    try:
        return _DECODE(text)
    except msgspec.DecodeError:
        return None


def _cache_debug_json(rec: SpanRecord, text: str) -> None:
    d = _loads(text)
    if not isinstance(d, dict) or "cache_hit" not in d:
        return
    hit = bool(d.get("cache_hit"))
    _set_cache(rec, hit, _cache_type(str(d.get("hit_type") or "")), "bifrost_cache_debug")
    if hit:
        if d.get("provider_used"):
            rec.gw, rec.gw_provider = "bifrost", canonical_provider(str(d["provider_used"]))
        if d.get("model_used"):
            rec.gw, rec.gw_model = "bifrost", str(d["model_used"])


def _hidden_params(rec: SpanRecord, text: str, keys: Keys) -> None:
    d = _loads(text)
    if not isinstance(d, dict):
        return
    m = d.get("litellm_model_name")
    if isinstance(m, str) and m:
        rec.gw, rec.gw_model = "litellm", m
    base = d.get("api_base")
    if isinstance(base, str) and base:
        p = keys.hosts.provider(host_of_url(base))
        if p:
            rec.gw, rec.gw_provider = "litellm", p
    if d.get("cache_hit") is True:
        _set_cache(rec, True, "unknown", "litellm_cache_hit")
    cost = d.get("response_cost")
    if isinstance(cost, (int, float)) and rec.cost is None:
        rec.cost = float(cost)
    headers = d.get("additional_headers")
    if isinstance(headers, dict):
        for name, attr in (
            ("x-litellm-attempted-retries", "retries_marker"),
            ("x-litellm-attempted-fallbacks", "fallback_marker"),
        ):
            val = headers.get(name)
            if val is not None:
                try:
                    n = int(val)
                except (TypeError, ValueError):
                    continue
                setattr(rec, attr, max(getattr(rec, attr), n))
