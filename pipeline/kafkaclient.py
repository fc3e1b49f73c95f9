"""What the `kafka` exporter and receiver share: connection options (brokers, client id,
SASL, TLS) turned into aiokafka keyword arguments, the connect/retry loop (`connect`),
error classification, and a rate limit on aiokafka's own logging (it logs every failed
reconnect at ERROR).

The options follow the OTel Collector's `configkafka`: `brokers`, `client_id`,
`protocol_version`, `auth.sasl` {`username`, `password`, `mechanism`} (plus
`username_file`/`password_file`), and `tls` (absent: plaintext; present: TLS unless
`insecure: true`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
import ssl
import struct
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeVar

import msgspec
from aiokafka import errors as kerrors

from pipeline.configtypes import Config, Duration, NonNegInt, TLSClientConfig
from pipeline.telemetry import RateLimitedLog, RateLimiter

DEFAULT_BROKERS = ("localhost:9092",)
DEFAULT_CLIENT_ID = "otel-collector"
# Kafka's own rule for topic names
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class SASLConfig(Config):
    """`username`/`password` inline (or from the environment: `${env:VAR}`), or read from
    `username_file`/`password_file` (a mounted secret; read at start, one trailing newline
    dropped)."""

    username: str | None = None
    username_file: str | None = None
    password: str | None = None
    password_file: str | None = None
    mechanism: Literal[
        "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM_OAUTHBEARER"
    ] = "PLAIN"
    version: int = 0  # accepted for OTel compatibility; aiokafka negotiates the handshake
    # OAUTHBEARER: the id of an extension that gives tokens (tracesieve's `oauth2client`)
    oauthbearer_token_source: str | None = None
    aws_msk: dict[str, str] | None = None  # AWS_MSK_IAM_OAUTHBEARER: refused

    def validate(self) -> list[str]:
        errs: list[str] = []
        if self.mechanism == "AWS_MSK_IAM_OAUTHBEARER":
            return [
                "mechanism: AWS_MSK_IAM_OAUTHBEARER is not supported (tracesieve has no AWS "
                "SDK); use OAUTHBEARER with an oauth2client extension, or SCRAM"
            ]
        if self.mechanism == "OAUTHBEARER":
            if not self.oauthbearer_token_source:
                errs.append(
                    "oauthbearer_token_source: OAUTHBEARER needs the id of an extension that "
                    "gives tokens (e.g. oauth2client), listed under service::extensions"
                )
            return errs
        if self.oauthbearer_token_source is not None:
            errs.append("oauthbearer_token_source: only used with mechanism OAUTHBEARER")
        for name in ("username", "password"):
            value, path = getattr(self, name), getattr(self, f"{name}_file")
            if (value is None) == (path is None):
                errs.append(f"{name}: set exactly one of {name}, {name}_file")
            elif value is not None and not value:
                errs.append(f"{name}: is empty")
            elif path is not None:
                try:
                    text = _read_secret(path)
                except OSError as exc:
                    errs.append(f"{name}_file: cannot read {path!r} ({exc.strerror})")
                else:
                    if not text:
                        errs.append(f"{name}_file: {path!r} is empty")
        return errs

    def credentials(self) -> tuple[str, str]:
        """(username, password), reading the files now."""
        user = self.username if self.username_file is None else _read_secret(self.username_file)
        pw = self.password if self.password_file is None else _read_secret(self.password_file)
        return user or "", pw or ""


def _read_secret(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return text[:-1] if text.endswith("\n") else text


class AuthConfig(Config):
    sasl: SASLConfig | None = None


class MetadataRetryConfig(Config):
    max: NonNegInt = 3  # accepted; aiokafka retries metadata requests on its own
    backoff: Duration = msgspec.field(default_factory=lambda: Duration(0.25))


class ClientMetadataConfig(Config):
    """`metadata`: `refresh_interval` -> aiokafka's metadata_max_age_ms, `retry.backoff` ->
    retry_backoff_ms; `full` and `retry.max` are accepted with no effect."""

    full: bool = True
    refresh_interval: Duration = msgspec.field(default_factory=lambda: Duration(600.0))
    retry: MetadataRetryConfig = msgspec.field(default_factory=MetadataRetryConfig)


def connection_kwargs(
    conn_idle_timeout: Duration, metadata: ClientMetadataConfig
) -> dict[str, int]:
    """aiokafka's options for `conn_idle_timeout` and `metadata` (producer and consumer)."""
    return {
        "connections_max_idle_ms": max(1000, int(conn_idle_timeout.seconds * 1000)),
        "metadata_max_age_ms": max(1000, int(metadata.refresh_interval.seconds * 1000)),
        "retry_backoff_ms": max(1, int(metadata.retry.backoff.seconds * 1000)),
    }


def check_brokers(brokers: list[str], field: str = "brokers") -> list[str]:
    if not brokers:
        return [f"{field}: at least one broker (host:port) is required"]
    errs = []
    for b in brokers:
        host, sep, port = b.rpartition(":")
        if not sep or not host or not port.isdigit():
            errs.append(f"{field}: invalid broker {b!r}: want host:port")
    return errs


def check_tls(tls: TLSClientConfig | None, field: str = "tls") -> list[str]:
    if tls is None:
        return []
    errs = []
    if tls.server_name_override:
        errs.append(f"{field}::server_name_override: not supported by the Kafka client")
    if tls.insecure:
        given = [
            name
            for name in ("ca_file", "cert_file", "key_file", "insecure_skip_verify")
            if getattr(tls, name)
        ]
        if given:
            errs.append(
                f"{field}::insecure: true means plaintext (no TLS), so {', '.join(given)} "
                "would be ignored; remove insecure to use TLS"
            )
    return errs


