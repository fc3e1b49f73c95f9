"""`otlp_grpc` exporter (alias `otlp`): OTLP traces over gRPC to any OTLP backend.

Batches go out as the bytes they came in with unless a processor changed them. Retries
exactly the codes the OTLP spec calls retryable (CANCELLED, DEADLINE_EXCEEDED, ABORTED,
OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS; RESOURCE_EXHAUSTED only with RetryInfo) and
honours the server's RetryInfo delay. Partial success is logged and counted.
"""

from __future__ import annotations

from typing import Any, Literal

import grpc
import msgspec
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from pipeline.component import ExporterFactory, Host, Settings
from pipeline.configtypes import (
    ClientAuthConfig,
    Config,
    Duration,
    KeepaliveClientConfig,
    NonNegInt,
    QueueConfig,
    RetryConfig,
    TLSClientConfig,
    enable_null_blocks,
)
from pipeline.errors import PermanentError
from pipeline.exporters.helper import ExporterHelper, HelperExporter, RetryableError
from pipeline.pdata import Traces

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RETRYABLE = {
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
}


class OTLPExporterConfig(Config):
    endpoint: str = ""
    tls: TLSClientConfig = msgspec.field(default_factory=TLSClientConfig)
    headers: dict[str, str] = {}
    compression: Literal["gzip", "none", "", "deflate"] = "gzip"
    timeout: Duration = msgspec.field(default_factory=lambda: Duration(5.0))
    retry_on_failure: RetryConfig = msgspec.field(default_factory=RetryConfig)
    sending_queue: QueueConfig = msgspec.field(default_factory=QueueConfig)
    balancer_name: Literal["round_robin", "pick_first"] = "round_robin"
    read_buffer_size: NonNegInt = 0  # 0: grpc's default
    write_buffer_size: NonNegInt = 0  # 0: grpc's default
    keepalive: KeepaliveClientConfig | None = None
    auth: ClientAuthConfig | None = None  # refused: no authenticator extensions

    @classmethod
    def preprocess(cls, raw: Any) -> Any:
        return enable_null_blocks(raw, ("sending_queue", "batch"))

    def validate(self) -> list[str]:
        errs = []
        if self.timeout.seconds < 0:
            errs.append("timeout: 'timeout' must be non-negative")
        scheme, sep, rest = self.endpoint.partition("://")
        if scheme == "unix" and sep:
            if not rest.strip("/"):
                errs.append("endpoint: unix socket path cannot be empty")
            return errs
        target = rest if sep else self.endpoint
        if not target.strip():
            errs.append('endpoint: requires a non-empty "endpoint"')
            return errs
        _, colon, port = target.rpartition(":")
        if not colon or "]" in port:
            errs.append(
                f"endpoint: {self.endpoint!r} has no port (want host:port): missing port in address"
            )
        elif not port.isdigit() or int(port) > 65535:
            errs.append(f'endpoint: {self.endpoint!r}: invalid port "{port}"')
        if self.tls.insecure_skip_verify and not self.tls.insecure:
            errs.append(
                "tls::insecure_skip_verify: not supported by the gRPC exporter; set "
                "tls::ca_file to the CA that signed the server's certificate"
            )
        if self.sending_queue.wait_for_result and self.sending_queue.storage:
            errs.append("sending_queue: wait_for_result cannot be used with storage")
        return errs


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as fh:
        return fh.read()


def retry_delay(err: grpc.aio.AioRpcError) -> float | None:
    """The server's RetryInfo delay, from the grpc-status-details-bin trailer."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            st = status_pb2.Status.FromString(value)
            for detail in st.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


class OTLPExporter(HelperExporter):
    def __init__(self, settings: Settings, cfg: OTLPExporterConfig) -> None:
        self.cfg = cfg
        self._log = settings.logger
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.UnaryUnaryMultiCallable | None = None
        self._metadata = tuple((k.lower(), v) for k, v in cfg.headers.items())
        self._compression = (
            grpc.Compression.Gzip
            if cfg.compression == "gzip"
            else (
                grpc.Compression.Deflate
                if cfg.compression == "deflate"
                else grpc.Compression.NoCompression
            )
        )
        self.helper = ExporterHelper(
            settings,
            self._push,
            retry=cfg.retry_on_failure,
            queue=cfg.sending_queue,
            start=self._start,
            shutdown=self._shutdown,
            wire_only=True,  # `_push` sends `to_bytes()`, nothing else
        )

    async def _start(self, host: Host) -> None:
        scheme, sep, rest = self.cfg.endpoint.partition("://")
        target = rest if sep else self.cfg.endpoint
        if scheme == "unix" and sep:
            target = "unix:" + rest  # grpc's unix socket target
        secure = not self.cfg.tls.insecure and scheme not in ("http", "unix")
        options: list[tuple[str, str | int]] = [
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.lb_policy_name", self.cfg.balancer_name),
            # reconnect soon after a backend outage (grpc's default backoff grows to 120s,
            # leaving the exporter failing fast long after the backend is back)
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        # Go's ReadBufferSize / WriteBufferSize, in grpc core's terms
        if self.cfg.read_buffer_size:
            options.append(("grpc.experimental.tcp_read_chunk_size", self.cfg.read_buffer_size))
        if self.cfg.write_buffer_size:
            options.append(("grpc.http2.write_buffer_size", self.cfg.write_buffer_size))
        if self.cfg.keepalive is not None:
            options += self.cfg.keepalive.options()
        if secure:
            tls = self.cfg.tls
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(tls.ca_file),
                private_key=_read(tls.key_file),
                certificate_chain=_read(tls.cert_file),
            )
            if tls.server_name_override:
                options.append(("grpc.ssl_target_name_override", tls.server_name_override))
            self._channel = grpc.aio.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        self._call = self._channel.unary_unary(
            EXPORT, request_serializer=None, response_deserializer=None
        )

    async def _push(self, traces: Traces) -> int:
        assert self._call is not None
        try:
            resp = await self._call(
                traces.to_bytes(),
                timeout=self.cfg.timeout.seconds or None,
                metadata=self._metadata,
                compression=self._compression,
            )
        except grpc.aio.AioRpcError as err:
            code = err.code()
            delay = retry_delay(err)
            msg = f"{code.name}: {err.details()}"
            if code in RETRYABLE or (
                code is grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None
            ):
                raise RetryableError(msg, delay) from None
            raise PermanentError(msg) from None
        if resp:
            ps = ExportTraceServiceResponse.FromString(resp).partial_success
            if ps.rejected_spans or ps.error_message:
                if ps.error_message:
                    self._log.warning("partial success: %s", ps.error_message)
                return int(ps.rejected_spans)
        return 0

    async def _shutdown(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


factory = ExporterFactory(
    type="otlp_grpc",
    aliases=("otlp",),
    config_type=OTLPExporterConfig,
    create=OTLPExporter,
    stability="beta",
    description="OTLP over gRPC to a backend or another collector",
)
