"""`file` exporter: one ExportTraceServiceRequest per line as OTLP JSON (`format: json`), or
length-prefixed protobuf (`format: proto`: a 4-byte big-endian length, then the message),
as the OTel Collector's file exporter writes them. Optional rotation by size."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from typing import IO, Literal

import msgspec

from pipeline import otlpjson
from pipeline.component import ExporterFactory, Host, Settings
from pipeline.configtypes import Config, Duration, NonNegInt
from pipeline.pdata import Traces


class RotationConfig(Config):
    max_megabytes: NonNegInt = 100
    max_backups: NonNegInt = 100


class FileExporterConfig(Config):
    path: str
    format: Literal["json", "proto"] = "json"
    rotation: RotationConfig | None = None
    flush_interval: Duration = msgspec.field(default_factory=lambda: Duration(1.0))

    def validate(self) -> list[str]:
        return [] if self.path.strip() else ["path: is empty"]


class FileExporter:
    mutates_data = False

    def __init__(self, settings: Settings, cfg: FileExporterConfig) -> None:
        self.cfg = cfg
        self._fh: IO[bytes] | None = None
        self._written = 0
        self._flusher: asyncio.Task[None] | None = None
        self.metrics = settings.telemetry.exporter(str(settings.id))

    async def start(self, host: Host) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.cfg.path)), exist_ok=True)
        self._fh = open(self.cfg.path, "ab")  # noqa: SIM115 - held open for the run
        self._written = self._fh.tell()
        if self.cfg.flush_interval.seconds > 0:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.flush_interval.seconds)
            if self._fh is not None:
                self._fh.flush()

    def _encode(self, traces: Traces) -> bytes:
        if self.cfg.format == "proto":
            raw = traces.to_bytes()
            return struct.pack(">I", len(raw)) + raw
        return otlpjson.encode(traces.request) + b"\n"

    async def consume_traces(self, traces: Traces) -> None:
        fh = self._fh
        if fh is None:
            from pipeline.errors import RefusedError

            raise RefusedError("file exporter is not running")
        data = self._encode(traces)
        fh.write(data)
        if self.cfg.flush_interval.seconds == 0:
            fh.flush()
        self._written += len(data)
        self.metrics.sent.inc(traces.span_count)
        rot = self.cfg.rotation
        if rot is not None and rot.max_megabytes and self._written >= rot.max_megabytes << 20:
            self._rotate()

    def _rotate(self) -> None:
        assert self._fh is not None
        self._fh.close()
        base, ext = os.path.splitext(self.cfg.path)
        stamp = (
            time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime())
            + f".{time.time_ns() % 1_000_000_000:09d}"
        )
        os.replace(self.cfg.path, f"{base}-{stamp}{ext}")
        rot = self.cfg.rotation
        if rot is not None and rot.max_backups:
            folder = os.path.dirname(os.path.abspath(self.cfg.path))
            prefix = os.path.basename(base) + "-"
            backups = sorted(
                f for f in os.listdir(folder) if f.startswith(prefix) and f.endswith(ext)
            )
            for old in backups[: -rot.max_backups]:
                os.remove(os.path.join(folder, old))
        self._fh = open(self.cfg.path, "ab")  # noqa: SIM115
        self._written = 0

    async def shutdown(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._fh is not None:
            self._fh.flush()
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
