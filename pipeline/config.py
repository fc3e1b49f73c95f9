"""The collector's configuration, in the OTel Collector's format.

    receivers:  {<type>[/<name>]: {...}}
    processors: {...}
    exporters:  {...}
    connectors: {...}
    extensions: {...}
    service:
      extensions: [...]
      pipelines: {traces[/<name>]: {receivers: [...], processors: [...], exporters: [...]}}
      telemetry: {logs: {level: info}, metrics: {level: normal, address: 127.0.0.1:8888}}
      shutdown_timeout: 30s

`load()` resolves the sources (see `pipeline.confmap`), decodes every component block
into its factory's config struct and checks the pipelines; it raises one `ConfigError`
listing every problem found, each with its `::`-separated path.

tracesieve carries traces only. What an OTel Collector config holds for other signals
(`logs`/`metrics`/`profiles` pipelines, the components only they use when tracesieve has
no such type, and components' settings for other signals) is accepted and ignored, with
one warning that lists it (`CollectorConfig.warnings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from pipeline import confmap
from pipeline.component import KINDS, ComponentID, Kind, Registry
from pipeline.configtypes import Config, Duration, check_endpoint, decode, other_signal_paths
from pipeline.errors import ConfigError

OTHER_SIGNALS = ("logs", "metrics", "profiles")

SECTIONS: dict[str, Kind] = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "connectors": "connector",
    "extensions": "extension",
}


class PipelineConfig(Config):
    receivers: list[str] = []
    processors: list[str] = []
    exporters: list[str] = []


class LogsConfig(Config):
    level: Literal["debug", "info", "warn", "error"] = "info"
    encoding: Literal["console", "json"] = "console"


class PrometheusExporterConfig(Config):
    host: str = "127.0.0.1"
    port: int = 8888


class PullExporterConfig(Config):
    prometheus: PrometheusExporterConfig = msgspec.field(default_factory=PrometheusExporterConfig)


class PullReaderConfig(Config):
    exporter: PullExporterConfig = msgspec.field(default_factory=PullExporterConfig)


class ReaderConfig(Config):
    pull: PullReaderConfig = msgspec.field(default_factory=PullReaderConfig)


class MetricsConfig(Config):
    """`address` (host:port) or the OTel Collector's `readers` form; `level: none` turns
    the /metrics endpoint off."""

    level: Literal["none", "basic", "normal", "detailed"] = "normal"
    address: str | None = None
    readers: list[ReaderConfig] = []

    def validate(self) -> list[str]:
        return check_endpoint(self.address, "address") if self.address else []

    def endpoint(self) -> tuple[str, int] | None:
        if self.level == "none":
            return None
        if self.address:
            host, _, port = self.address.rpartition(":")
            return host, int(port)
        if self.readers:
            p = self.readers[0].pull.exporter.prometheus
            return p.host, p.port
        return "127.0.0.1", 8888


class TelemetryConfig(Config):
    logs: LogsConfig = msgspec.field(default_factory=LogsConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)


class ServiceConfig(Config):
    extensions: list[str] = []
    pipelines: dict[str, PipelineConfig] = {}
    telemetry: TelemetryConfig = msgspec.field(default_factory=TelemetryConfig)
    shutdown_timeout: Duration = msgspec.field(default_factory=lambda: Duration(30.0))


@dataclass(frozen=True)
class Pipeline:
    id: str
    receivers: tuple[ComponentID, ...]
    processors: tuple[ComponentID, ...]
    exporters: tuple[ComponentID, ...]


@dataclass
class CollectorConfig:
    components: dict[Kind, dict[ComponentID, Any]] = field(
        default_factory=lambda: {k: {} for k in KINDS}
    )
    service: ServiceConfig = field(default_factory=ServiceConfig)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    # accepted, but worth telling the user (printed by `validate`, logged by `run`)
    warnings: list[str] = field(default_factory=list)
    # settings for other signals that were accepted and are ignored (their paths)
    ignored: list[str] = field(default_factory=list)
    # components of types tracesieve does not have: path -> the error, unless only
    # pipelines of other signals use them (then they are ignored)
    unknown: dict[str, tuple[str, ComponentID]] = field(default_factory=dict)


def _decode_section(
    raw: dict[str, Any], section: str, registry: Registry, cfg: CollectorConfig, errors: list[str]
) -> None:
    kind = SECTIONS[section]
    block = raw.get(section)
    if block is None:
        return
    if not isinstance(block, dict):
        errors.append(f"{section}: must be a map of component id to config")
        return
    table = registry.table(kind)
    for key, body in block.items():
        path = f"{section}::{key}"
        try:
            cid = ComponentID.parse(str(key))
        except ValueError as exc:
            errors.append(f"{path}: {exc}")
            continue
        factory = table.get(cid.type)
        if factory is None:
            valid = ", ".join(registry.types(kind))
            cfg.unknown[path] = (
                f'{path}: unknown type: "{cid.type}" for id: "{cid}" (valid values: [{valid}])',
                cid,
            )
            continue
        if body is not None and not isinstance(body, dict):
            errors.append(f"{path}: must be a map, got {type(body).__name__}")
            continue
        value, errs = decode(body, factory.config_type, path)
        errors += errs
        if value is not None:
            cfg.ignored += other_signal_paths(value, path)
        # recorded even when invalid, so that pipeline references to it still resolve
        cfg.components[kind][cid] = value


def _parse_ids(names: list[str], path: str, errors: list[str]) -> list[ComponentID]:
    ids: list[ComponentID] = []
    for n in names:
        try:
            cid = ComponentID.parse(n)
        except ValueError as exc:
            errors.append(f"{path}: {exc}")
            continue
        if cid in ids:
            errors.append(f'{path}: references "{cid}" more than once')
            continue
        ids.append(cid)
    return ids


def _component_paths(p: PipelineConfig) -> set[str]:
    """The config paths of the components a pipeline names ('receivers::otlp', ...); a
    receiver or exporter name may be a connector's too ('connectors::routing')."""
    paths: set[str] = set()
    for section, names in (
        ("receivers", p.receivers),
        ("processors", p.processors),
        ("exporters", p.exporters),
    ):
        paths.update(f"{section}::{n}".strip() for n in names)
        if section != "processors":
            paths.update(f"connectors::{n}".strip() for n in names)
    return paths


