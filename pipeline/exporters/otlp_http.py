"""`otlp_http` exporter (alias `otlphttp`): OTLP traces over HTTP, protobuf or JSON.

`endpoint` is the base URL (`/v1/traces` is appended); `traces_endpoint` overrides the
whole URL. Retries 429, 502, 503 and 504 honouring Retry-After, as the OTLP spec says;
any other error status is permanent.
"""

from __future__ import annotations

import gzip
import ssl
from typing import Any, Literal

import aiohttp
import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from pipeline import otlpjson
from pipeline.component import ExporterFactory, Host, Settings
from pipeline.configtypes import (
    ClientAuthConfig,
    Config,
    Duration,
    NonNegInt,
    QueueConfig,
    RetryConfig,
    TLSClientConfig,
    enable_null_blocks,
    tls_version,
)
from pipeline.errors import PermanentError
from pipeline.exporters.helper import ExporterHelper, HelperExporter, RetryableError
from pipeline.pdata import Traces

RETRYABLE_STATUS = {429, 502, 503, 504}


class OTLPHTTPExporterConfig(Config):
    endpoint: str | None = None
    traces_endpoint: str | None = None
    # other signals: accepted and ignored (with a warning)
    metrics_endpoint: str | None = None
    logs_endpoint: str | None = None
    profiles_endpoint: str | None = None
    tls: TLSClientConfig = msgspec.field(default_factory=TLSClientConfig)
    headers: dict[str, str] = {}
    compression: Literal["gzip", "none", ""] = "gzip"
    encoding: Literal["proto", "json"] = "proto"
    timeout: Duration = msgspec.field(default_factory=lambda: Duration(30.0))
    retry_on_failure: RetryConfig = msgspec.field(default_factory=RetryConfig)
    sending_queue: QueueConfig = msgspec.field(default_factory=QueueConfig)
    read_buffer_size: NonNegInt = 0  # bytes aiohttp reads at a time (0: its default)
    write_buffer_size: NonNegInt = 0  # accepted; no effect (aiohttp writes whole bodies)
    auth: ClientAuthConfig | None = None  # refused: no authenticator extensions

    other_signals = ("metrics_endpoint", "logs_endpoint", "profiles_endpoint")

    @classmethod
    def preprocess(cls, raw: Any) -> Any:
        return enable_null_blocks(raw, ("sending_queue", "batch"))

    def validate(self) -> list[str]:
        url = self.url()
        if url is None:
            return [
                "endpoint: at least one endpoint must be specified (endpoint or traces_endpoint)"
            ]
        if not url.startswith(("http://", "https://")):
            return [f"endpoint: {url!r} must start with http:// or https://"]
        return []

    def url(self) -> str | None:
        if self.traces_endpoint:
            return self.traces_endpoint
        if self.endpoint:
            return self.endpoint.rstrip("/") + "/v1/traces"
        return None


def client_ssl_context(tls: TLSClientConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.min_version:
        ctx.minimum_version = tls_version(tls.min_version)
    if tls.max_version:
        ctx.maximum_version = tls_version(tls.max_version)
    return ctx


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class OTLPHTTPExporter(HelperExporter):
    def __init__(self, settings: Settings, cfg: OTLPHTTPExporterConfig) -> None:
        self.cfg = cfg
        self._log = settings.logger
        self._url = cfg.url() or ""
        self._session: aiohttp.ClientSession | None = None
        self._headers = dict(cfg.headers)
        self._headers["Content-Type"] = (
            "application/json" if cfg.encoding == "json" else "application/x-protobuf"
        )
        if cfg.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        self.helper = ExporterHelper(
            settings,
            self._push,
            retry=cfg.retry_on_failure,
            queue=cfg.sending_queue,
            start=self._start,
            shutdown=self._shutdown,
            wire_only=cfg.encoding == "proto",  # JSON is encoded from the decoded request
        )

    async def _start(self, host: Host) -> None:
        ssl_ctx: ssl.SSLContext | bool = False
        if self._url.startswith("https://"):
            ssl_ctx = client_ssl_context(self.cfg.tls)
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout.seconds or None)
        kw: dict[str, Any] = {}
        if self.cfg.read_buffer_size:
            kw["read_bufsize"] = self.cfg.read_buffer_size
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(ssl=ssl_ctx), **kw
        )

    async def _push(self, traces: Traces) -> int:
        assert self._session is not None
        body = otlpjson.encode(traces.request) if self.cfg.encoding == "json" else traces.to_bytes()
        if self.cfg.compression == "gzip":
            body = gzip.compress(body, compresslevel=5)
        try:
            async with self._session.post(
                self._url,
                data=body,
                headers=self._headers,
                server_hostname=self.cfg.tls.server_name_override or None,
            ) as resp:
                payload = await resp.read()
                if resp.status in RETRYABLE_STATUS:
                    raise RetryableError(
                        f"HTTP {resp.status}: {payload[:200]!r}",
                        _retry_after(resp.headers.get("Retry-After")),
                    )
                if resp.status >= 300:
                    raise PermanentError(f"HTTP {resp.status}: {payload[:200]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from None
        if payload and self.cfg.encoding == "proto":
            try:
                ps = ExportTraceServiceResponse.FromString(payload).partial_success
            except Exception:
                return 0
            if ps.rejected_spans or ps.error_message:
                if ps.error_message:
                    self._log.warning("partial success: %s", ps.error_message)
                return int(ps.rejected_spans)
        elif payload and self.cfg.encoding == "json":
            try:
                obj = msgspec.json.decode(payload)
                ps_obj = obj.get("partialSuccess") or {}
                return int(ps_obj.get("rejectedSpans") or 0)
            except Exception:
                return 0
        return 0

    async def _shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


factory = ExporterFactory(
    type="otlp_http",
    aliases=("otlphttp",),
    config_type=OTLPHTTPExporterConfig,
    create=OTLPHTTPExporter,
    stability="beta",
    description="OTLP over HTTP (protobuf or JSON)",
)
