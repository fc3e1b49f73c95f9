"""Config building blocks shared by components: the base Struct, durations, sizes, and
the exporter/receiver option groups the OTel Collector also shares (retry, queue, TLS).

Component configs are msgspec Structs decoded over their defaults; unknown fields are
errors. `decode()` reports every problem in a block, not just the first.
"""

from __future__ import annotations

import os
import re
import ssl
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import msgspec
from msgspec import Meta

T = TypeVar("T")


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every config struct (treat as immutable). Override `validate()` for
    cross-field checks.

    `other_signals` names fields that hold an OTel Collector component's settings for
    other signals (logs, metrics, profiles): decoded (so a typo in them is still an
    error), then ignored; the loader warns once about those that are set."""

    other_signals: ClassVar[tuple[str, ...]] = ()

    def other_signal_notes(self) -> list[str]:
        """More of the block's settings that are for other signals (relative paths), when
        a value rather than a field says so."""
        return []

    def validate(self) -> list[str]:
        """Problems msgspec's type checks cannot see, each as 'field: message'."""
        return []


# -- durations ------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class Duration:
    """A Go-style duration ("200ms", "1m30s", "0"), as in OTel Collector configs; a bare
    number is a count of nanoseconds, as the Collector reads it (`5` is 5ns, not 5s)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)

    @classmethod
    def parse(cls, value: object) -> Duration:
        if isinstance(value, Duration):
            return value
        if isinstance(value, bool):
            raise ValueError(f"invalid duration {value!r}")
        if isinstance(value, int | float):
            # a bare number is nanoseconds, as the OTel Collector reads it (time.Duration)
            return cls(int(value) * 1e-9)
        if not isinstance(value, str):
            raise ValueError(f"invalid duration {value!r}: want a string such as '5s' or '200ms'")
        text = value.strip()
        if text in ("0", "-0", "+0"):
            return cls(0.0)
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        pos, total = 0, 0.0
        for m in _DURATION_PART.finditer(body):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNIT[m.group(2)]
            pos = m.end()
        if pos != len(body) or not body:
            raise ValueError(f"invalid duration {value!r}: want e.g. '5s', '200ms', '1m30s'")
        return cls(sign * total)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash(self.seconds)

    def __repr__(self) -> str:
        return f"Duration({self.format()!r})"

    def format(self) -> str:
        s = self.seconds
        if s == 0:
            return "0s"
        if abs(s) < 1e-3:
            ns = round(s * 1e9)
            return f"{ns // 1000}us" if ns % 1000 == 0 else f"{ns}ns"
        if s < 1 and (s * 1000) == int(s * 1000):
            return f"{int(s * 1000)}ms"
        if s == int(s):
            return f"{int(s)}s"
        return f"{s}s"


def dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Duration:
        return Duration.parse(obj)
    raise NotImplementedError(f"unsupported type {type_}")


def enc_hook(obj: Any) -> Any:
    if isinstance(obj, Duration):
        return obj.format()
    raise NotImplementedError(f"cannot encode {type(obj)}")


# -- common option groups ---------------------------------------------------------------

PositiveInt = Annotated[int, Meta(ge=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
Percentage = Annotated[float, Meta(ge=0, le=100)]


class ClientAuthConfig(Config):
    """`auth` of an exporter: the OTel Collector's `authenticator: <extension id>`. tracesieve
    has no authenticator extensions, so it is refused with a message (headers carry static
    credentials: `headers: {authorization: "Bearer ${env:TOKEN}"}`)."""

    authenticator: str

    def validate(self) -> list[str]:
        return [
            f"authenticator: authenticator extensions are not supported: tracesieve has no "
            f"{self.authenticator!r} extension; send static credentials with headers "
            '(e.g. headers: {authorization: "Bearer ${env:TOKEN}"})'
        ]


class KeepaliveClientConfig(Config):
    """gRPC client `keepalive`: ping after `time` idle, wait `timeout` for the answer."""

    time: Duration | None = None
    timeout: Duration | None = None
    permit_without_stream: bool = False

    def options(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        if self.time is not None and self.time.seconds > 0:
            out.append(("grpc.keepalive_time_ms", max(1, round(self.time.seconds * 1000))))
        if self.timeout is not None and self.timeout.seconds > 0:
            out.append(("grpc.keepalive_timeout_ms", max(1, round(self.timeout.seconds * 1000))))
        out.append(("grpc.keepalive_permit_without_calls", int(self.permit_without_stream)))
        return out


def check_endpoint(value: str, field: str = "endpoint") -> list[str]:
    """host:port with a numeric port (0 picks a free one)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return [f"{field}: invalid endpoint {value!r}: want host:port"]
    if not host:
        return [f"{field}: invalid endpoint {value!r}: missing host (use 0.0.0.0 to listen on all)"]
    return []


