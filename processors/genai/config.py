"""Options the GenAI processors share: extra host -> provider and attribute-key mappings."""

from __future__ import annotations

import msgspec

from pipeline.configtypes import Config

__all__ = ["AttributeMappings", "EnrichmentConfig", "GenAIConfig"]


class AttributeMappings(Config):
    """Extra attribute keys, per field, read before the built-in ones. A key's value may be a
    string, a number, a bool or a string array (captured headers: the first element)."""

    provider: list[str] = msgspec.field(default_factory=list)  # provider the span claims
    request_model: list[str] = msgspec.field(default_factory=list)
    response_model: list[str] = msgspec.field(default_factory=list)
    served_provider: list[str] = msgspec.field(default_factory=list)  # gateway: who served
    served_model: list[str] = msgspec.field(default_factory=list)  # gateway: model served
    cache_hit: list[str] = msgspec.field(default_factory=list)  # true / "HIT" / "SEMANTIC HIT"
    cache_type: list[str] = msgspec.field(default_factory=list)  # exact|direct|semantic
    retries: list[str] = msgspec.field(default_factory=list)  # retries before this attempt
    fallback_index: list[str] = msgspec.field(default_factory=list)  # >0: a fallback served
    response_id: list[str] = msgspec.field(default_factory=list)
    tool_name: list[str] = msgspec.field(default_factory=list)

    def all_keys(self) -> list[str]:
        return [k for f in self.__struct_fields__ for k in getattr(self, f)]


class GenAIConfig(Config):
    """Options every GenAI processor has. Processors with the same `hosts` and `attributes`
    share one span index per batch."""

    # host suffix (`.internal.example`), exact host, or `host:port` -> provider
    hosts: dict[str, str] = msgspec.field(default_factory=dict)
    attributes: AttributeMappings = msgspec.field(default_factory=AttributeMappings)

    def validate(self) -> list[str]:
        return [f"hosts: empty provider for {h!r}" for h, p in self.hosts.items() if not p.strip()]


class EnrichmentConfig(GenAIConfig):
    """Options of the three enrichment processors (not of `cleanliness`)."""

    # what an earlier tracesieve wrote (a sidecar that saw part of a trace): false keeps
    # it; true replaces this processor's keys with what it finds now (whole traces, after
    # groupbytrace)
    overwrite: bool = False
