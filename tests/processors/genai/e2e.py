"""Shared setup of the end-to-end GenAI tests (real instrumentation, agent frameworks,
signals, datasets): the fake OpenAI and Anthropic APIs as a pair, and the collector
configs they run, otlp/gRPC on loopback -> processors -> exporters."""

from __future__ import annotations

from typing import Any

from tests.processors.genai.fake_llm import FakeLLM, Logged

ENRICHMENT = ["provider_reconciliation", "cache_tagging", "fallback_chain"]


class Fakes:
    """A fake OpenAI API and a fake Anthropic API, on loopback."""

    def __init__(self) -> None:
        self.openai, self.anthropic = FakeLLM(), FakeLLM()

    def hosts(self) -> dict[str, str]:
        """The genai `hosts` setting naming each fake's provider."""
        return {
            f"127.0.0.1:{self.openai.port}": "openai",
            f"127.0.0.1:{self.anthropic.port}": "anthropic",
        }

    def log(self, tag: str, scenario: str) -> list[tuple[str, Logged]]:
        """(provider, request) the scenario sent: OpenAI's first (the apps fall back from
        OpenAI to Anthropic, never back)."""
        return [("openai", r) for r in self.openai.log_for(tag, scenario)] + [
            ("anthropic", r) for r in self.anthropic.log_for(tag, scenario)
        ]

    def close(self) -> None:
        self.openai.close()
        self.anthropic.close()


def file_exporter(out: str) -> dict[str, Any]:
    return {"file": {"path": out, "flush_interval": 0}}


def otlp_config(
    processors: list[tuple[str, dict[str, Any]]],
    exporters: dict[str, Any],
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """otlp/gRPC on 127.0.0.1:0 -> `processors` ((name, config), in order) -> every one
    of `exporters`; the collector's own metrics off unless `metrics` says."""
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": dict(processors),
        "exporters": exporters,
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": [name for name, _ in processors],
                    "exporters": list(exporters),
                }
            },
            "telemetry": {"metrics": metrics or {"level": "none"}},
        },
    }


def enrich_config(
    out: str, hosts: dict[str, str], metrics: dict[str, Any] | None = None
) -> dict[str, Any]:
    """otlp -> batch (the app exports everything in one request, kept whole here) -> the
    three enrichment processors -> file `out`."""
    genai = {"hosts": hosts}
    return otlp_config(
        [("batch", {"timeout": "1s"}), *((name, genai) for name in ENRICHMENT)],
        file_exporter(out),
        metrics,
    )


def classify_config(
    hosts: dict[str, str],
    exporters: dict[str, Any],
    *,
    enrich: bool = True,
    wait: str = "2s",
    after_root: str = "200ms",
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """otlp -> groupbytrace (`wait`, `after_root`) -> the three enrichment processors
    (unless not `enrich`) -> cleanliness -> `exporters`."""
    genai = {"hosts": hosts}
    return otlp_config(
        [
            ("groupbytrace", {"wait_duration": wait, "wait_duration_after_root": after_root}),
            *((name, genai) for name in (ENRICHMENT if enrich else [])),
            ("cleanliness", genai),
        ],
        exporters,
        metrics,
    )
