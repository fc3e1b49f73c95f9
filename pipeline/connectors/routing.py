"""`routing` connector: sends each trace to the pipelines of the first route it matches,
in the spirit of the OTel Collector's routing connector, with a simple match instead of
OTTL.

    connectors:
      routing:
        default_pipelines: [traces/rest]     # traces no route matches (none: dropped, counted)
        table:
          - attribute: sieve.trace.class     # a trace-level attribute (below)
            values: [clean]                  # equal to any of these (strings, numbers, booleans)
            pipelines: [traces/clean]
          - attribute: service.name
            regex: "^checkout-"              # or: a regular expression it contains a match of
            pipelines: [traces/checkout]

A trace-level attribute is read from the root span, then the root span's resource; a trace
without its root span in the batch uses the first span carrying the attribute (then that
span's resource). Routes are tried in order; the first match wins. The route of each
trace is remembered (`route_cache_size`, default 100000 trace ids): later spans of the
trace, such as late fragments from `groupbytrace`, follow it. Batches are split per
trace (a trace is never split); put it after `groupbytrace` so that it sees whole traces.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from typing import Any

from pipeline.component import ConnectorFactory, Host, Settings, TracesConsumer
from pipeline.configtypes import Config, NonNegInt
from pipeline.consumers import fanout
from pipeline.errors import ConfigError, RefusedError
from pipeline.pdata import Traces
from pipeline.wholetraces import split, trace_attribute, trace_views

Scalar = str | int | float | bool


class RouteConfig(Config):
    attribute: str
    pipelines: list[str]
    values: list[Scalar] = []
    regex: str | None = None

    def validate(self) -> list[str]:
        errs = []
        if not self.attribute.strip():
            errs.append("attribute: must not be empty")
        if not self.pipelines:
            errs.append("pipelines: list at least one pipeline")
        if bool(self.values) == (self.regex is not None):
            errs.append("values: give either values or regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                errs.append(f"regex: invalid regular expression {self.regex!r}: {exc}")
        return errs


class RoutingConfig(Config):
    table: list[RouteConfig] = []
    default_pipelines: list[str] = []
    # trace ids whose route is remembered, so that later spans of a trace (late fragments
    # without the root span that carries the attribute) follow it
    route_cache_size: NonNegInt = 100_000

    def validate(self) -> list[str]:
        return [] if self.table else ["table: list at least one route"]


def _same(a: Any, b: Scalar) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


class _Route:
    def __init__(self, cfg: RouteConfig) -> None:
        self.attribute = cfg.attribute
        self.values = list(cfg.values)
        self.regex = re.compile(cfg.regex) if cfg.regex is not None else None

    def matches(self, value: Any) -> bool:
        if value is None:
            return False
        if self.regex is not None:
            return isinstance(value, str) and self.regex.search(value) is not None
        return any(_same(value, v) for v in self.values)


class RoutingConnector:
    def __init__(
        self, settings: Settings, cfg: RoutingConfig, routes: dict[str, TracesConsumer]
    ) -> None:
        errors = []
        for i, r in enumerate(cfg.table):
            for p in r.pipelines:
                if p not in routes:
                    errors.append(
                        f'table::{i}::pipelines: pipeline "{p}" does not list this connector as a receiver'
                    )
        for p in cfg.default_pipelines:
            if p not in routes:
                errors.append(
                    f'default_pipelines: pipeline "{p}" does not list this connector as a receiver'
                )
        if errors:
            raise ConfigError(errors)
        self._routes = [_Route(r) for r in cfg.table]
        # one consumer per route, then the default (None: drop)
        self._targets: list[TracesConsumer | None] = [
            fanout([routes[p] for p in r.pipelines]) for r in cfg.table
        ]
        self._targets.append(
            fanout([routes[p] for p in cfg.default_pipelines]) if cfg.default_pipelines else None
        )
        self.mutates_data = any(c.mutates_data for c in routes.values())
        self._cache_size = cfg.route_cache_size
        self._cache: OrderedDict[bytes, int] = OrderedDict()
        labels = (str(settings.id),)
        routed = settings.telemetry.counter(
            "tracesieve_routing_traces",
            "Traces routed, by route (its index in the table, 'default' or 'none': dropped)",
            ("connector", "route"),
        )
        self._m_routed = [routed.labels(*labels, str(i)) for i in range(len(cfg.table))]
        self._m_routed.append(
            routed.labels(*labels, "default" if cfg.default_pipelines else "none")
        )
        self._m_dropped = settings.telemetry.counter(
            "tracesieve_routing_dropped_spans",
            "Spans of traces no route matched, with no default_pipelines",
            ("connector",),
        ).labels(*labels)

    async def start(self, host: Host) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    def route_of(self, value_of: Any) -> int:
        for i, r in enumerate(self._routes):
            if r.matches(value_of(r.attribute)):
                return i
        return len(self._routes)

    async def consume_traces(self, traces: Traces) -> None:
        views = trace_views(traces)
        routes: list[int] = []
        cache = self._cache
        for v in views:
            route = cache.get(v.trace_id)
            if route is None:
                memo: dict[str, Any] = {}

                def value_of(key: str, v: Any = v, memo: dict[str, Any] = memo) -> Any:
                    if key not in memo:
                        memo[key] = trace_attribute(v, key)
                    return memo[key]

                route = self.route_of(value_of)
                if self._cache_size:
                    cache[v.trace_id] = route
                    if len(cache) > self._cache_size:
                        cache.popitem(last=False)
            routes.append(route)
        counts = Counter(routes)
        for r, c in counts.items():
            self._m_routed[r].inc(c)
        errors: list[BaseException] = []
        for r, part in split(traces, views, routes).items():
            target = self._targets[r]
            if target is None:
                self._m_dropped.inc(part.span_count)
                continue
            try:
                await target.consume_traces(part)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise next((e for e in errors if isinstance(e, RefusedError)), errors[0])


factory = ConnectorFactory(
    type="routing",
    config_type=RoutingConfig,
    create=RoutingConnector,
    stability="beta",
    description="sends each trace to pipelines by a trace-level attribute",
)
