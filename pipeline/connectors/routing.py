"""`routing` connector: sends data to the pipelines of the first route it matches. Two
kinds of table, not mixed in one connector:

**OTTL routes**, as the OTel Collector's routing connector (`statement` or `condition`,
`context`, `error_mode`); the conditions are `pipeline.ottl`'s subset:

    connectors:
      routing:
        default_pipelines: [traces/other]
        error_mode: ignore                   # propagate (default) | ignore | silent
        table:
          - statement: route() where resource.attributes["tenant"] == "acme"
            pipelines: [traces/acme]
          - context: span
            condition: attributes["gen_ai.system"] != nil and kind == SPAN_KIND_CLIENT
            pipelines: [traces/llm]
          - context: request                 # client metadata (include_metadata: true)
            condition: request["X-Tenant"] == "globex"
            pipelines: [traces/globex]

- `context: resource` (the default; as in the Collector, a statement whose paths name
  `span.` is read in the span context) routes each ResourceSpans by its resource's
  attributes; `span` routes each span (its resource and scope go along); `request`
  routes the whole batch by its client metadata (`request["key"] == "value"` or `!=`).
  Each resource or span goes to the first route that matches, else to
  `default_pipelines` (none: dropped and counted), so a trace can be split.
- `match_once: false` (removed from the Collector in v0.120; accepted here): every
  matching route gets the data, the default only what none matched.
- `error_mode`: a condition that cannot be evaluated (arithmetic on a string) fails the
  batch (`propagate`, a permanent error) or counts as not matching (`ignore`, logged;
  `silent`).
- Routes with `context: log`, `metric` or `datapoint` are for other signals: accepted,
  never matched.

**Trace-level routes** (tracesieve's own), which keep every trace whole:

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
from bisect import bisect_left
from collections import Counter, OrderedDict
from typing import Any, Literal

from pipeline import ottl, wirescan, wiresplit
from pipeline.component import ConnectorFactory, Host, Settings, TracesConsumer
from pipeline.configtypes import Config, NonNegInt
from pipeline.consumers import fanout
from pipeline.errors import ConfigError, PermanentError, RefusedError
from pipeline.pdata import Traces
from pipeline.telemetry import RateLimitedLog
from pipeline.wholetraces import resource_attributes, split, trace_attribute, trace_views

Scalar = str | int | float | bool
OTHER_CONTEXTS = ("log", "metric", "datapoint")
_REQUEST = re.compile(r'^\s*request\[\s*"([^"]+)"\s*\]\s*(==|!=)\s*"((?:[^"\\]|\\.)*)"\s*$')


def request_condition(text: str) -> tuple[str, str, str]:
    """(key, op, value) of a `request` context condition: `request["key"] == "value"`."""
    m = _REQUEST.match(text)
    if m is None:
        raise ValueError(
            """condition must have format 'request["<name>"] <comparator> <value>' """
            "(comparator == or !=, value a string)"
        )
    return m.group(1).lower(), m.group(2), m.group(3).replace('\\"', '"')


class RouteConfig(Config):
    pipelines: list[str] = []
    # trace-level routes (tracesieve's own)
    attribute: str | None = None
    values: list[Scalar] = []
    regex: str | None = None
    # OTTL routes (the Collector's)
    statement: str | None = None
    condition: str | None = None
    context: str = ""

    @property
    def is_ottl(self) -> bool:
        return self.statement is not None or self.condition is not None

    def compile(self) -> ottl.Condition | tuple[str, str, str] | None:
        """The route's condition: an OTTL condition, a request condition, or None for a
        route of another signal's context. Raises OTTLError / ValueError."""
        ctx = self.context
        if ctx in OTHER_CONTEXTS:
            return None
        if ctx == "request":
            return request_condition(self.condition or "")
        if self.statement is not None:
            use = ctx or ottl.infer_context(self.statement)
            return ottl.parse_statement(self.statement, use)
        text = self.condition or ""
        return ottl.parse_condition(text, ctx or ottl.infer_context(text))

    def other_signal_notes(self) -> list[str]:
        return ["context"] if self.context in OTHER_CONTEXTS else []

    def validate(self) -> list[str]:
        errs = []
        if not self.pipelines:
            errs.append("pipelines: invalid route: no pipelines defined")
        if self.is_ottl:
            if self.attribute is not None or self.values or self.regex is not None:
                errs.append(
                    "attribute: give either attribute/values/regex (a trace-level route) or "
                    "statement/condition (an OTTL route), not both"
                )
            if self.statement is not None and self.condition is not None:
                return [*errs, "statement: invalid route: both condition and statement provided"]
            if self.context not in ("", "resource", "span", "request", *OTHER_CONTEXTS):
                return [*errs, f"context: invalid context: {self.context}"]
            if self.context == "request" and self.statement is not None:
                return [*errs, """statement: "request" context requires a 'condition'"""]
            field = "statement" if self.statement is not None else "condition"
            try:
                self.compile()
            except (ottl.OTTLError, ValueError) as exc:
                errs.append(f"{field}: {exc}")
            return errs
        if self.attribute is None:
            return [*errs, "statement: invalid route: no condition or statement provided"]
        if not self.attribute.strip():
            errs.append("attribute: must not be empty")
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
    # OTTL routes: what a condition that cannot be evaluated does (see the docstring)
    error_mode: Literal["propagate", "ignore", "silent"] = "propagate"
    # OTTL routes: false routes to every matching route (removed from the Collector)
    match_once: bool | None = None
    # trace ids whose route is remembered, so that later spans of a trace (late fragments
    # without the root span that carries the attribute) follow it
    route_cache_size: NonNegInt = 100_000

    def validate(self) -> list[str]:
        if not self.table:
            return ["table: invalid routing table: the routing table is empty"]
        kinds = {r.is_ottl for r in self.table}
        if len(kinds) > 1:
            return [
                "table: mixes trace-level routes (attribute) with OTTL routes "
                "(statement/condition); use one kind per connector"
            ]
        return []