def _check_pipelines(registry: Registry, cfg: CollectorConfig, errors: list[str]) -> None:
    comps = cfg.components
    svc = cfg.service
    for name in svc.extensions:
        try:
            eid = ComponentID.parse(name)
        except ValueError as exc:
            errors.append(f"service::extensions: {exc}")
            continue
        if eid not in comps["extension"] and f"extensions::{eid}" not in cfg.unknown:
            errors.append(
                f'service::extensions: references extension "{eid}" which is not configured'
            )
    if not svc.pipelines:
        errors.append("service::pipelines: at least one pipeline is required")
    as_exporter: set[ComponentID] = set()
    as_receiver: set[ComponentID] = set()
    used_by_traces: set[str] = set()  # "<section>::<id>" of every component a traces pipeline names
    for pid, p in svc.pipelines.items():
        path = f"service::pipelines::{pid}"
        signal, sep, pname = pid.partition("/")
        if signal in OTHER_SIGNALS:
            cfg.ignored.append(path)
            continue
        if signal != "traces":
            errors.append(
                f"{path}: unknown signal {signal!r}: want traces[/<name>] "
                "(logs, metrics and profiles pipelines are accepted and ignored)"
            )
            continue
        used_by_traces |= _component_paths(p)
        if sep and not pname:
            errors.append(f"{path}: empty pipeline name after '/'")
            continue
        recv = _parse_ids(p.receivers, f"{path}::receivers", errors)
        procs = _parse_ids(p.processors, f"{path}::processors", errors)
        exps = _parse_ids(p.exporters, f"{path}::exporters", errors)
        if not p.receivers:
            errors.append(f"{path}: must have at least one receiver")
        if not p.exporters:
            errors.append(f"{path}: must have at least one exporter")
        unknown = {cid for _, cid in cfg.unknown.values()}
        for r in recv:
            if r in comps["connector"]:
                as_receiver.add(r)
            elif r not in comps["receiver"] and r not in unknown:
                errors.append(f'{path}: references receiver "{r}" which is not configured')
        for e in exps:
            if e in comps["connector"]:
                as_exporter.add(e)
            elif e not in comps["exporter"] and e not in unknown:
                errors.append(f'{path}: references exporter "{e}" which is not configured')
        seen_types: list[str] = []
        for pr in procs:
            if pr not in comps["processor"]:
                if pr not in unknown:
                    errors.append(f'{path}: references processor "{pr}" which is not configured')
                continue
            factory = registry.processors[pr.type]
            missing = [t for t in factory.requires_before if t not in seen_types]
            if factory.requires_before and len(missing) == len(factory.requires_before):
                need = " or ".join(f'"{t}"' for t in factory.requires_before)
                why = f": {factory.requires_reason}" if factory.requires_reason else ""
                errors.append(
                    f'{path}: processor "{pr}" needs {need} before it in the pipeline{why}'
                )
            seen_types.append(factory.type)
        cfg.pipelines[pid] = Pipeline(pid, tuple(recv), tuple(procs), tuple(exps))
    _sort_unknown(cfg, svc, used_by_traces, errors)
    for c in comps["connector"]:
        if c in as_exporter and c not in as_receiver:
            errors.append(
                f"connectors::{c}: used as exporter in a pipeline but not as receiver in any"
            )
        if c in as_receiver and c not in as_exporter:
            errors.append(
                f"connectors::{c}: used as receiver in a pipeline but not as exporter in any"
            )


