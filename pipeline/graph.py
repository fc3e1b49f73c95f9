"""The pipeline graph: components built from a config and wired together.

- Receivers, exporters and connectors are created once per id and shared; processors
  once per pipeline. A receiver in several pipelines fans out to each of them.
- Each pipeline's head carries the pipeline's aggregate `mutates_data`, so the fan-out
  copies a batch only for pipelines that change it.
- `start()` runs in reverse topological order (exporters first, receivers last) and
  `shutdown()` in topological order, so every stage drains into a live consumer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pipeline.component import (
    Component,
    ComponentID,
    Host,
    Kind,
    Registry,
    Settings,
    TracesConsumer,
)
from pipeline.config import CollectorConfig
from pipeline.consumers import fanout
from pipeline.errors import ConfigError
from pipeline.telemetry import Telemetry

log = logging.getLogger("tracesieve.graph")


@dataclass
class Node:
    key: str
    kind: Kind
    id: ComponentID
    component: Any
    pipeline: str | None = None
    targets: list[str] = field(default_factory=list)  # keys of nodes it sends to

    def __str__(self) -> str:
        where = f" in pipeline {self.pipeline}" if self.pipeline else ""
        return f"{self.kind} {self.id}{where}"


class _PipelineHead:
    """Entry of a pipeline, carrying the pipeline's aggregate `mutates_data`."""

    def __init__(self, first: TracesConsumer, mutates: bool) -> None:
        self._first = first
        self.mutates_data = mutates
        self.consume_traces = first.consume_traces


class Graph:
    def __init__(self, cfg: CollectorConfig, registry: Registry, telemetry: Telemetry) -> None:
        self.cfg = cfg
        self.registry = registry
        self.telemetry = telemetry
        self.nodes: dict[str, Node] = {}
        # pipeline -> (head consumer, keys of the nodes it enters)
        self._heads: dict[str, tuple[TracesConsumer, list[str]]] = {}
        self._building: set[str] = set()
        self._build()
        self.order = self._topological()

    # -- building --------------------------------------------------------------------
    def _settings(self, kind: Kind, cid: ComponentID, pipeline: str | None = None) -> Settings:
        name = f"tracesieve.{kind}.{cid}" + (f"[{pipeline}]" if pipeline else "")
        return Settings(cid, kind, self.telemetry, logging.getLogger(name), pipeline)

    def _create(self, kind: Kind, cid: ComponentID, *args: Any, pipeline: str | None = None) -> Any:
        factory = self.registry.table(kind)[cid.type]
        cfg = self.cfg.components[kind][cid]
        try:
            return factory.create(self._settings(kind, cid, pipeline), cfg, *args)
        except ConfigError as exc:
            prefix = f"{kind}s::{cid}"
            raise ConfigError([f"{prefix}: {e}" for e in exc.errors]) from None
        except (ValueError, OSError) as exc:
            raise ConfigError([f"{kind}s::{cid}: {exc}"]) from None

    def _exporter(self, cid: ComponentID) -> tuple[TracesConsumer, str]:
        key = f"exporter:{cid}"
        if key not in self.nodes:
            self.nodes[key] = Node(key, "exporter", cid, self._create("exporter", cid))
        return self.nodes[key].component, key

    def _connector(self, cid: ComponentID) -> tuple[TracesConsumer, str]:
        key = f"connector:{cid}"
        if key in self.nodes:
            return self.nodes[key].component, key
        if key in self._building:
            raise ConfigError([f"connectors::{cid}: pipelines form a cycle through this connector"])
        self._building.add(key)
        routes: dict[str, TracesConsumer] = {}
        targets: list[str] = []
        for pid, p in self.cfg.pipelines.items():
            if cid in p.receivers:
                head, first = self._pipeline(pid)
                routes[pid] = head
                targets += first
        self._building.discard(key)
        self.nodes[key] = Node(
            key, "connector", cid, self._create("connector", cid, routes), targets=targets
        )
        return self.nodes[key].component, key

    def _pipeline(self, pid: str) -> tuple[TracesConsumer, list[str]]:
        if pid in self._heads:
            return self._heads[pid]
        p = self.cfg.pipelines[pid]
        outs: list[TracesConsumer] = []
        out_keys: list[str] = []
        for eid in p.exporters:
            if eid in self.cfg.components["connector"]:
                consumer, key = self._connector(eid)
            else:
                consumer, key = self._exporter(eid)
            outs.append(consumer)
            out_keys.append(key)
        nxt: TracesConsumer = fanout(outs)
        nxt_keys = out_keys
        mutates = False
        for prid in reversed(p.processors):
            proc = self._create("processor", prid, nxt, pipeline=pid)
            key = f"processor:{pid}:{prid}"
            self.nodes[key] = Node(key, "processor", prid, proc, pid, targets=list(nxt_keys))
            mutates = mutates or bool(proc.mutates_data)
            nxt, nxt_keys = proc, [key]
        head: TracesConsumer = nxt if nxt.mutates_data == mutates else _PipelineHead(nxt, mutates)
        self._heads[pid] = (head, nxt_keys)
        return self._heads[pid]

    def _build(self) -> None:
        receivers: dict[ComponentID, list[str]] = {}
        for pid, p in self.cfg.pipelines.items():
            for rid in p.receivers:
                if rid in self.cfg.components["receiver"]:
                    receivers.setdefault(rid, []).append(pid)
            self._pipeline(pid)
        for rid, pids in receivers.items():
            heads = [self._heads[pid][0] for pid in pids]
            targets = [k for pid in pids for k in self._heads[pid][1]]
            key = f"receiver:{rid}"
            self.nodes[key] = Node(
                key, "receiver", rid, self._create("receiver", rid, fanout(heads)), targets=targets
            )

    def _topological(self) -> list[Node]:
        order: list[Node] = []
        state: dict[str, int] = {}

        def visit(key: str) -> None:
            if state.get(key) == 2:
                return
            if state.get(key) == 1:
                raise ConfigError([f"service::pipelines: cycle through {self.nodes[key]}"])
            state[key] = 1
            for t in self.nodes[key].targets:
                visit(t)
            state[key] = 2
            order.append(self.nodes[key])

        for key in self.nodes:
            visit(key)
        order.reverse()
        return order

    # -- lifecycle -------------------------------------------------------------------
    def components(self, kind: Kind) -> list[Any]:
        return [n.component for n in self.order if n.kind == kind]

    async def start(self, host: Host) -> None:
        started: list[Node] = []
        try:
            for node in reversed(self.order):
                await node.component.start(host)
                started.append(node)
        except BaseException:
            for node in reversed(started):
                await _shutdown_quietly(node)
            raise

    async def shutdown(self) -> None:
        for node in self.order:
            await _shutdown_quietly(node)


async def _shutdown_quietly(node: Node) -> None:
    comp: Component = node.component
    try:
        await comp.shutdown()
    except Exception:
        log.exception("error shutting down %s", node)