def _same(a: Any, b: Scalar) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b


class _AttributeRoute:
    def __init__(self, cfg: RouteConfig) -> None:
        self.attribute = cfg.attribute or ""
        self.values = list(cfg.values)
        self.regex = re.compile(cfg.regex) if cfg.regex is not None else None

    def matches(self, value: Any) -> bool:
        if value is None:
            return False
        if self.regex is not None:
            return isinstance(value, str) and self.regex.search(value) is not None
        return any(_same(value, v) for v in self.values)


class _RoutingBase:
    """What both kinds of table share: the checked pipelines, one consumer per route and
    then the default (None: drop), the routed counter (`routed_name`, `routed_help`; by
    route index, 'default' or 'none') and the dropped-spans counter, and the delivery of a
    batch split by route."""

    routed_name: str
    routed_help: str

    def __init__(
        self, settings: Settings, cfg: RoutingConfig, routes: dict[str, TracesConsumer]
    ) -> None:
        check_pipelines(cfg, routes)
        self._targets: list[TracesConsumer | None] = [
            fanout([routes[p] for p in r.pipelines]) for r in cfg.table
        ]
        self._targets.append(
            fanout([routes[p] for p in cfg.default_pipelines]) if cfg.default_pipelines else None
        )
        self.mutates_data = any(c.mutates_data for c in routes.values())
        labels = (str(settings.id),)
        routed = settings.telemetry.counter(
            self.routed_name, self.routed_help, ("connector", "route")
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

    async def _deliver(self, parts: dict[int, Traces]) -> None:
        """Sends each part to its route's target (no target: counted as dropped); every
        target gets its part even when another fails; then raises the first refusal, else
        the first error."""
        errors: list[BaseException] = []
        for r, part in parts.items():
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


class RoutingConnector(_RoutingBase):
    routed_name = "tracesieve_routing_traces"
    routed_help = "Traces routed, by route (its index in the table, 'default' or 'none': dropped)"

    def __init__(
        self, settings: Settings, cfg: RoutingConfig, routes: dict[str, TracesConsumer]
    ) -> None:
        super().__init__(settings, cfg, routes)
        self._routes = [_AttributeRoute(r) for r in cfg.table]
        self._cache_size = cfg.route_cache_size
        self._cache: OrderedDict[bytes, int] = OrderedDict()

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
        await self._deliver(split(traces, views, routes))


def check_pipelines(cfg: RoutingConfig, routes: dict[str, TracesConsumer]) -> None:
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


class _Route:
    """A compiled OTTL route."""

    __slots__ = ("cond", "context", "request")

    def __init__(self, cfg: RouteConfig) -> None:
        got = cfg.compile()
        self.cond: ottl.Condition | None = got if isinstance(got, ottl.Condition) else None
        self.request: tuple[str, str, str] | None = got if isinstance(got, tuple) else None
        self.context = (
            "request" if self.request is not None else self.cond.context if self.cond else "other"
        )

    def request_matches(self, traces: Traces) -> bool:
        assert self.request is not None
        key, op, value = self.request
        client = traces.client
        values = client.get(key) if client is not None else ()
        if op == "==":
            return any(v == value for v in values)
        return any(v != value for v in values)


class OTTLRoutingConnector(_RoutingBase):
    """The Collector's routing connector over OTTL conditions (see the module docstring)."""

    routed_name = "tracesieve_routing_spans"
    routed_help = "Spans routed, by route (its index in the table, 'default' or 'none': dropped)"

    def __init__(
        self, settings: Settings, cfg: RoutingConfig, routes: dict[str, TracesConsumer]
    ) -> None:
        super().__init__(settings, cfg, routes)
        self._log = settings.logger
        self._warn = RateLimitedLog(self._log, 1.0)
        self._routes = [_Route(r) for r in cfg.table]
        self._match_all = cfg.match_once is False
        if self._match_all:
            self._log.warning(
                "match_once: false was removed from the OTel Collector (v0.120); every "
                "matching route gets the data"
            )
        self._error_mode = cfg.error_mode
        self._by_span = any(r.context == "span" for r in self._routes)
        keys: set[str] = set()
        for r in self._routes:
            if r.cond is not None:
                keys |= r.cond.span_keys
        self._span_keys = frozenset(keys)

    # -- matching -------------------------------------------------------------------
    def _eval(self, route: _Route, data: ottl.SpanData) -> bool:
        cond = route.cond
        assert cond is not None
        try:
            return cond.matches(data)
        except ottl.OTTLEvalError as exc:
            if self._error_mode == "propagate":
                raise PermanentError(f"routing: cannot evaluate {cond.text!r}: {exc}") from None
            if self._error_mode == "ignore":
                self._warn.warning("cannot evaluate %r (taken as no match): %s", cond.text, exc)
            return False

    def _choose(
        self,
        traces: Traces,
        span_data: ottl.SpanData | None,
        res_data: ottl.SpanData,
        requests: list[bool],
    ) -> list[int]:
        """The targets of one element (resource or span): route indexes, or [default]."""
        out: list[int] = []
        for i, r in enumerate(self._routes):
            if r.context == "request":
                hit = requests[i]
            elif r.context == "resource":
                hit = self._eval(r, res_data)
            elif r.context == "span" and span_data is not None:
                hit = self._eval(r, span_data)
            else:
                hit = False
            if hit:
                out.append(i)
                if not self._match_all:
                    return out
        return out or [len(self._routes)]

    # -- consuming ------------------------------------------------------------------
    async def consume_traces(self, traces: Traces) -> None:
        requests = [r.context == "request" and r.request_matches(traces) for r in self._routes]
        if self._by_span:
            parts = self._split_spans(traces, requests)
        else:
            parts = self._split_resources(traces, requests)
        for r, part in parts.items():
            self._m_routed[r].inc(part.span_count)
        await self._deliver(parts)

    def _split_resources(self, traces: Traces, requests: list[bool]) -> dict[int, Traces]:
        base = traces.base
        starts = [s[9] for s in traces.scan()]
        chosen: dict[int, list[tuple[int, int, int]]] = {}
        for key, start, v0, end in wiresplit.fields(base, 0, len(base)):
            if key != 0x0A:  # resource_spans
                continue
            head = b"".join(
                base[a:b] for k, a, _, b in wiresplit.fields(base, v0, end) if k != 0x12
            )
            attrs = resource_attributes(head)
            n = bisect_left(starts, end) - bisect_left(starts, v0)
            for r in self._choose(traces, None, ottl.SpanData(base, None, attrs, None), requests):
                chosen.setdefault(r, []).append((start, end, n))
        if len(chosen) == 1:
            ((r, items),) = chosen.items()
            if sum(n for _, _, n in items) == traces.span_count:
                return {r: traces}
        return {
            r: traces.slice([(a, b) for a, b, _ in items], sum(n for _, _, n in items))
            for r, items in chosen.items()
        }

    def _split_spans(self, traces: Traces, requests: list[bool]) -> dict[int, Traces]:
        raw = traces.to_bytes()
        refs = wiresplit.parse(raw)
        infos = wirescan.spans(raw)
        if len(refs) != len(infos):  # pragma: no cover - both read the same framing
            raise PermanentError("routing: inconsistent span framing")
        routes = self._routes
        default = len(routes)
        match_all = self._match_all
        # per route: its span condition, or None when its answer is the same for every
        # span of a resource (request and resource routes: worked out once per resource)
        span_fns = [r.cond.fn if r.context == "span" and r.cond else None for r in routes]
        chosen: dict[int, list[wiresplit.SpanRef]] = {}
        per_resource: dict[int, tuple[dict[str, Any], list[bool]]] = {}
        keys = self._span_keys
        for ref, info in zip(refs, infos, strict=True):
            res = ref[0].resource
            got = per_resource.get(id(res))
            if got is None:
                attrs = resource_attributes(res.head)
                rdata = ottl.SpanData(raw, None, attrs, None)
                fixed = [
                    requests[i]
                    if r.context == "request"
                    else (self._eval(r, rdata) if r.context == "resource" else False)
                    for i, r in enumerate(routes)
                ]
                got = per_resource[id(res)] = (attrs, fixed)
            fixed = got[1]
            data = ottl.SpanData(raw, info, got[0], keys)
            target = default
            for i, fn in enumerate(span_fns):
                if fn is None:
                    hit = fixed[i]
                else:
                    try:
                        hit = bool(fn(data))
                    except Exception:  # an evaluation error: per error_mode
                        hit = self._eval(routes[i], data)
                if hit:
                    if not match_all:
                        target = i
                        break
                    chosen.setdefault(i, []).append(ref)
                    target = -1
            if target >= 0:
                chosen.setdefault(target, []).append(ref)
        if len(chosen) == 1 and len(next(iter(chosen.values()))) == len(refs):
            return {next(iter(chosen)): traces}
        return {
            r: Traces(
                raw=wiresplit.build(group),
                span_count=len(group),
                deliveries=traces.deliveries,
                client=traces.client,
            )
            for r, group in chosen.items()
        }


def create(
    settings: Settings, cfg: RoutingConfig, routes: dict[str, TracesConsumer]
) -> RoutingConnector | OTTLRoutingConnector:
    if cfg.table and cfg.table[0].is_ottl:
        return OTTLRoutingConnector(settings, cfg, routes)
    return RoutingConnector(settings, cfg, routes)


factory = ConnectorFactory(
    type="routing",
    config_type=RoutingConfig,
    create=create,
    stability="beta",
    description="routes by OTTL conditions (the Collector's), or whole traces by an attribute",
)