def _sort_unknown(
    cfg: CollectorConfig, svc: ServiceConfig, used_by_traces: set[str], errors: list[str]
) -> None:
    """A component of a type tracesieve does not have is an error, unless only pipelines
    of other signals use it (a Collector config's metrics or logs components)."""
    used_elsewhere: set[str] = set()
    for pid, p in svc.pipelines.items():
        if pid.partition("/")[0] in OTHER_SIGNALS:
            used_elsewhere |= _component_paths(p)
    for path, (error, _) in cfg.unknown.items():
        if path in used_elsewhere and path not in used_by_traces:
            cfg.ignored.append(path)
        else:
            errors.append(error)


def load(sources: list[str], registry: Registry) -> CollectorConfig:
    errors: list[str] = []
    warnings: list[str] = []
    raw = confmap.resolve(sources, errors, warnings)
    return from_raw(raw, registry, errors, warnings)


def from_raw(
    raw: dict[str, Any],
    registry: Registry,
    errors: list[str] | None = None,
    warnings: list[str] | None = None,
) -> CollectorConfig:
    errors = [] if errors is None else errors
    cfg = CollectorConfig(raw=raw, warnings=list(warnings or ()))
    for key in raw:
        if key not in SECTIONS and key != "service":
            valid = ", ".join([*SECTIONS, "service"])
            errors.append(f"{key}: unknown top-level key (valid keys: {valid})")
    for section in SECTIONS:
        _decode_section(raw, section, registry, cfg, errors)
    svc_raw = raw.get("service")
    checked = False
    if svc_raw is None:
        errors.append("service: missing; it wires components into pipelines")
    elif not isinstance(svc_raw, dict):
        errors.append("service: must be a map")
    else:
        svc, errs = decode(svc_raw, ServiceConfig, "service")
        errors += errs
        if svc is not None:
            cfg.service = svc
            _check_pipelines(registry, cfg, errors)
            checked = True
    if not checked:  # no pipelines to tell whether unknown types are for other signals
        errors += [error for error, _ in cfg.unknown.values()]
    if cfg.ignored:
        cfg.warnings.append(
            "tracesieve carries traces only; these settings for other signals are accepted "
            "and ignored: " + ", ".join(cfg.ignored)
        )
    if errors:
        raise ConfigError(errors, cfg.warnings)
    return cfg
