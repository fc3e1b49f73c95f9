"""Provider and model names: one canonical vocabulary, whatever the convention wrote.

- `canonical_provider(name)`: any provider spelling (`gen_ai.provider.name`, legacy
  `gen_ai.system`, OpenInference `llm.provider`/`llm.system`, LiteLLM `custom_llm_provider`,
  Portkey `x-portkey-provider`, Bifrost) -> the OTel GenAI value (`openai`, `anthropic`,
  `aws.bedrock`, `azure.ai.openai`, `gcp.vertex_ai`, `gcp.gemini`, `mistral_ai`, `x_ai`, ...).
- `provider_from_host(host)`: host suffix -> provider (`api.openai.com` -> `openai`,
  `*.openai.azure.com` -> `azure.ai.openai`, `bedrock-runtime.*.amazonaws.com` -> `aws.bedrock`).
- `normalize_model(name)`: the model id with vendor prefixes, cross-region prefixes, dated
  snapshots and version suffixes removed, lower-cased: `gpt-4o-2024-08-06` -> `gpt-4o`,
  `us.anthropic.claude-3-5-sonnet-20240620-v1:0` -> `claude-3-5-sonnet`,
  `claude-3-5-sonnet@20240620` -> `claude-3-5-sonnet`, `openai/gpt-4o` -> `gpt-4o`.
- `model_family(name)`: the vendor a model name belongs to (`claude*` -> `anthropic`), or ""
  for open-weights families (Llama, Qwen, DeepSeek...) that many hosts serve.
- `compatible(family, provider)`: can `provider` serve models of that family (Bedrock and
  Vertex serve Claude; Azure serves GPT)?

All lookups are memoised: names repeat in every batch.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "PROVIDER_ALIASES",
    "HostResolver",
    "canonical_provider",
    "compatible",
    "model_family",
    "normalize_model",
    "provider_from_host",
]

# spelling -> canonical (OTel GenAI `gen_ai.provider.name` values, plus a few hosts)
PROVIDER_ALIASES: Final[dict[str, str]] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azure-openai": "azure.ai.openai",
    "azure.ai.openai": "azure.ai.openai",
    "az.ai.openai": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "azure-ai": "azure.ai.inference",
    "azure.ai.inference": "azure.ai.inference",
    "az.ai.inference": "azure.ai.inference",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "aws": "aws.bedrock",
    "aws.bedrock": "aws.bedrock",
    "aws_bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "vertex-ai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "vertex": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gcp.vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "google": "gcp.gemini",
    "google_genai": "gcp.gemini",
    "gcp.gemini": "gcp.gemini",
    "gcp.gen_ai": "gcp.gen_ai",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "mistral_ai": "mistral_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "x_ai": "x_ai",
    "x-ai": "x_ai",
    "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
    "ibm.watsonx.ai": "ibm.watsonx.ai",
    "together": "together",
    "together_ai": "together",
    "togetherai": "together",
    "fireworks": "fireworks",
    "fireworks_ai": "fireworks",
    "cerebras": "cerebras",
    "moonshot": "moonshot",
    "openrouter": "openrouter",
    "ollama": "ollama",
    "ollama_chat": "ollama",
}

# host suffix -> provider: exact host or any subdomain; a leading '-' matches a name ending
# (longest match wins)
HOST_SUFFIXES: Final[dict[str, str]] = {
    "api.openai.com": "openai",
    ".openai.azure.com": "azure.ai.openai",
    ".cognitiveservices.azure.com": "azure.ai.openai",
    ".services.ai.azure.com": "azure.ai.inference",
    ".inference.ai.azure.com": "azure.ai.inference",
    "api.anthropic.com": "anthropic",
    ".amazonaws.com": "aws.bedrock",  # refined below: only bedrock hosts
    "generativelanguage.googleapis.com": "gcp.gemini",
    "aiplatform.googleapis.com": "gcp.vertex_ai",
    "-aiplatform.googleapis.com": "gcp.vertex_ai",  # <region>-aiplatform.googleapis.com
    "api.mistral.ai": "mistral_ai",
    "api.groq.com": "groq",
    "api.cohere.com": "cohere",
    "api.cohere.ai": "cohere",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "api.fireworks.ai": "fireworks",
    "api.cerebras.ai": "cerebras",
    "api.moonshot.cn": "moonshot",
    "api.moonshot.ai": "moonshot",
    "openrouter.ai": "openrouter",
    "ollama.com": "ollama",
}

# model-name prefix -> family (the vendor whose models these are)
_FAMILY_PREFIXES: Final[tuple[tuple[str, str], ...]] = (
    ("claude", "anthropic"),
    ("anthropic", "anthropic"),
    ("gpt", "openai"),
    ("chatgpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("text-embedding", "openai"),
    ("davinci", "openai"),
    ("babbage", "openai"),
    ("omni-moderation", "openai"),
    ("command", "cohere"),
    ("embed-english", "cohere"),
    ("embed-multilingual", "cohere"),
    ("mistral", "mistral_ai"),
    ("mixtral", "mistral_ai"),
    ("pixtral", "mistral_ai"),
    ("codestral", "mistral_ai"),
    ("ministral", "mistral_ai"),
    ("magistral", "mistral_ai"),
    ("gemini", "gcp.gemini"),
    ("text-bison", "gcp.vertex_ai"),
    ("grok", "x_ai"),
)

# family -> providers that serve it (besides gateways, which can serve anything)
_SERVED_BY: Final[dict[str, frozenset[str]]] = {
    "openai": frozenset({"openai", "azure.ai.openai", "azure.ai.inference"}),
    "anthropic": frozenset({"anthropic", "aws.bedrock", "gcp.vertex_ai"}),
    "gcp.gemini": frozenset({"gcp.gemini", "gcp.vertex_ai", "gcp.gen_ai"}),
    "gcp.vertex_ai": frozenset({"gcp.gemini", "gcp.vertex_ai", "gcp.gen_ai"}),
    "cohere": frozenset({"cohere", "aws.bedrock", "azure.ai.inference"}),
    "mistral_ai": frozenset({"mistral_ai", "aws.bedrock", "gcp.vertex_ai", "azure.ai.inference"}),
    "x_ai": frozenset({"x_ai", "azure.ai.inference"}),
}
_GATEWAYS: Final = frozenset({"openrouter", "litellm", "portkey", "bifrost"})

_MEMO_LIMIT: Final = 20_000
_provider_memo: Final[dict[str, str]] = {}
_host_memo: Final[dict[str, str]] = {}
_model_memo: Final[dict[str, str]] = {}
_family_memo: Final[dict[str, str]] = {}


def _remember(memo: dict[str, str], key: str, value: str) -> str:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


def canonical_provider(name: str) -> str:
    """A provider spelling -> the canonical name; unknown names pass through lower-cased."""
    got = _provider_memo.get(name)
    if got is not None:
        return got
    key = name.strip().lower()
    return _remember(_provider_memo, name, PROVIDER_ALIASES.get(key, key))


class HostResolver:
    """Host -> provider, with extra suffixes (or exact `host:port` keys) from config
    consulted before the built-in table. Memoised."""

    def __init__(self, extra: dict[str, str] | None = None) -> None:
        self._extra = {k.lower(): canonical_provider(v) for k, v in (extra or {}).items()}
        self._memo: dict[str, str] = {}

    def provider(self, host: str) -> str:
        got = self._memo.get(host)
        if got is not None:
            return got
        p = _match_suffix(host, self._extra) if self._extra else ""
        if not p:
            p = _match_suffix(host, HOST_SUFFIXES)
            if p == "aws.bedrock" and "bedrock" not in host.lower():
                p = ""
        return _remember(self._memo, host, p)


_DEFAULT_HOSTS: Final = HostResolver()


def provider_from_host(host: str) -> str:
    """The provider a host belongs to ("" when unknown), from the built-in table."""
    return _DEFAULT_HOSTS.provider(host) if host else ""


def _match_suffix(host: str, table: dict[str, str]) -> str:
    h = host.lower()
    got = table.get(h)
    if got:
        return got
    base = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    if base != h:
        got = table.get(base)
        if got:
            return got
    best, best_len = "", -1
    for suffix, provider in table.items():
        s = suffix if suffix[0] in ".-" else "." + suffix
        if len(s) > best_len and base.endswith(s):
            best, best_len = provider, len(s)
    return best


_REGION: Final = re.compile(r"^(?:us|eu|apac|us-gov|global|jp|au|ca)\.")
_BEDROCK: Final = re.compile(r"^([a-z0-9-]+)\.(.+?)(?:-v\d+(?::\d+)?)?$")
_BEDROCK_VENDORS: Final = frozenset(
    {"anthropic", "amazon", "meta", "mistral", "cohere", "ai21", "deepseek", "openai", "qwen"}
)
# dated snapshots: -2024-08-06, -20240806, -0613 / -1106 (MMDD), @20240620, @latest, -latest
_DATE_SUFFIX: Final = re.compile(r"(?:[-_@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{6}|\d{4}|\d{3}|latest))+$")
_DOTTED: Final = re.compile(r"(\d)\.(\d)")
_VERSION_SUFFIX: Final = re.compile(r"-v\d+(?::\d+)?$|:\d+$")


def normalize_model(name: str) -> str:
    """A model id reduced to what identifies the model (see the module docstring)."""
    got = _model_memo.get(name)
    if got is not None:
        return got
    m = name.strip().lower()
    # vendor/model (LiteLLM, OpenRouter, Together): keep the last path part
    if "/" in m:
        m = m.rsplit("/", 1)[1]
    m = _REGION.sub("", m)
    # Bedrock: vendor.model-vN:M
    b = _BEDROCK.match(m)
    if b and b.group(1) in _BEDROCK_VENDORS:
        m = b.group(2)
    m = _VERSION_SUFFIX.sub("", m)
    m = _DATE_SUFFIX.sub("", m) or m
    if m.startswith("claude"):
        m = _DOTTED.sub(r"\1-\2", m)  # OpenRouter's claude-3.5-sonnet is claude-3-5-sonnet
    return _remember(_model_memo, name, m)


def model_family(name: str) -> str:
    """The vendor family of a model name ("" when it has none or many hosts serve it)."""
    got = _family_memo.get(name)
    if got is not None:
        return got
    m = normalize_model(name)
    fam = ""
    for prefix, family in _FAMILY_PREFIXES:
        if m.startswith(prefix):
            fam = family
            break
    return _remember(_family_memo, name, fam)


def compatible(family: str, provider: str) -> bool:
    """Can `provider` serve a model of `family`? Unknown families or providers: yes."""
    if not family or not provider or family == provider or provider in _GATEWAYS:
        return True
    served = _SERVED_BY.get(family)
    return served is None or provider in served or provider not in _KNOWN_PROVIDERS


_KNOWN_PROVIDERS: Final = frozenset(PROVIDER_ALIASES.values())