def split_endpoint(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class RetryConfig(Config):
    """`retry_on_failure`, with the OTel Collector's defaults."""

    enabled: bool = True
    initial_interval: Duration = msgspec.field(default_factory=lambda: Duration(5.0))
    max_interval: Duration = msgspec.field(default_factory=lambda: Duration(30.0))
    max_elapsed_time: Duration = msgspec.field(default_factory=lambda: Duration(300.0))
    multiplier: Annotated[float, Meta(ge=1.0)] = 1.5
    randomization_factor: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.5


class PartitionConfig(Config):
    metadata_keys: list[str] = []


class QueueBatchConfig(Config):
    """`sending_queue.batch`: the exporter helper's batching (the OTel Collector's): queued
    batches are merged until `min_size` (in `sizer` units) or `flush_timeout` since the
    first, and cut at `max_size` (0: no limit); only batches with the same values of
    `partition.metadata_keys` (client metadata) are merged, and the merged batch carries
    those keys as its client metadata."""

    flush_timeout: Duration = msgspec.field(default_factory=lambda: Duration(0.2))
    min_size: NonNegInt = 8192
    max_size: NonNegInt = 0
    sizer: Literal["requests", "items", "bytes"] = "items"
    partition: PartitionConfig = msgspec.field(default_factory=PartitionConfig)

    def validate(self) -> list[str]:
        errs = []
        if self.flush_timeout.seconds <= 0:
            errs.append("flush_timeout: must be greater than zero")
        if self.max_size and self.max_size < self.min_size:
            errs.append("max_size: must be greater than or equal to min_size")
        return errs


def enable_null_blocks(raw: Any, *paths: tuple[str, ...]) -> Any:
    """Turn `key:` with nothing under it into `{}` at each path (an optional block that is
    present is on, with its defaults, as the Collector's `configoptional` reads it)."""
    for path in paths:
        node = raw
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node and node[path[-1]] is None:
            node[path[-1]] = {}
    return raw


class QueueConfig(Config):
    """`sending_queue`, with the OTel Collector's defaults (sizer `requests`)."""

    enabled: bool = True
    num_consumers: PositiveInt = 10
    queue_size: PositiveInt = 1000
    sizer: Literal["requests", "items", "bytes"] = "requests"
    block_on_overflow: bool = False
    wait_for_result: bool = False
    # directory of a persistent write-ahead queue; unset = in memory
    storage: str | None = None
    # persistent queue: "always" fsyncs every write, "batch" every `fsync_interval`, "never"
    fsync: Literal["always", "batch", "never"] = "batch"
    fsync_interval: Duration = msgspec.field(default_factory=lambda: Duration(0.2))
    batch: QueueBatchConfig | None = None

    def validate(self) -> list[str]:
        errs = []
        if self.storage is not None:
            if not self.storage.strip():
                errs.append("storage: is empty (a directory for the persistent queue)")
            if not self.enabled:
                errs.append("storage: the persistent queue needs enabled: true")
        if self.fsync == "batch" and self.fsync_interval.seconds <= 0:
            errs.append("fsync_interval: must be greater than 0 with fsync: batch")
        return errs


TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")


def check_tls_versions(min_version: str | None, max_version: str | None) -> list[str]:
    errs = []
    for name, v in (("min_version", min_version), ("max_version", max_version)):
        if v is not None and v not in TLS_VERSIONS:
            errs.append(
                f'{name}: invalid TLS {name}: unsupported TLS version: "{v}" '
                f"(want one of {', '.join(TLS_VERSIONS)})"
            )
    return errs


def tls_version(v: str) -> ssl.TLSVersion:
    return {
        "1.0": ssl.TLSVersion.TLSv1,
        "1.1": ssl.TLSVersion.TLSv1_1,
        "1.2": ssl.TLSVersion.TLSv1_2,
        "1.3": ssl.TLSVersion.TLSv1_3,
    }[v]


class TLSClientConfig(Config):
    """Client TLS (`tls`): on unless `insecure: true`."""

    insecure: bool = False
    insecure_skip_verify: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name_override: str | None = None
    min_version: str | None = None
    max_version: str | None = None

    def validate(self) -> list[str]:
        if bool(self.cert_file) != bool(self.key_file):
            return ["cert_file and key_file must be set together"]
        errs = check_tls_versions(self.min_version, self.max_version)
        errs += _unreadable(self, ("ca_file", "cert_file", "key_file"))
        if not errs and (self.ca_file or self.cert_file):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            errs += _load(ctx, self.cert_file, self.key_file, self.ca_file, "ca_file")
        return errs


class TLSServerConfig(Config):
    """Server TLS: `cert_file`/`key_file`; `client_ca_file` requires client certs (mTLS).
    `ca_file` is accepted and, as on a Collector server, has no effect (only
    `client_ca_file` verifies clients); `reload_interval` is accepted, the files are read
    at start."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    ca_file: str | None = None
    min_version: str = "1.2"
    max_version: str | None = None
    reload_interval: Duration | None = None

    def validate(self) -> list[str]:
        errs = check_tls_versions(self.min_version, self.max_version)
        errs += _unreadable(self, ("cert_file", "key_file", "client_ca_file"))
        if not errs:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            errs += _load(ctx, self.cert_file, self.key_file, self.client_ca_file, "client_ca_file")
        return errs


def _unreadable(cfg: Config, fields: tuple[str, ...]) -> list[str]:
    errs = []
    for name in fields:
        path = getattr(cfg, name)
        if path and not os.access(path, os.R_OK):
            why = "no such file" if not os.path.exists(path) else "not readable"
            errs.append(f"{name}: cannot read {path!r} ({why})")
    return errs


def _load(
    ctx: ssl.SSLContext, cert: str | None, key: str | None, ca: str | None, ca_field: str
) -> list[str]:
    """Load the PEM files as the component will, so a bad file is a config error."""
    errs = []
    if cert and key:
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError, ValueError) as exc:
            errs.append(f"cert_file: cannot load the certificate and key: {exc}")
    if ca:
        try:
            ctx.load_verify_locations(ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            errs.append(f"{ca_field}: cannot load the CA certificates: {exc}")
    return errs


# -- decoding with every error reported ---------------------------------------------------

_AT = re.compile(r" - at `\$(.*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`")
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]")


def _path_parts(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for m in _PATH_PART.finditer(path):
        if m.group(1) is not None:
            parts.append(m.group(1))
        elif m.group(2) is not None:
            parts.append(int(m.group(2)))
        else:
            parts.append(m.group(3))
    return parts


def _drop(raw: Any, parts: list[str | int]) -> bool:
    """Remove the value at `parts` from the raw tree so decoding can go on past it."""
    node = raw
    for p in parts[:-1]:
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            return False
    last = parts[-1] if parts else None
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        del node[last]
        return True
    return False


def _humanize(msg: str) -> str:
    msg = _UNKNOWN.sub(lambda m: f"unknown field '{m.group(1)}'", msg)
    msg = msg.replace("`", "'")
    return msg[0].lower() + msg[1:] if msg else msg


def decode(raw: Any, type_: type[T], path: str) -> tuple[T | None, list[str]]:
    """Decode a raw config block into `type_`, collecting every error with its path.

    msgspec stops at the first error; after each one the offending value is removed (so
    its default applies) and decoding is retried, until the block decodes cleanly. The
    value is returned even when there were errors (with defaults in place of the bad
    values), so later checks can go on; it is None only if nothing could be decoded."""
    import copy

    raw = {} if raw is None else copy.deepcopy(raw)
    pre = getattr(type_, "preprocess", None)
    if pre is not None:
        raw = pre(raw)
    errors: list[str] = []
    for _ in range(64):
        try:
            value = msgspec.convert(raw, type_, dec_hook=dec_hook, str_keys=True)
        except msgspec.ValidationError as exc:
            text = str(exc)
            m = _AT.search(text)
            where = m.group(1) if m else ""
            body = text[: m.start()] if m else text
            parts = _path_parts(where)
            unknown = _UNKNOWN.match(body)
            if unknown:
                parts = [*parts, unknown.group(1)]
                shown = parts[:-1]
            else:
                shown = parts
            sub = "".join(f"::{p}" for p in shown)
            errors.append(f"{path}{sub}: {_humanize(body)}")
            if not parts or not _drop(raw, parts):
                return None, errors
            continue
        return value, errors + _validate_tree(value, path)
    return None, errors


_FIELD_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z0-9_/]+)*): ")


def _validate_tree(value: Any, path: str) -> list[str]:
    """Run `validate()` on a struct and every struct inside it."""
    errors: list[str] = []
    if isinstance(value, Config):
        for e in value.validate():
            m = _FIELD_PREFIX.match(e)
            errors.append(f"{path}::{m.group(1)}: {e[m.end() :]}" if m else f"{path}: {e}")
        # the names as written in the config (a field may be renamed, e.g. `and_` -> `and`)
        for name, key in zip(value.__struct_fields__, value.__struct_encode_fields__, strict=True):
            errors += _validate_tree(getattr(value, name), f"{path}::{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            errors += _validate_tree(item, f"{path}::{i}")
    elif isinstance(value, dict):
        for k, item in value.items():
            errors += _validate_tree(item, f"{path}::{k}")
    return errors


def other_signal_paths(value: Any, path: str) -> list[str]:
    """The paths of the `other_signals` fields set in a struct and the structs in it."""
    out: list[str] = []
    if isinstance(value, Config):
        names = dict(zip(value.__struct_fields__, value.__struct_encode_fields__, strict=True))
        for name in value.other_signals:
            v = getattr(value, name)
            if v is not None and v != [] and v != {} and v != "":
                out.append(f"{path}::{names.get(name, name)}")
        out += [f"{path}::{note}" for note in value.other_signal_notes()]
        for name, key in names.items():
            if name not in value.other_signals:
                out += other_signal_paths(getattr(value, name), f"{path}::{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            out += other_signal_paths(item, f"{path}::{i}")
    elif isinstance(value, dict):
        for k, item in value.items():
            out += other_signal_paths(item, f"{path}::{k}")
    return out


def to_builtins(value: Any) -> Any:
    """Plain data for printing; optional blocks that are not set are left out (`key:` with
    nothing under it would turn some of them on, as in the Collector)."""
    return _drop_none(msgspec.to_builtins(value, enc_hook=enc_hook))


def _drop_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_none(x) for x in v]
    return v
