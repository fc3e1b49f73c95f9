"""Provider and model name normalisation."""

from __future__ import annotations

import pytest

from processors.genai.models import (
    HostResolver,
    canonical_provider,
    compatible,
    model_family,
    normalize_model,
    provider_from_host,
)


@pytest.mark.parametrize(
    ("raw", "norm", "family"),
    [
        ("gpt-4o", "gpt-4o", "openai"),
        ("gpt-4o-2024-08-06", "gpt-4o", "openai"),
        ("gpt-4-0613", "gpt-4", "openai"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo", "openai"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", "openai"),
        ("o1-2024-12-17", "o1", "openai"),
        ("openai/gpt-4o", "gpt-4o", "openai"),
        ("claude-3-5-sonnet-20240620", "claude-3-5-sonnet", "anthropic"),
        ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet", "anthropic"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet", "anthropic"),
        ("anthropic/claude-3.5-sonnet", "claude-3-5-sonnet", "anthropic"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet", "anthropic"),
        ("anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku", "anthropic"),
        ("bedrock/eu.anthropic.claude-3-sonnet-20240229-v1:0", "claude-3-sonnet", "anthropic"),
        ("meta.llama3-1-70b-instruct-v1:0", "llama3-1-70b-instruct", ""),
        ("gemini-2.0-flash-001", "gemini-2.0-flash", "gcp.gemini"),
        ("mistral-large-2411", "mistral-large", "mistral_ai"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b-instruct", ""),
    ],
)
def test_normalize(raw, norm, family):
    assert normalize_model(raw) == norm
    assert model_family(raw) == family


def test_snapshots_are_not_other_models():
    assert normalize_model("gpt-4o") != normalize_model("gpt-4o-mini-2024-07-18")
    assert normalize_model("claude-3-5-sonnet-20241022") != normalize_model(
        "claude-3-5-haiku-20241022"
    )


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("api.openai.com", "openai"),
        ("api.openai.com:443", "openai"),
        ("contoso.openai.azure.com", "azure.ai.openai"),
        ("x.cognitiveservices.azure.com", "azure.ai.openai"),
        ("bedrock-runtime.us-east-1.amazonaws.com", "aws.bedrock"),
        ("s3.amazonaws.com", ""),
        ("us-central1-aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("generativelanguage.googleapis.com", "gcp.gemini"),
        ("api.groq.com", "groq"),
        ("openrouter.ai", "openrouter"),
        ("127.0.0.1:8080", ""),
        ("notapi.openai.com.evil.example", ""),
    ],
)
def test_hosts(host, provider):
    assert provider_from_host(host) == provider


def test_config_hosts_come_first():
    r = HostResolver(
        {"127.0.0.1:9000": "Anthropic", ".gw.internal": "bedrock", "api.openai.com": "azure"}
    )
    assert r.provider("127.0.0.1:9000") == "anthropic"
    assert r.provider("127.0.0.1:9001") == ""
    assert r.provider("eu.gw.internal") == "aws.bedrock"
    assert r.provider("api.openai.com") == "azure.ai.openai"


def test_providers():
    assert canonical_provider("Anthropic") == "anthropic"
    assert canonical_provider("vertex_ai") == "gcp.vertex_ai"
    assert canonical_provider("xai") == "x_ai"
    assert canonical_provider("something-new") == "something-new"
    assert compatible("anthropic", "aws.bedrock") and compatible("openai", "azure.ai.openai")
    assert not compatible("openai", "anthropic")
    assert compatible("anthropic", "openrouter") and compatible("", "openai")
