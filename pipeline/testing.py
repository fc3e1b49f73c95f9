"""Helpers for testing components: a sink consumer, a host, a span-batch builder, and a
collector started through the CLI the way a user starts it."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from pipeline.component import ComponentID, Kind, Settings
from pipeline.errors import RefusedError
from pipeline.pdata import Traces
from pipeline.telemetry import Telemetry


class Sink:
    """A consumer that keeps what it gets; `refuse` makes it refuse (retryably)."""

    def __init__(self, mutates_data: bool = False) -> None:
        self.mutates_data = mutates_data
        self.batches: list[Traces] = []
        self.refuse = False
        self.received = asyncio.Event()

    async def start(self, host: Any) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume_traces(self, traces: Traces) -> None:
        if self.refuse:
            raise RefusedError("sink refuses")
        self.batches.append(traces)
        self.received.set()

    @property
    def span_count(self) -> int:
        return sum(b.span_count for b in self.batches)

    def spans(self) -> list[Span]:
        return [s for b in self.batches for _, _, s in b.spans()]


@dataclass
class FakeHost:
    deadline: float | None = None
    announced: list[str] = field(default_factory=list)
    fatal: list[BaseException] = field(default_factory=list)

    def extension(self, id: ComponentID) -> Any:
        return None

    def report_fatal_error(self, error: BaseException) -> None:
        self.fatal.append(error)

    def is_ready(self) -> bool:
        return True

    def announce(self, what: str) -> None:
        self.announced.append(what)


def settings(
    kind: Kind = "processor", id: str = "test", telemetry: Telemetry | None = None
) -> Settings:
    cid = ComponentID.parse(id)
    return Settings(cid, kind, telemetry or Telemetry(), logging.getLogger(f"test.{cid}"), "traces")


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list | tuple):
        av = AnyValue()
        av.array_value.values.extend(any_value(v) for v in value)
        return av
    return AnyValue(string_value=str(value))


def make_span(
    name: str,
    trace_id: bytes,
    span_id: bytes,
    parent: bytes = b"",
    *,
    start: int = 1_700_000_000_000_000_000,
    duration_ns: int = 1_000_000,
    kind: int = Span.SPAN_KIND_INTERNAL,
    status: int = Status.STATUS_CODE_UNSET,
    attributes: dict[str, Any] | None = None,
) -> Span:
    s = Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration_ns,
    )
    s.status.code = status  # type: ignore[assignment]
    for k, v in (attributes or {}).items():
        s.attributes.append(kv(k, v))
    return s


def make_traces(
    spans: Iterable[Span], service: str = "test-service", scope: str = "test"
) -> Traces:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", service))
    ss = rs.scope_spans.add()
    ss.scope.name = scope
    ss.spans.extend(spans)
    return Traces(req)


def attrs(span: Span) -> dict[str, Any]:
    """A span's attributes as plain Python values."""
    return {kv.key: plain(kv.value) for kv in span.attributes}


def plain(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [plain(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {x.key: plain(x.value) for x in v.kvlist_value.values}
    return getattr(v, which)


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_LISTEN = re.compile(r"listening: (\S+): .* on (\w+)://([^/\s]+)")


class Collector:
    """`tracesieve run` in a subprocess, as a user starts it. The config is a dict or
    YAML text; `endpoints` maps 'receivers::otlp/grpc'-style keys to host:port."""

    def __init__(
        self,
        config: dict[str, Any] | str,
        *,
        env: dict[str, str] | None = None,
        extra_args: Sequence[str] = (),
        workdir: str | None = None,
    ) -> None:
        self.dir = workdir or tempfile.mkdtemp(prefix="tracesieve-test-")
        self.config_path = os.path.join(self.dir, "config.yaml")
        with open(self.config_path, "w") as fh:
            fh.write(config if isinstance(config, str) else yaml.safe_dump(config))
        self.env = {**os.environ, **(env or {})}
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self.endpoints: dict[str, str] = {}

    def start(self, timeout: float = 30.0) -> Collector:
        self.lines = []
        self._ready.clear()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                "run",
                "--config",
                self.config_path,
                *self.extra_args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=self.dir,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reader.join(2)
                raise RuntimeError("collector did not start:\n" + self.output)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            m = _LISTEN.search(line)
            if m:
                self.endpoints[f"{m.group(1)}/{m.group(2)}"] = m.group(3)
            if "tracesieve is ready" in line:
                self._ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_json_lines(path: str) -> list[ExportTraceServiceRequest]:
    """Requests written by the `file` exporter in JSON format."""
    from pipeline import otlpjson

    out: list[ExportTraceServiceRequest] = []
    if not os.path.exists(path):
        return out
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                out.append(otlpjson.decode(line))
    return out


def spans_in(requests: Iterable[ExportTraceServiceRequest]) -> list[Span]:
    return [
        s for r in requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll until `predicate()` is true; a readiness wait, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


__all__ = [
    "Collector",
    "FakeHost",
    "Sink",
    "attrs",
    "free_port",
    "kv",
    "make_span",
    "make_traces",
    "read_json_lines",
    "settings",
    "signal",
    "spans_in",
    "wait_for",
]
