"""`health_check` extension: HTTP 200 while every pipeline runs, 503 while starting or
draining (the OTel Collector's, on 127.0.0.1:13133 by default). Point Kubernetes
liveness and readiness probes at it."""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from pipeline.component import ExtensionFactory, Host, Settings
from pipeline.configtypes import Config, check_endpoint, split_endpoint
from pipeline.httpserver import HTTPServer


class HealthCheckConfig(Config):
    endpoint: str = "127.0.0.1:13133"
    path: str = "/"

    def validate(self) -> list[str]:
        return check_endpoint(self.endpoint)


class HealthCheck:
    def __init__(self, settings: Settings, cfg: HealthCheckConfig) -> None:
        self.cfg = cfg
        self._id = settings.id
        self._ready = False
        self._since = ""
        self._server: HTTPServer | None = None

    def notify_ready(self, ready: bool) -> None:
        self._ready = ready
        if ready:
            self._since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    async def _handle(self, request: web.Request) -> web.Response:
        if self._ready:
            body = {"status": "Server available", "upSince": self._since}
            return web.Response(
                status=200, body=msgspec.json.encode(body), content_type="application/json"
            )
        body = {"status": "Server not available"}
        return web.Response(
            status=503, body=msgspec.json.encode(body), content_type="application/json"
        )

    async def start(self, host: Host) -> None:
        app = web.Application()
        app.router.add_get(self.cfg.path, self._handle)
        h, p = split_endpoint(self.cfg.endpoint)
        self._server = HTTPServer(app, h, p)
        bh, bp = await self._server.start()
        host.announce(f"extensions::{self._id}: health on http://{bh}:{bp}{self.cfg.path}")

    async def shutdown(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None


factory = ExtensionFactory(
    type="health_check",
    config_type=HealthCheckConfig,
    create=HealthCheck,
    stability="beta",
    description="HTTP health endpoint for probes",
)
