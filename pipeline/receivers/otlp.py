"""`otlp` receiver: OTLP traces over gRPC (TraceService/Export) and HTTP (POST /v1/traces).

Answers follow the OTLP specification:

    malformed payload            INVALID_ARGUMENT       400, with what is wrong
    larger than the limit        RESOURCE_EXHAUSTED     413
    pipeline cannot take it now  UNAVAILABLE+RetryInfo  503 + Retry-After
    permanent pipeline error     INTERNAL               500
    unsupported content type                            415

Every request is counted by outcome (`otelcol_receiver_requests`), spans by
accepted/refused. The gRPC port also serves the standard gRPC health service.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import ssl
import zlib
from typing import Any, Literal

import grpc
import msgspec
from aiohttp import web
from google.protobuf.duration_pb2 import Duration as PbDuration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from pipeline import otlpjson, wirescan
from pipeline.component import Host, ReceiverFactory, Settings, TracesConsumer
from pipeline.configtypes import (
    Config,
    Duration,
    NonNegInt,
    PositiveInt,
    TLSServerConfig,
    check_endpoint,
    split_endpoint,
    tls_version,
)
from pipeline.cors import CORS
from pipeline.errors import InvalidDataError, PermanentError, RefusedError
from pipeline.httpserver import HTTPServer, remove_stale_socket
from pipeline.pdata import ClientInfo, InvalidTracesError, Traces
from pipeline.receivers.auth import AuthConfig, BearerAuth
from pipeline.telemetry import RateLimitedLog, ReceiverMetrics

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EMPTY_RESPONSE: bytes = ExportTraceServiceResponse().SerializeToString()
MIB = 1 << 20
JSON_INLINE_LIMIT = 256 << 10  # larger OTLP JSON bodies are decoded in a worker thread


class ServerParametersConfig(Config):
    """gRPC `keepalive.server_parameters` (unset: grpc's defaults)."""

    max_connection_idle: Duration | None = None
    max_connection_age: Duration | None = None
    max_connection_age_grace: Duration | None = None
    time: Duration | None = None
    timeout: Duration | None = None


class EnforcementPolicyConfig(Config):
    """gRPC `keepalive.enforcement_policy`: the fewest seconds between a client's pings,
    and whether it may ping with no call open."""

    min_time: Duration | None = None
    permit_without_stream: bool = False


class KeepaliveServerConfig(Config):
    server_parameters: ServerParametersConfig | None = None
    enforcement_policy: EnforcementPolicyConfig | None = None

    def options(self) -> list[tuple[str, int]]:
        """grpc channel arguments (grpc core's names for Go's keepalive settings)."""
        out: list[tuple[str, int]] = []
        sp = self.server_parameters
        if sp is not None:
            for value, arg in (
                (sp.max_connection_idle, "grpc.max_connection_idle_ms"),
                (sp.max_connection_age, "grpc.max_connection_age_ms"),
                (sp.max_connection_age_grace, "grpc.max_connection_age_grace_ms"),
                (sp.time, "grpc.keepalive_time_ms"),
                (sp.timeout, "grpc.keepalive_timeout_ms"),
            ):
                if value is not None and value.seconds > 0:
                    out.append((arg, max(1, round(value.seconds * 1000))))
        ep = self.enforcement_policy
        if ep is not None:
            if ep.min_time is not None:
                ms = round(ep.min_time.seconds * 1000)
                out.append(("grpc.http2.min_ping_interval_without_data_ms", ms))
            out.append(("grpc.keepalive_permit_without_calls", int(ep.permit_without_stream)))
        return out


Transport = Literal["tcp", "tcp4", "tcp6", "unix"]


def _check_listen(endpoint: str, transport: str) -> list[str]:
    if transport == "unix":
        return [] if endpoint.strip() else ["endpoint: a unix socket path is required"]
    return check_endpoint(endpoint)


class GRPCConfig(Config):
    endpoint: str = "127.0.0.1:4317"
    transport: Transport = "tcp"  # unix: `endpoint` is a socket path
    max_recv_msg_size_mib: PositiveInt = 64  # the OTLP spec's recommendation
    max_concurrent_streams: int = 0  # 0: grpc's default
    # 0: grpc's own read sizing. Not the Collector's 512 KiB: in grpc core the nearest knob
    # (tcp_read_chunk_size) is allocated per read; at 512 KiB it cost 30% more CPU a span
    # and doubled the added p99 latency (docs/compatibility.md)
    read_buffer_size: NonNegInt = 0
    write_buffer_size: NonNegInt = 0  # 0: grpc's default
    keepalive: KeepaliveServerConfig | None = None
    include_metadata: bool = False
    tls: TLSServerConfig | None = None
    auth: AuthConfig | None = None
    reuse_port: bool = False  # SO_REUSEPORT, for several processes on one port

    def validate(self) -> list[str]:
        return _check_listen(self.endpoint, self.transport)

    def address(self) -> str:
        """The address grpc binds: host:port, or unix:PATH."""
        return f"unix:{self.endpoint}" if self.transport == "unix" else self.endpoint


class CORSConfig(Config):
    """Cross-Origin Resource Sharing for browsers (the Collector's `cors`): origins may
    hold `*` wildcards (`https://*.example.com`; `*` alone: any origin)."""

    allowed_origins: list[str] = []
    allowed_headers: list[str] = []
    max_age: NonNegInt = 0  # seconds a preflight answer may be cached (0: not said)


def url_path(value: str, field: str) -> tuple[str, list[str]]:
    """A signal's URL path as the Collector reads it: parsed as a URL (an error if that
    fails, e.g. ":invalid"), its path made absolute."""
    head = value.split("/", 1)[0]
    if ":" in head:
        scheme = head.split(":", 1)[0]
        if not scheme or not scheme[0].isalpha():
            return value, [
                f"{field}: invalid HTTP URL path set for signal: parse {value!r}: "
                "missing protocol scheme"
            ]
        value = value.split(":", 1)[1]  # a scheme, as Go's url.Parse reads it
        if value.startswith("//"):
            value = "/" + value[2:].partition("/")[2]
    path = value.split("?", 1)[0].split("#", 1)[0]
    return (path if path.startswith("/") else "/" + path), []


class HTTPConfig(Config):
    endpoint: str = "127.0.0.1:4318"
    transport: Transport = "tcp"  # unix: `endpoint` is a socket path
    max_request_body_size: PositiveInt = 20 * MIB  # as the OTel Collector
    traces_url_path: str = "/v1/traces"
    # other signals: checked as the Collector does, then ignored
    metrics_url_path: str | None = None
    logs_url_path: str | None = None
    profiles_url_path: str | None = None
    cors: CORSConfig | None = None
    include_metadata: bool = False
    response_headers: dict[str, str] = {}
    tls: TLSServerConfig | None = None
    auth: AuthConfig | None = None
    reuse_port: bool = False

    other_signals = ("metrics_url_path", "logs_url_path", "profiles_url_path")

    def validate(self) -> list[str]:
        errs = _check_listen(self.endpoint, self.transport)
        for name in ("traces_url_path", *self.other_signals):
            value = getattr(self, name)
            if value is not None:
                errs += url_path(value, name)[1]
        return errs

    @property
    def traces_path(self) -> str:
        """`traces_url_path` with its leading `/` (the Collector adds it when missing)."""
        return url_path(self.traces_url_path, "traces_url_path")[0]


class Protocols(Config):
    grpc: GRPCConfig | None = None
    http: HTTPConfig | None = None


class OTLPReceiverConfig(Config):
    protocols: Protocols = msgspec.field(default_factory=lambda: Protocols(grpc=GRPCConfig()))

    @classmethod
    def preprocess(cls, raw: Any) -> Any:
        """`grpc:` with no body (YAML null) turns the protocol on with defaults."""
        protocols = raw.get("protocols") if isinstance(raw, dict) else None
        if isinstance(protocols, dict):
            for name in ("grpc", "http"):
                if name in protocols and protocols[name] is None:
                    protocols[name] = {}
        elif isinstance(raw, dict) and "protocols" in raw and protocols is None:
            raw["protocols"] = {}  # `protocols:` with nothing under it: no protocol
        return raw

    def validate(self) -> list[str]:
        if self.protocols.grpc is None and self.protocols.http is None:
            return ["protocols: must specify at least one protocol when using the OTLP receiver"]
        return []


def id_problem(msg: Any) -> str | None:
    """What is wrong with the ids of a decoded request, if anything. The OTel Collector
    refuses a trace id that is not 16 bytes or a span id that is not 8 (empty is allowed),
    so such spans are refused here rather than sink a whole batch at the next hop.
    Links are not checked (reading them costs more than the rest together)."""
    for rs in msg.resource_spans:
        for ss in rs.scope_spans:
            if all(
                len(s.trace_id) in (0, 16)
                and len(s.span_id) in (0, 8)
                and len(s.parent_span_id) in (0, 8)
                for s in ss.spans
            ):
                continue
            return _locate_bad_id(msg)
    return None


def _locate_bad_id(msg: Any) -> str:
    for i, rs in enumerate(msg.resource_spans):
        for j, ss in enumerate(rs.scope_spans):
            for k, s in enumerate(ss.spans):
                for field, size in (("trace_id", 16), ("span_id", 8), ("parent_span_id", 8)):
                    n = len(getattr(s, field))
                    if n not in (0, size):
                        where = f"resource_spans[{i}].scope_spans[{j}].spans[{k}].{field}"
                        return f"{where}: must be {size} bytes (or empty), got {n}"
    return "invalid id"  # pragma: no cover


def decode_protobuf(body: bytes) -> Traces:
    """An OTLP/protobuf request as the receiver accepts it; `InvalidTracesError` says why
    not."""
    # checked as protobuf's decoder would, without decoding (stages after this one read
    # the encoding); decoded only to say which span has a bad id
    try:
        n, ids_ok = wirescan.validate(body)
    except wirescan.WireError as exc:
        raise InvalidTracesError(f"cannot decode ExportTraceServiceRequest: {exc}") from None
    traces = Traces(raw=body, span_count=n)
    problem = None if ids_ok else id_problem(traces.request)
    if problem is not None:
        raise InvalidTracesError(f"invalid ExportTraceServiceRequest: {problem}")
    return traces


def server_ssl_context(tls: TLSServerConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = tls_version(tls.min_version)
    if tls.max_version:
        ctx.maximum_version = tls_version(tls.max_version)
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        ctx.load_verify_locations(tls.client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        data: bytes = fh.read()
        return data


def _retry_status(message: str, retry_after: float) -> bytes:
    delay = PbDuration(seconds=int(retry_after), nanos=int((retry_after % 1) * 1e9))
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    data: bytes = status.SerializeToString()
    return data


class _Outcome:
    """Shared accounting for both transports."""

    def __init__(self, metrics: ReceiverMetrics, logger: logging.Logger) -> None:
        self.m = metrics
        self.log = logger
        self.warn = RateLimitedLog(logger, 1.0)  # bad clients cannot flood the log


class OTLPReceiver:
    def __init__(
        self, settings: Settings, cfg: OTLPReceiverConfig, next_consumer: TracesConsumer
    ) -> None:
        self.settings = settings
        self.cfg = cfg
        self._next = next_consumer
        self._log = settings.logger
        self._grpc_server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._http: HTTPServer | None = None
        self._host: Host | None = None
        self._grpc_out = _Outcome(settings.telemetry.receiver(str(settings.id), "grpc"), self._log)
        self._http_out = _Outcome(settings.telemetry.receiver(str(settings.id), "http"), self._log)
        self._grpc_auth = (
            BearerAuth(cfg.protocols.grpc.auth)
            if cfg.protocols.grpc and cfg.protocols.grpc.auth
            else None
        )
        self._http_auth = (
            BearerAuth(cfg.protocols.http.auth)
            if cfg.protocols.http and cfg.protocols.http.auth
            else None
        )
        self._draining = False
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, host: Host) -> None:
        self._host = host
        if self.cfg.protocols.grpc is not None:
            await self._start_grpc(self.cfg.protocols.grpc, host)
        if self.cfg.protocols.http is not None:
            try:
                await self._start_http(self.cfg.protocols.http, host)
            except BaseException:
                await self.shutdown()
                raise

    def notify_ready(self, ready: bool) -> None:
        if self._health is None:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        loop = asyncio.get_running_loop()
        for name in ("", SERVICE):
            task = loop.create_task(self._health.set(name, status))
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        self._draining = True
        grace = 5.0
        if self._host is not None and self._host.deadline is not None:
            grace = max(0.1, self._host.deadline - asyncio.get_running_loop().time())
        server, self._grpc_server = self._grpc_server, None
        if server is not None:
            if self._health is not None:
                await self._health.enter_graceful_shutdown()
            await server.stop(grace)  # no new RPCs; in-flight ones finish
        http, self._http = self._http, None
        if http is not None:
            await http.stop()

    # -- gRPC -------------------------------------------------------------------------
    async def _start_grpc(self, cfg: GRPCConfig, host: Host) -> None:
        limit = cfg.max_recv_msg_size_mib * MIB
        options: list[tuple[str, Any]] = [
            # grpc rejects beyond this on its own; up to it we check, count and answer
            ("grpc.max_receive_message_length", min(2 * limit, (1 << 31) - 1)),
            ("grpc.so_reuseport", 1 if cfg.reuse_port else 0),
        ]
        if cfg.max_concurrent_streams:
            options.append(("grpc.max_concurrent_streams", cfg.max_concurrent_streams))
        # Go's ReadBufferSize (bytes read per syscall) and WriteBufferSize (bytes batched
        # before a write), in grpc core's terms
        if cfg.read_buffer_size:
            options.append(("grpc.experimental.tcp_read_chunk_size", cfg.read_buffer_size))
        if cfg.write_buffer_size:
            options.append(("grpc.http2.write_buffer_size", cfg.write_buffer_size))
        if cfg.keepalive is not None:
            options += cfg.keepalive.options()
        server = grpc.aio.server(options=options)
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {"Export": grpc.unary_unary_rpc_method_handler(self._export)},  # raw bytes in/out
        )
        server.add_generic_rpc_handlers((handler,))
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for name in ("", SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if cfg.tls is not None:
            creds = grpc.ssl_server_credentials(
                [(_read(cfg.tls.key_file), _read(cfg.tls.cert_file))],
                root_certificates=_read(cfg.tls.client_ca_file) if cfg.tls.client_ca_file else None,
                require_client_auth=cfg.tls.client_ca_file is not None,
            )
        if cfg.transport == "unix":
            remove_stale_socket(cfg.endpoint)
        if cfg.tls is not None:
            port = server.add_secure_port(cfg.address(), creds)
        else:
            port = server.add_insecure_port(cfg.address())
        if port == 0:
            raise OSError(f"receivers::{self.settings.id}: cannot listen on {cfg.endpoint} (gRPC)")
        await server.start()
        self._grpc_server = server
        self._grpc_limit = limit
        self._grpc_metadata = cfg.include_metadata
        scheme = "grpcs" if cfg.tls else "grpc"
        if cfg.transport == "unix":
            where = f"{scheme}+unix://{cfg.endpoint}"
        else:
            where = f"{scheme}://{split_endpoint(cfg.endpoint)[0]}:{port}"
        host.announce(f"receivers::{self.settings.id}: OTLP/gRPC on {where}")

    async def _export(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        out = self._grpc_out
        if self._grpc_auth is not None:
            md = dict(context.invocation_metadata() or ())
            problem = self._grpc_auth.check(md.get("authorization"))
            if problem:
                out.m.requests["unauthenticated"].inc()
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)
        if len(raw) > self._grpc_limit:
            out.m.requests["too_large"].inc()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request of {len(raw)} bytes exceeds max_recv_msg_size_mib ({self._grpc_limit // MIB} MiB)",
            )
        try:
            traces = decode_protobuf(raw)
            traces.client = _grpc_client(context, self._grpc_metadata)
        except InvalidTracesError as exc:
            out.m.requests["invalid"].inc()
            out.warn.warning("rejected a malformed gRPC request from %s: %s", context.peer(), exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # a decoder bug must not take the request path down
            out.m.requests["invalid"].inc()
            out.warn.warning("cannot decode a gRPC request from %s: %r", context.peer(), exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot decode: {exc}")
        code, message, retry_after = await self._consume(traces, out)
        if code is None:
            return EMPTY_RESPONSE
        if code is grpc.StatusCode.UNAVAILABLE:
            await context.abort(
                code,
                message,
                trailing_metadata=(
                    ("grpc-status-details-bin", _retry_status(message, retry_after)),
                ),
            )
        await context.abort(code, message)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _consume(
        self, traces: Traces, out: _Outcome
    ) -> tuple[grpc.StatusCode | None, str, float]:
        """Push into the pipeline; map what comes back to a status code (None: success)."""
        n = traces.span_count
        if self._draining:
            out.m.refused.inc(n)
            out.m.requests["refused"].inc()
            return grpc.StatusCode.UNAVAILABLE, "collector is shutting down", 1.0
        try:
            await self._next.consume_traces(traces)
        except RefusedError as exc:
            out.m.refused.inc(n)
            out.m.requests["refused"].inc()
            return grpc.StatusCode.UNAVAILABLE, str(exc), exc.retry_after
        except InvalidDataError as exc:
            out.m.refused.inc(n)
            out.m.requests["invalid"].inc()
            return grpc.StatusCode.INVALID_ARGUMENT, str(exc), 0.0
        except PermanentError as exc:
            out.m.refused.inc(n)
            out.m.requests["failure"].inc()
            out.warn.warning("pipeline rejected data permanently: %s", exc)
            return grpc.StatusCode.INTERNAL, str(exc), 0.0
        except Exception as exc:
            # an unexpected error in a component: retryable, as the OTel Collector does
            out.m.refused.inc(n)
            out.m.requests["failure"].inc()
            self._log.exception("pipeline failed on a batch of %d spans", n)
            return grpc.StatusCode.UNAVAILABLE, f"internal error: {exc}", 1.0
        out.m.accepted.inc(n)
        out.m.requests["success"].inc()
        return None, "", 0.0

    # -- HTTP -------------------------------------------------------------------------
    async def _start_http(self, cfg: HTTPConfig, host: Host) -> None:
        middlewares = []
        if cfg.cors is not None and cfg.cors.allowed_origins:
            c = cfg.cors
            middlewares.append(CORS(c.allowed_origins, c.allowed_headers, c.max_age).middleware)
        elif cfg.cors is not None and cfg.cors.allowed_headers:
            self._log.warning(
                "cors::allowed_headers is set without allowed_origins: CORS stays off"
            )
        app = web.Application(client_max_size=cfg.max_request_body_size, middlewares=middlewares)
        path = cfg.traces_path
        app.router.add_post(path, self._http_export)
        ssl_ctx = server_ssl_context(cfg.tls) if cfg.tls else None
        unix = cfg.endpoint if cfg.transport == "unix" else None
        h, p = ("", 0) if unix else split_endpoint(cfg.endpoint)
        self._http_limit = cfg.max_request_body_size
        self._http_metadata = cfg.include_metadata
        self._response_headers = dict(cfg.response_headers)
        self._http = HTTPServer(
            app, h, p, ssl_context=ssl_ctx, reuse_port=cfg.reuse_port, unix_path=unix
        )
        bh, bp = await self._http.start()
        scheme = "https" if ssl_ctx else "http"
        where = f"{scheme}+unix://{unix}:{path}" if unix else f"{scheme}://{bh}:{bp}{path}"
        host.announce(f"receivers::{self.settings.id}: OTLP/HTTP on {where}")

    def _http_error(
        self, status: int, message: str, is_json: bool, headers: dict[str, str] | None = None
    ) -> web.Response:
        code = {
            400: code_pb2.INVALID_ARGUMENT,
            401: code_pb2.UNAUTHENTICATED,
            413: code_pb2.RESOURCE_EXHAUSTED,
            415: code_pb2.INVALID_ARGUMENT,
            503: code_pb2.UNAVAILABLE,
        }.get(status, code_pb2.INTERNAL)
        st = status_pb2.Status(code=code, message=message)
        if is_json:
            body = msgspec.json.encode({"code": code, "message": message})
            return web.Response(
                status=status, body=body, content_type="application/json", headers=headers
            )
        return web.Response(
            status=status,
            body=st.SerializeToString(),
            content_type="application/x-protobuf",
            headers=headers,
        )

    def _decompress(self, body: bytes, encoding: str) -> bytes:
        limit = self._http_limit
        if encoding in ("", "identity"):
            return body
        if encoding in ("gzip", "deflate", "zlib"):
            wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
            d = zlib.decompressobj(wbits)
            out = d.decompress(body, limit + 1)
            if len(out) > limit:
                raise OverflowError
            if not d.eof:
                raise ValueError("truncated compressed body")
            return out
        if encoding == "zstd":
            import zstandard

            try:
                reader = zstandard.ZstdDecompressor().stream_reader(body)
                out = reader.read(limit + 1)
            except zstandard.ZstdError as exc:
                raise ValueError(str(exc)) from None
            if len(out) > limit:
                raise OverflowError
            return out
        raise LookupError(encoding)

    async def _http_export(self, request: web.Request) -> web.Response:
        resp = await self._http_answer(request)
        if self._response_headers:
            resp.headers.update(self._response_headers)
        return resp

    async def _http_answer(self, request: web.Request) -> web.Response:
        out = self._http_out
        ctype = (request.content_type or "").lower()
        is_json = ctype == "application/json"
        if self._http_auth is not None:
            problem = self._http_auth.check(request.headers.get("Authorization"))
            if problem:
                out.m.requests["unauthenticated"].inc()
                return self._http_error(401, problem, is_json, {"WWW-Authenticate": "Bearer"})
        if ctype not in ("application/x-protobuf", "application/json"):
            out.m.requests["invalid"].inc()
            return self._http_error(
                415,
                f"unsupported content type {ctype!r}: use application/x-protobuf or application/json",
                False,
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            out.m.requests["too_large"].inc()
            return self._http_error(
                413,
                f"request body exceeds max_request_body_size ({self._http_limit} bytes)",
                is_json,
            )
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        try:
            body = self._decompress(body, encoding)
        except OverflowError:
            out.m.requests["too_large"].inc()
            return self._http_error(
                413,
                f"decompressed body exceeds max_request_body_size ({self._http_limit} bytes)",
                is_json,
            )
        except LookupError:
            out.m.requests["invalid"].inc()
            return self._http_error(
                415, f"unsupported Content-Encoding {encoding!r}: use gzip, deflate, zstd", is_json
            )
        except (ValueError, zlib.error, gzip.BadGzipFile, EOFError) as exc:
            out.m.requests["invalid"].inc()
            return self._http_error(400, f"cannot decompress {encoding} body: {exc}", is_json)
        try:
            if not is_json:
                traces = decode_protobuf(body)
            elif len(body) < JSON_INLINE_LIMIT:
                traces = Traces(otlpjson.decode(body))
            else:
                # JSON decoding is pure Python (≈0.3 ms per span): off the event loop, so
                # one large request does not stall every other client
                traces = Traces(await asyncio.to_thread(otlpjson.decode, body))
        except InvalidTracesError as exc:
            out.m.requests["invalid"].inc()
            out.warn.warning("rejected a malformed HTTP request from %s: %s", request.remote, exc)
            return self._http_error(400, str(exc), is_json)
        except Exception as exc:  # a decoder bug must not take the request path down
            out.m.requests["invalid"].inc()
            out.warn.warning("cannot decode an HTTP request from %s: %r", request.remote, exc)
            return self._http_error(400, f"cannot decode: {exc}", is_json)
        traces.client = _http_client(request, self._http_metadata)
        code, message, retry_after = await self._consume(traces, out)
        if code is None:
            if is_json:
                return web.Response(body=b"{}", content_type="application/json")
            return web.Response(body=EMPTY_RESPONSE, content_type="application/x-protobuf")
        status = {
            grpc.StatusCode.UNAVAILABLE: 503,
            grpc.StatusCode.INVALID_ARGUMENT: 400,
        }.get(code, 500)
        headers = {"Retry-After": str(max(1, round(retry_after)))} if status == 503 else None
        return self._http_error(status, message, is_json, headers)


def _grpc_client(context: grpc.aio.ServicerContext, include_metadata: bool) -> ClientInfo:
    """The Collector's client.Info of a gRPC call: the peer's ip:port and, with
    `include_metadata`, the call's metadata."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")  # "ipv4:1.2.3.4:5678", "unix:/path"
    addr = rest.replace("%5B", "[").replace("%5D", "]") if kind in ("ipv4", "ipv6") else peer
    md: dict[str, tuple[str, ...]] = {}
    if include_metadata:
        for k, v in context.invocation_metadata() or ():
            if isinstance(v, str):
                key = k.lower()
                md[key] = (*md.get(key, ()), v)
    return ClientInfo(addr, md)


def _http_client(request: web.Request, include_metadata: bool) -> ClientInfo:
    md: dict[str, tuple[str, ...]] = {}
    if include_metadata:
        for k, v in request.headers.items():
            key = k.lower()
            md[key] = (*md.get(key, ()), v)
    return ClientInfo(request.remote or "", md)


def create(
    settings: Settings, cfg: OTLPReceiverConfig, next_consumer: TracesConsumer
) -> OTLPReceiver:
    return OTLPReceiver(settings, cfg, next_consumer)


factory = ReceiverFactory(
    type="otlp",
    config_type=OTLPReceiverConfig,
    create=create,
    stability="beta",
    description="OTLP over gRPC and HTTP (protobuf and JSON)",
)
