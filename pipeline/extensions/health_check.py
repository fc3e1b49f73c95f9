"""`health_check` extension: HTTP 200 while every pipeline runs, 503 while starting or
draining (the OTel Collector's, on 127.0.0.1:13133 by default). Point Kubernetes
liveness and readiness probes at it.

As the Collector's:

- `path` (default `/`, must start with `/`), `tls` (HTTPS), `response_body`
  (`healthy` / `unhealthy`: a fixed body in place of the JSON status);
- `check_collector_pipeline`: when `enabled`, the answer is 500 (unhealthy) while the
  exporters failed to send more than `exporter_failure_threshold` spans within the last
  `interval` (counted from `otelcol_exporter_send_failed_spans`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import msgspec
from aiohttp import web

from pipeline.component import ExtensionFactory, Host, Settings
from pipeline.configtypes import Config, Duration, TLSServerConfig, check_endpoint, split_endpoint
from pipeline.httpserver import HTTPServer
from pipeline.telemetry import Telemetry

FAILED_SPANS = "otelcol_exporter_send_failed_spans_total"


class ResponseBodyConfig(Config):
    healthy: str = ""
    unhealthy: str = ""


class CheckPipelineConfig(Config):
    enabled: bool = False
    interval: str = "5m"  # a Go duration string, as the Collector reads it
    exporter_failure_threshold: int = 5

    def validate(self) -> list[str]:
        errs = []
        try:
            Duration.parse(self.interval)
        except ValueError as exc:
            errs.append(f"interval: {exc}")
        if self.exporter_failure_threshold <= 0:
            errs.append(
                "exporter_failure_threshold: bad config: exporter_failure_threshold expects "
                "a positive number"
            )
        return errs


class HealthCheckConfig(Config):
    endpoint: str = "127.0.0.1:13133"
    path: str = "/"
    tls: TLSServerConfig | None = None
    response_body: ResponseBodyConfig | None = None
    check_collector_pipeline: CheckPipelineConfig = msgspec.field(
        default_factory=CheckPipelineConfig
    )

    def validate(self) -> list[str]:
        if not self.endpoint:
            return ["endpoint: bad config: endpoint must be specified"]
        errs = check_endpoint(self.endpoint)
        if not self.path.startswith("/"):
            errs.append("path: bad config: path must start with /")
        return errs


class ExporterFailures:
    """Spans the exporters failed to send within a sliding window."""

    def __init__(self, telemetry: Telemetry, window: float) -> None:
        self._telemetry = telemetry
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()

    def total(self) -> float:
        registry = self._telemetry.registry
        n = 0.0
        for metric in registry.collect():
            for s in metric.samples:
                if s.name == FAILED_SPANS:
                    n += s.value
        return n

    def sample(self, now: float | None = None) -> float:
        """Record the total now; the failures within the window."""
        now = time.monotonic() if now is None else now
        total = self.total()
        self._samples.append((now, total))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()
        return total - self._samples[0][1]


class HealthCheck:
    def __init__(self, settings: Settings, cfg: HealthCheckConfig) -> None:
        self.cfg = cfg
        self._id = settings.id
        self._ready = False
        self._since = ""
        self._server: HTTPServer | None = None
        check = cfg.check_collector_pipeline
        self._failures = (
            ExporterFailures(settings.telemetry, Duration.parse(check.interval).seconds)
            if check.enabled
            else None
        )
        self._sampler: asyncio.Task[None] | None = None

    def notify_ready(self, ready: bool) -> None:
        self._ready = ready
        if ready:
            self._since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def pipeline_healthy(self) -> bool:
        if self._failures is None:
            return True
        limit = self.cfg.check_collector_pipeline.exporter_failure_threshold
        return self._failures.sample() <= limit

    async def _handle(self, request: web.Request) -> web.Response:
        body = self.cfg.response_body
        if self._ready and self.pipeline_healthy():
            if body is not None:
                return web.Response(status=200, text=body.healthy)
            doc = {"status": "Server available", "upSince": self._since}
            return web.Response(
                status=200, body=msgspec.json.encode(doc), content_type="application/json"
            )
        status = 503 if not self._ready else 500
        if body is not None:
            return web.Response(status=status, text=body.unhealthy)
        doc = {"status": "Server not available"}
        return web.Response(
            status=status, body=msgspec.json.encode(doc), content_type="application/json"
        )

    async def _sample(self) -> None:
        assert self._failures is not None
        step = min(max(self._failures.window / 10, 0.05), 10.0)
        while True:
            self._failures.sample()
            await asyncio.sleep(step)

    async def start(self, host: Host) -> None:
        from pipeline.receivers.otlp import server_ssl_context

        app = web.Application()
        app.router.add_get(self.cfg.path, self._handle)
        h, p = split_endpoint(self.cfg.endpoint)
        ctx = server_ssl_context(self.cfg.tls) if self.cfg.tls is not None else None
        self._server = HTTPServer(app, h, p, ssl_context=ctx)
        bh, bp = await self._server.start()
        scheme = "https" if ctx is not None else "http"
        host.announce(f"extensions::{self._id}: health on {scheme}://{bh}:{bp}{self.cfg.path}")
        if self._failures is not None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample())

    async def shutdown(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
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