def valid_topic(name: str) -> bool:
    return bool(_TOPIC.match(name)) and name not in (".", "..")


def valid_topic_part(text: str) -> bool:
    """Characters a topic name may hold (for prefixes and suffixes)."""
    return not text or bool(_TOPIC.match(text))


def ssl_context(tls: TLSClientConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_kwargs(
    brokers: list[str],
    client_id: str,
    tls: TLSClientConfig | None,
    auth: AuthConfig | None,
    protocol_version: str = "",
) -> dict[str, Any]:
    """aiokafka client options (shared by producer and consumer)."""
    kw: dict[str, Any] = {"bootstrap_servers": list(brokers), "client_id": client_id}
    if protocol_version:
        kw["api_version"] = protocol_version
    ctx = ssl_context(tls) if tls is not None and not tls.insecure else None
    sasl = auth.sasl if auth is not None else None
    if sasl is not None:
        kw["security_protocol"] = "SASL_SSL" if ctx else "SASL_PLAINTEXT"
        kw["sasl_mechanism"] = sasl.mechanism
        # aiokafka takes these for SCRAM too
        kw["sasl_plain_username"], kw["sasl_plain_password"] = sasl.credentials()
    elif ctx is not None:
        kw["security_protocol"] = "SSL"
    if ctx is not None:
        kw["ssl_context"] = ctx
    return kw


# -- connecting -----------------------------------------------------------------------


class Client(Protocol):
    """An aiokafka producer or consumer."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


C = TypeVar("C", bound=Client)

CONNECT_DELAYS = (0.2, 3.0)  # seconds before the second attempt, and at most


async def started(client: C) -> C:
    """`client`, started; if it cannot start, stopped (its connections closed) and the
    error raised."""
    try:
        await client.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await client.stop()
        raise
    return client


def _always() -> bool:
    return True


async def connect(
    make: Callable[[], C],
    brokers: Sequence[str],
    warn: RateLimitedLog,
    running: Callable[[], bool] = _always,
) -> C | None:
    """A started client from `make()`, trying again while Kafka cannot be reached (a delay
    doubling from 0.2 s up to 3 s; each failure warned about, rate-limited), so that the
    collector runs meanwhile; None once `running()` is false. Run it in a background task:
    cancelling the task cancels the attempt in progress."""
    delay, longest = CONNECT_DELAYS
    while running():
        try:
            return await started(make())
        except Exception as exc:
            warn.warning(
                "cannot connect to Kafka %s (retrying in %.1fs): %s",
                ",".join(brokers),
                delay,
                describe(exc),
                key="connect",
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, longest)
    return None


# -- errors ---------------------------------------------------------------------------


def is_retriable(exc: BaseException) -> bool:
    """Whether sending again can succeed. Broker-side size limits and authorization
    failures are permanent; connection trouble, timeouts and leader changes are not."""
    if isinstance(
        exc,
        kerrors.MessageSizeTooLargeError
        | kerrors.RecordListTooLargeError
        | kerrors.TopicAuthorizationFailedError
        | kerrors.InvalidTopicError
        | kerrors.UnsupportedVersionError
        | kerrors.UnsupportedForMessageFormatError,
    ):
        return False
    if isinstance(exc, kerrors.KafkaError):
        return bool(getattr(exc, "retriable", False)) or isinstance(
            exc,
            kerrors.KafkaConnectionError
            | kerrors.KafkaTimeoutError
            | kerrors.NodeNotReadyError
            | kerrors.RequestTimedOutError
            | kerrors.ProducerClosed
            | kerrors.UnknownError,
        )
    return isinstance(exc, OSError | TimeoutError)


def describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


# -- partitioning -----------------------------------------------------------------------

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


@functools.lru_cache(maxsize=2048)  # a trace's key recurs: its spans arrive in several batches
def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's `Utils.murmur2`), as aiokafka's, ~5x faster."""
    n = len(data)
    h = (0x9747B28C ^ n) & _MASK
    n4 = n & ~3
    for k in struct.unpack(f"<{n4 >> 2}I", data[:n4]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = n & 3
    if extra >= 3:
        h ^= data[n4 + 2] << 16
    if extra >= 2:
        h ^= data[n4 + 1] << 8
    if extra >= 1:
        h ^= data[n4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partitioner(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """aiokafka's (and the Java client's) default partitioner, with the faster murmur2."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]


# -- aiokafka logging ------------------------------------------------------------------

_AIOKAFKA_LOGGERS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.consumer.subscription_state",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
    "aiokafka.admin.client",
)


class RateLimitFilter(logging.Filter):
    """Let each distinct message template through at most once per `interval` seconds."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self._limiter = RateLimiter(interval)

    def filter(self, record: logging.LogRecord) -> bool:
        return self._limiter.allow((record.name, record.msg))


_filter = RateLimitFilter()


def quiet_aiokafka_logs() -> None:
    """Rate-limit aiokafka's loggers (idempotent): a broker outage must not flood the log."""
    for name in _AIOKAFKA_LOGGERS:
        lg = logging.getLogger(name)
        if _filter not in lg.filters:
            lg.addFilter(_filter)
