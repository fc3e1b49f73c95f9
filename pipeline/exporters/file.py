"""`file` exporter, as the OTel Collector's: one ExportTraceServiceRequest per batch, as OTLP
JSON lines (`format: json`) or length-prefixed protobuf (`format: proto`: a 4-byte
big-endian length, then the message).

- `compression: zstd`: each encoded message is compressed on its own (one zstd frame) and
  written after a 4-byte big-endian length, for json and proto alike (so compressed
  JSON is not line-based), as the Collector writes it.
- `rotation` (any `rotation:` key turns it on, with these defaults): before a write that
  would take the file past `max_megabytes` (100), it is renamed
  `<name>-<YYYY-MM-DDTHH-MM-SS.mmm><ext>` (UTC, or local time with `localtime: true`)
  and a new file started; backups beyond `max_backups` (100; 0: keep all) and older than
  `max_days` (by the time in their name; 0: keep) are removed, as lumberjack does.
- `append: false` truncates the file at start (the Collector's default); `true` appends
  (not allowed with compression, as in the Collector). Not set: tracesieve appends, so a
  restart never loses what an earlier run wrote (a difference from the Collector). With
  rotation the file is appended to.
- `flush_interval` (1s; a bare number is nanoseconds, as in the Collector; 0: flush
  every write).
- The file's directory is created when missing (`create_directory` is accepted; it is
  always done), with `directory_permissions` (octal string, default 0755).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import struct
from typing import IO, Literal

import msgspec

from pipeline import otlpjson
from pipeline.component import ExporterFactory, Host, Settings
from pipeline.configtypes import Config, Duration, NonNegInt
from pipeline.pdata import Traces

_STAMP = "%Y-%m-%dT%H-%M-%S"
_BACKUP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2})\.(\d{3})$")


class RotationConfig(Config):
    max_megabytes: NonNegInt = 100
    max_days: NonNegInt = 0
    max_backups: NonNegInt = 100
    localtime: bool = False


class FileExporterConfig(Config):
    path: str = ""
    format: Literal["json", "proto"] = "json"
    compression: Literal["", "zstd"] = ""
    append: bool | None = None  # None: append (see the module docstring)
    rotation: RotationConfig | None = None
    flush_interval: Duration = msgspec.field(default_factory=lambda: Duration(1.0))
    create_directory: bool = False
    directory_permissions: str = "0755"

    @classmethod
    def preprocess(cls, raw: object) -> object:
        """`rotation:` with nothing under it turns rotation on with its defaults."""
        if isinstance(raw, dict) and "rotation" in raw and raw["rotation"] is None:
            raw["rotation"] = {}
        return raw

    def validate(self) -> list[str]:
        errs = [] if self.path.strip() else ["path: path must be non-empty"]
        if self.flush_interval.seconds < 0:
            errs.append("flush_interval: flush_interval must be larger than zero")
        if self.append and self.compression:
            errs.append("append: append and compression enabled at the same time is not supported")
        if not re.fullmatch(r"0?[0-7]{3,4}", self.directory_permissions):
            errs.append(
                f"directory_permissions: invalid {self.directory_permissions!r} (an octal "
                "mode such as 0755)"
            )
        return errs


class FileExporter:
    mutates_data = False

    def __init__(self, settings: Settings, cfg: FileExporterConfig) -> None:
        self.cfg = cfg
        self._fh: IO[bytes] | None = None
        self._written = 0
        self._flusher: asyncio.Task[None] | None = None
        self.metrics = settings.telemetry.exporter(str(settings.id))
        self._zstd: object | None = None

    async def start(self, host: Host) -> None:
        folder = os.path.dirname(os.path.abspath(self.cfg.path))
        os.makedirs(folder, mode=int(self.cfg.directory_permissions, 8), exist_ok=True)
        keep = self.cfg.append is not False or self.cfg.rotation is not None
        self._fh = open(self.cfg.path, "ab" if keep else "wb")  # noqa: SIM115 - held open
        self._written = self._fh.tell()
        if self.cfg.compression == "zstd":
            import zstandard

            self._zstd = zstandard.ZstdCompressor()
        if self.cfg.flush_interval.seconds > 0:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.flush_interval.seconds)
            if self._fh is not None:
                self._fh.flush()

    def _encode(self, traces: Traces) -> bytes:
        msg = traces.to_bytes() if self.cfg.format == "proto" else otlpjson.encode(traces.request)
        if self._zstd is not None:
            msg = self._zstd.compress(msg)  # type: ignore[attr-defined]
        elif self.cfg.format == "json":
            return msg + b"\n"
        return struct.pack(">I", len(msg)) + msg

    async def consume_traces(self, traces: Traces) -> None:
        fh = self._fh
        if fh is None:
            from pipeline.errors import RefusedError

            raise RefusedError("file exporter is not running")
        data = self._encode(traces)
        rot = self.cfg.rotation
        if (
            rot is not None
            and rot.max_megabytes
            and self._written
            and self._written + len(data) > rot.max_megabytes << 20
        ):
            self._rotate()
            fh = self._fh
            assert fh is not None
        fh.write(data)
        if self.cfg.flush_interval.seconds == 0:
            fh.flush()
        self._written += len(data)
        self.metrics.sent.inc(traces.span_count)

    def _now(self) -> datetime.datetime:
        rot = self.cfg.rotation
        if rot is not None and rot.localtime:
            return datetime.datetime.now().astimezone()
        return datetime.datetime.now(datetime.UTC)

    def _rotate(self) -> None:
        assert self._fh is not None
        self._fh.close()
        base, ext = os.path.splitext(self.cfg.path)
        now = self._now()
        while True:  # two rotations in one millisecond: the later one takes the next
            name = f"{base}-{now.strftime(_STAMP)}.{now.microsecond // 1000:03d}{ext}"
            if not os.path.exists(name):
                break
            now += datetime.timedelta(milliseconds=1)
        os.replace(self.cfg.path, name)
        self._remove_old_backups()
        self._fh = open(self.cfg.path, "ab")  # noqa: SIM115
        self._written = 0

    def _remove_old_backups(self) -> None:
        """lumberjack's rules: keep at most `max_backups` backups and none older than
        `max_days` (by the time in the name)."""
        rot = self.cfg.rotation
        assert rot is not None
        base, ext = os.path.splitext(self.cfg.path)
        folder = os.path.dirname(os.path.abspath(self.cfg.path))
        prefix = os.path.basename(base) + "-"
        backups: list[tuple[datetime.datetime, str]] = []
        for f in os.listdir(folder):
            if not (f.startswith(prefix) and f.endswith(ext)):
                continue
            stamp = f[len(prefix) : len(f) - len(ext)] if ext else f[len(prefix) :]
            m = _BACKUP.match(stamp)
            if m is None:
                continue
            when = datetime.datetime.strptime(m.group(1), _STAMP)
            when = when.replace(microsecond=int(m.group(2)) * 1000)
            when = when.astimezone() if rot.localtime else when.replace(tzinfo=datetime.UTC)
            backups.append((when, f))
        backups.sort(reverse=True)  # newest first
        remove: list[str] = []
        if rot.max_backups and len(backups) > rot.max_backups:
            remove += [f for _, f in backups[rot.max_backups :]]
            backups = backups[: rot.max_backups]
        if rot.max_days:
            cutoff = self._now() - datetime.timedelta(days=rot.max_days)
            remove += [f for when, f in backups if when < cutoff]
        for f in remove:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, f))

    async def shutdown(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._fh is not None:
            self._fh.flush()
            # a regular file is made durable; a device or pipe (/dev/null, a FIFO) cannot be
            with contextlib.suppress(OSError):
                os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


factory = ExporterFactory(
    type="file",
    config_type=FileExporterConfig,
    create=FileExporter,
    stability="beta",
    description="OTLP JSON lines (or length-prefixed protobuf) to a local file",
)
