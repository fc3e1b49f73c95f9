"""The running collector: telemetry, extensions, the pipeline graph, signals and a
graceful stop.

Stop sequence (SIGTERM/SIGINT): readiness turns off (health 503, gRPC health
NOT_SERVING), receivers stop taking requests and finish the ones in flight, processors
flush, exporters drain their queues, all within `service.shutdown_timeout`. A second
signal forces exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from typing import Any

from aiohttp import web

from pipeline.component import ComponentID, Registry
from pipeline.config import CollectorConfig
from pipeline.gcpolicy import YoungCollector, gc_threshold
from pipeline.graph import Graph
from pipeline.httpserver import HTTPServer
from pipeline.telemetry import Telemetry

log = logging.getLogger("tracesieve")

SAME_SIGNAL_WINDOW = 0.25
"""Seconds: a stop signal this soon after the first is the same stop delivered twice (a
process group and its parent both send one), not a second request, which forces exit."""


class Service:
    """Implements `Host` for the components it runs."""

    def __init__(self, cfg: CollectorConfig, registry: Registry, *, manage_gc: bool = True) -> None:
        """`manage_gc`: once started, apply the process's cyclic-GC policy
        (`pipeline.gcpolicy`); off for a service that shares its process (a test's)."""
        self.cfg = cfg
        self._manage_gc = manage_gc
        self._gc_threshold = gc_threshold(os.environ.get("TRACESIEVE_GC_THRESHOLD"))
        self._young_gc = YoungCollector()
        metrics_cfg = cfg.service.telemetry.metrics
        self.telemetry = Telemetry(metrics_cfg.level)
        self.graph = Graph(cfg, registry, telemetry=self.telemetry)
        self._extensions: dict[ComponentID, Any] = {}
        for name in cfg.service.extensions:
            eid = ComponentID.parse(name)
            factory = registry.extensions[eid.type]
            settings = self.graph._settings("extension", eid)
            self._extensions[eid] = factory.create(settings, cfg.components["extension"][eid])
        self._ready = False
        self.ready = asyncio.Event()  # set once started (readiness as an event), until stopped
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self._metrics_server: HTTPServer | None = None
        self.deadline: float | None = None  # loop time by which shutdown must finish
        self.endpoints: list[str] = []

    # -- Host -------------------------------------------------------------------------
    def extension(self, id: ComponentID) -> Any:
        return self._extensions.get(id)

    def report_fatal_error(self, error: BaseException) -> None:
        log.error("fatal error, stopping: %s", error)
        self._fatal = error
        self._stopping.set()

    def is_ready(self) -> bool:
        return self._ready

    def announce(self, what: str) -> None:
        """Components call this for each endpoint they listen on."""
        self.endpoints.append(what)
        log.info("listening: %s", what)

    # -- lifecycle --------------------------------------------------------------------
    def _notify(self, ready: bool) -> None:
        self._ready = ready
        for comp in [*self._extensions.values(), *(n.component for n in self.graph.order)]:
            fn = getattr(comp, "notify_ready", None)
            if fn is not None:
                fn(ready)

    async def start(self) -> None:
        endpoint = self.cfg.service.telemetry.metrics.endpoint()
        if endpoint is not None:
            app = web.Application()
            app.router.add_get("/metrics", self._metrics)
            self._metrics_server = HTTPServer(app, *endpoint)
            host, port = await self._metrics_server.start()
            self.announce(f"telemetry: Prometheus metrics on http://{host}:{port}/metrics")
        started: list[Any] = []
        try:
            for ext in self._extensions.values():
                await ext.start(self)
                started.append(ext)
            await self.graph.start(self)
        except BaseException:
            for ext in reversed(started):
                await ext.shutdown()
            if self._metrics_server:
                await self._metrics_server.stop()
            raise
        if self._manage_gc:
            self._apply_gc_policy()
        self._notify(True)
        self.ready.set()
        n = len(self.cfg.pipelines)
        log.info("tracesieve is ready: %d pipeline%s running", n, "" if n == 1 else "s")

    def _apply_gc_policy(self) -> None:
        if os.environ.get("TRACESIEVE_GC_FREEZE", "1") != "0":
            # what exists now (modules, config, components) lives as long as the process:
            # keep it out of every later cyclic-GC pass, which then walks only live data
            gc.collect()
            gc.freeze()
        gc.set_threshold(*self._gc_threshold)
        if self._gc_threshold[0]:  # 0: the user turned automatic collection off
            self._young_gc.start()

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.telemetry.exposition(), content_type="text/plain", charset="utf-8"
        )

    async def shutdown(self) -> None:
        timeout = self.cfg.service.shutdown_timeout.seconds or None
        loop = asyncio.get_running_loop()
        # components stop waiting at `deadline` and then clean up (count and log what
        # is left); the hard limit below is `shutdown_timeout` itself
        margin = min(1.0, 0.1 * timeout) if timeout else 0.0
        self.deadline = loop.time() + timeout - margin if timeout else None
        self.ready.clear()
        self._notify(False)
        self._young_gc.stop()
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(self.graph.shutdown(), timeout)
        except TimeoutError:
            log.error(
                "shutdown did not finish within %.1fs; exiting with work pending", timeout or 0
            )
        for ext in reversed(list(self._extensions.values())):
            try:
                await ext.shutdown()
            except Exception:
                log.exception("error shutting down extension")
        if self._metrics_server:
            await self._metrics_server.stop()
        log.info("tracesieve stopped in %.2fs", time.monotonic() - t0)

    async def run(self) -> int:
        """Start, serve until a signal (or a fatal error), then stop. Returns an exit code."""
        loop = asyncio.get_running_loop()
        first = 0.0  # when the first stop signal came (monotonic); 0: none yet

        def on_signal(sig: signal.Signals) -> None:
            nonlocal first
            now = time.monotonic()
            if not first:
                first = now
                log.info("received %s, shutting down (send again to force exit)", sig.name)
                self._stopping.set()
            elif now - first < SAME_SIGNAL_WINDOW:
                # one stop delivered twice (a process group and its parent, e.g. `make run`
                # under `timeout` or a supervisor): not a request to drop queued data
                log.info("received %s again at once: taken as the same stop", sig.name)
            else:
                log.error("received %s again, forcing exit", sig.name)
                os._exit(130)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await self.start()
            await self._stopping.wait()
            await self.shutdown()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return 1 if self._fatal else 0
