"""The processors an audit runs, configured from the same YAML as the streaming pipeline.

`groupbytrace` -> `provider_reconciliation` -> `cache_tagging` -> `fallback_chain` ->
`cleanliness`, each with its config from the first `traces` pipeline of `--config` that has
a `cleanliness` processor (other processors of that pipeline, such as `memory_limiter`,
`batch` or `tail_sampling`, are not run). An enrichment processor that pipeline lacks runs
with its defaults and the `hosts` and `attributes` of `cleanliness` (so that they share
one span index, and the report can say who served each call). Without `--config`: the
processors of `configs/local.yaml` (`make run`), all with their defaults (`DEFAULTS`).

Changed for an offline run, whatever the config says: `groupbytrace` holds every trace of
a partition until the input ends (no time-outs, no limits: the partition is sized to fit
in memory), and `cleanliness` keeps a median per task class however many there are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pipeline import config as config_mod
from pipeline.component import ComponentID, ProcessorFactory, Settings, TracesConsumer
from pipeline.configtypes import decode
from pipeline.errors import ConfigError
from pipeline.telemetry import Telemetry
from processors import (
    cache_tagging,
    cleanliness,
    fallback_chain,
    groupbytrace,
    provider_reconciliation,
)
from processors.cleanliness import CleanlinessConfig, CleanlinessProcessor
from processors.genai import keys_for

__all__ = ["DEFAULTS", "ORDER", "Chain", "ChainSpec", "spec_from_config"]

ORDER = (
    "groupbytrace",
    "provider_reconciliation",
    "cache_tagging",
    "fallback_chain",
    "cleanliness",
)
# configs/local.yaml's processors (a test holds them equal): the audit's default
DEFAULTS: dict[str, dict[str, Any]] = {
    "groupbytrace": {"wait_duration": "2s", "wait_duration_after_root": "200ms"},
    "provider_reconciliation": {},
    "cache_tagging": {},
    "fallback_chain": {},
    "cleanliness": {},
}
_LIFTED = 1 << 40
# the factories, imported alone (the registry imports every component: receivers,
# exporters and their libraries, which an audit without --config does not need)
FACTORIES: dict[str, ProcessorFactory[Any]] = {
    f.type: f
    for f in (
        groupbytrace.factory,
        provider_reconciliation.factory,
        cache_tagging.factory,
        fallback_chain.factory,
        cleanliness.factory,
    )
}


@dataclass
class ChainSpec:
    """The processors' configs, in `ORDER`; the config of `kafka://` inputs' client."""

    configs: dict[str, Any]
    source: str  # where they come from (for the report)
    kafka: dict[str, Any] = field(default_factory=dict)
    # the config's `dataset` exporter (its options for --dataset), if it has one
    dataset: Any = None

    @property
    def cleanliness(self) -> CleanlinessConfig:
        cfg: CleanlinessConfig = self.configs["cleanliness"]
        return cfg


def _decode(kind: str, raw: dict[str, Any], path: str) -> Any:
    cfg, errs = decode(raw, FACTORIES[kind].config_type, path)
    if errs or cfg is None:
        raise ConfigError(errs or [f"{path}: cannot be decoded"])
    return cfg


def spec_from_config(sources: list[str] | None) -> ChainSpec:
    """The chain's configs from `--config` sources (None: `DEFAULTS`); a `ConfigError`
    lists what is wrong."""
    if not sources:
        defaults = {k: _decode(k, v, f"processors::{k}") for k, v in DEFAULTS.items()}
        return _offline(ChainSpec(defaults, "defaults (the processors of configs/local.yaml)"))
    from pipeline.registry import REGISTRY

    cfg = config_mod.load(sources, REGISTRY)
    chosen: tuple[str, tuple[ComponentID, ...]] | None = None
    for pid, p in cfg.pipelines.items():
        if any(c.type == "cleanliness" for c in p.processors):
            chosen = (pid, p.processors)
            break
    if chosen is None:
        raise ConfigError(
            ["service::pipelines: no traces pipeline has a cleanliness processor to audit with"]
        )
    pid, procs = chosen
    configs: dict[str, Any] = {}
    for cid in procs:
        if cid.type in ORDER and cid.type not in configs:
            configs[cid.type] = cfg.components["processor"][cid]
    clean: CleanlinessConfig = configs["cleanliness"]
    for kind in ORDER:
        if kind not in configs:
            raw: dict[str, Any] = {}
            if kind != "groupbytrace":
                raw = {
                    "hosts": dict(clean.hosts),
                    "attributes": msgspec.to_builtins(clean.attributes),
                }
            configs[kind] = _decode(kind, raw, f"processors::{kind}")
    kafka: dict[str, Any] = {}
    for rid in sorted(cfg.components["receiver"], key=str):
        if rid.type == "kafka":
            r = cfg.components["receiver"][rid]
            kafka = {
                "auth": r.auth,
                "tls": r.tls,
                "client_id": r.client_id,
                "protocol_version": r.protocol_version,
            }
            break
    dataset = None
    exporters = [*cfg.pipelines[pid].exporters, *sorted(cfg.components["exporter"], key=str)]
    for eid in exporters:
        if eid.type == "dataset" and eid in cfg.components["exporter"]:
            dataset = cfg.components["exporter"][eid]
            break
    where = ", ".join(sources)
    return _offline(ChainSpec(configs, f"{where} (pipeline {pid})", kafka, dataset))


def _offline(spec: ChainSpec) -> ChainSpec:
    g = spec.configs["groupbytrace"]
    spec.configs["groupbytrace"] = msgspec.structs.replace(
        g, num_traces=_LIFTED, memory_limit_mib=_LIFTED, released_cache_size=0
    )
    c: CleanlinessConfig = spec.configs["cleanliness"]
    spec.configs["cleanliness"] = msgspec.structs.replace(
        c, timing=msgspec.structs.replace(c.timing, max_task_classes=_LIFTED), late_cache_size=0
    )
    return spec


class Chain:
    """The processors, made for one partition (fresh state: what one partition's traces
    show does not leak into another's), ending in `sink`; `tap` (the audit's `CallTap`)
    goes between `fallback_chain` and `cleanliness`."""

    def __init__(
        self,
        spec: ChainSpec,
        sink: TracesConsumer,
        tap: Callable[[Any, TracesConsumer], TracesConsumer] | None = None,
    ) -> None:
        telemetry = Telemetry(level="none")
        nxt: TracesConsumer = sink
        made: dict[str, Any] = {}
        self.tap: Any = None
        for kind in reversed(ORDER):
            if kind == "fallback_chain" and tap is not None:
                # the index the enrichment processors share (their keys: cleanliness may
                # map other hosts or attributes and build its own)
                nxt = self.tap = tap(keys_for(spec.configs[kind]), nxt)
            factory = FACTORIES[kind]
            settings = Settings(
                ComponentID(kind),
                "processor",
                telemetry,
                logging.getLogger(f"tracesieve.audit.{kind}"),
                "traces/audit",
            )
            nxt = made[kind] = factory.create(settings, spec.configs[kind], nxt)
        self.first = nxt
        self.groupbytrace = made["groupbytrace"]
        cl = made["cleanliness"]
        assert isinstance(cl, CleanlinessProcessor)
        self.cleanliness: CleanlinessProcessor = cl
