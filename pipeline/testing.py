"""Helpers for testing components: a sink consumer, a host, a span-batch builder, and a
collector started through the CLI the way a user starts it."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
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
from collections.abc import Iterable, Iterator, Sequence
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
from pipeline.wholetraces import plain


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


def sample_request(seed: int, n_spans: int = 20, services: int = 2) -> ExportTraceServiceRequest:
    """A deterministic, varied request: several resources and scopes, parents, events,
    links, every attribute type, statuses and kinds."""
    import random

    rnd = random.Random(seed)
    req = ExportTraceServiceRequest()
    per = max(1, n_spans // services)
    made = 0
    for r in range(services):
        rs = req.resource_spans.add()
        rs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
        rs.resource.attributes.extend(
            [kv("service.name", f"svc-{seed}-{r}"), kv("host.name", f"h{r}")]
        )
        ss = rs.scope_spans.add()
        ss.scope.name = f"scope-{r}"
        ss.scope.version = "1.0"
        ss.scope.attributes.append(kv("scope.attr", r))
        trace_id = rnd.randbytes(16)
        parent = b""
        count = per if r < services - 1 else n_spans - made
        for i in range(count):
            span_id = rnd.randbytes(8)
            sp = make_span(
                f"op-{seed}-{r}-{i}",
                trace_id,
                span_id,
                parent,
                start=1_700_000_000_000_000_000 + rnd.randrange(10**12),
                duration_ns=rnd.randrange(1, 10**9),
                kind=rnd.randrange(0, 6),
                status=rnd.randrange(0, 3),
                attributes={
                    "s": f"v{i}",
                    "i": rnd.randrange(-(2**40), 2**40),
                    "d": rnd.random(),
                    "b": bool(i % 2),
                    "arr": [1, 2, i],
                    "bytes": rnd.randbytes(4),
                },
            )
            if sp.status.code == 2:
                sp.status.message = "failed"
            sp.trace_state = "k=v" if i % 3 == 0 else ""
            sp.flags = 0x101
            sp.dropped_attributes_count = i % 2
            ev = sp.events.add()
            ev.name = "event"
            ev.time_unix_nano = sp.start_time_unix_nano + 1
            ev.attributes.append(kv("e", i))
            if parent:
                link = sp.links.add()
                link.trace_id = rnd.randbytes(16)
                link.span_id = rnd.randbytes(8)
                link.attributes.append(kv("l", "x"))
            kvl = sp.attributes.add()
            kvl.key = "kvlist"
            kvl.value.kvlist_value.values.append(kv("inner", "y"))
            ss.spans.append(sp)
            parent = span_id
            made += 1
    return req


def export_grpc(endpoint: str, request: ExportTraceServiceRequest | bytes, **kw: Any) -> None:
    """One OTLP/gRPC Export call with a plain grpc client; raises grpc.RpcError."""
    import grpc

    raw = request if isinstance(request, bytes) else request.SerializeToString()
    with grpc.insecure_channel(endpoint) as ch:
        call = ch.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        call(raw, timeout=kw.pop("timeout", 10), **kw)


def export_http(
    endpoint: str,
    body: bytes,
    content_type: str = "application/x-protobuf",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One OTLP/HTTP POST; returns (status, headers, body) for any status."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"http://{endpoint}/v1/traces",
        data=body,
        method="POST",
        headers={"Content-Type": content_type, **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def span_index(
    requests: Iterable[ExportTraceServiceRequest],
) -> dict[bytes, tuple[bytes, bytes, str, str, bytes]]:
    """Each span (by trace id + span id) with its resource and scope, as wire bytes:
    for comparing what was sent with what arrived, span by span."""
    out: dict[bytes, tuple[bytes, bytes, str, str, bytes]] = {}
    for r in requests:
        for rs in r.resource_spans:
            res = rs.resource.SerializeToString(deterministic=True)
            for ss in rs.scope_spans:
                scope = ss.scope.SerializeToString(deterministic=True)
                for sp in ss.spans:
                    k = sp.trace_id + sp.span_id
                    if k in out:
                        raise AssertionError(f"span {sp.name} appears twice")
                    out[k] = (
                        res,
                        scope,
                        rs.schema_url,
                        ss.schema_url,
                        sp.SerializeToString(deterministic=True),
                    )
    return out


# -- processes ------------------------------------------------------------------------------


# Under pytest-xdist, each worker hands out ports from a slice of its own of this range,
# below the kernel's ephemeral range (32768-60999 on Linux) from which bind(0) and every
# outgoing connection take theirs (docs/internals/testing.md).
_WORKER_PORTS = (20000, 32000)
_SLICE = 1000
_next_port: int | None = None


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, for a listener started later (a config written beforehand, a
    collector restarted on the same port). Where it can, a test should listen on port 0
    and read the port back instead. Alone, the kernel picks (bind to port 0); under
    pytest-xdist, worker N takes the next free port of its own slice, so two workers
    never pick the same port, nor one some connection's local port, in the time between
    this check and the bind."""
    global _next_port
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        with socket.socket() as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    slices = (_WORKER_PORTS[1] - _WORKER_PORTS[0]) // _SLICE
    first = _WORKER_PORTS[0] + (int(worker[2:]) % slices) * _SLICE
    if _next_port is None:  # a random start: another suite's worker N may run beside us
        import random

        _next_port = random.randrange(_SLICE)
    for _ in range(_SLICE):
        port = first + _next_port % _SLICE
        _next_port += 1
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {first}-{first + _SLICE - 1}")


_LISTEN = re.compile(r"listening: (\S+): .* on (\w+)://([^/\s]+)")


def _write_config(config: dict[str, Any] | str, workdir: str | None) -> tuple[str, str]:
    """(working directory, config path): `config` (a dict or YAML text) written to a file of
    its own in `workdir` (made if missing; None: a new temporary directory), so several
    collectors can share a working directory."""
    workdir = workdir or tempfile.mkdtemp(prefix="tracesieve-test-")
    os.makedirs(workdir, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="config-", suffix=".yaml", dir=workdir)
    with os.fdopen(fd, "w") as fh:
        fh.write(config if isinstance(config, str) else yaml.safe_dump(config))
    return workdir, path


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
        self.dir, self.config_path = _write_config(config, workdir)
        self.env = {**os.environ, **(env or {})}
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self._signalled = False
        self.endpoints: dict[str, str] = {}

    def start(self, timeout: float = 30.0) -> Collector:
        self.lines = []
        self._signalled = False
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

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send a signal (stop() then only waits, unless told another signal)."""
        assert self.proc is not None
        self._signalled = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int | None = None, timeout: float = 60.0) -> int:
        """Stop with SIGTERM (or `sig`) unless already signalled; wait; the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None and (sig is not None or not self._signalled):
            self.proc.send_signal(signal.SIGTERM if sig is None else sig)
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


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class InProcessCollector:
    """What `tracesieve run` runs (`pipeline.service.Service`, from the same config files
    through the same loader), in the caller's event loop: for tests where no process
    boundary is under test. It starts in a few milliseconds and is ready when
    `Service.ready` (an event) is set, not when a log line shows.

    No process: no signals, no exit code, and the process-wide GC policy is left alone;
    tests of those start `Collector` (the CLI). `env` is applied while the config is
    loaded and the service starts. Relative paths in the config are relative to the
    test's working directory, not `workdir`: give absolute ones. `output` holds the
    `tracesieve` log records of its run (with several started at once, each sees all).
    Blocking helpers (`export_grpc`, `scrape`, `wait_for`) block the loop the service
    runs in: call them through `asyncio.to_thread`, or use `until`."""

    def __init__(
        self,
        config: dict[str, Any] | str,
        *,
        env: dict[str, str] | None = None,
        extra_configs: Sequence[str] = (),
        workdir: str | None = None,
    ) -> None:
        self.dir, self.config_path = _write_config(config, workdir)
        self.env = dict(env or {})
        self.extra_configs = list(extra_configs)
        self.service: Any = None
        self.endpoints: dict[str, str] = {}
        self.lines: list[str] = []
        self._handler: logging.Handler | None = None
        self._level = logging.NOTSET
        self._running = False

    async def start(self) -> InProcessCollector:
        from pipeline import config as config_mod
        from pipeline.registry import REGISTRY
        from pipeline.service import Service

        with _environ(self.env):
            cfg = config_mod.load([self.config_path, *self.extra_configs], REGISTRY)
            self.service = Service(cfg, REGISTRY, manage_gc=False)
            self._capture_logs(cfg.service.telemetry.logs.level)
            try:
                async with asyncio.timeout(30):
                    await self.service.start()
            except BaseException:
                self._release_logs()
                raise
        self._running = True
        await self.service.ready.wait()  # set by start(): nothing to wait for once it returned
        for what in self.service.endpoints:
            m = _LISTEN.search(f"listening: {what}")
            if m:
                self.endpoints[f"{m.group(1)}/{m.group(2)}"] = m.group(3)
        return self

    def _capture_logs(self, level: str) -> None:
        lines = self.lines

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(self.format(record) + "\n")

        handler = Keep()
        handler.setFormatter(logging.Formatter("%(levelname)-5s %(name)s: %(message)s"))
        logger = logging.getLogger("tracesieve")
        self._level = logger.level
        lvl = {"debug": logging.DEBUG, "warn": logging.WARNING, "error": logging.ERROR}
        logger.setLevel(lvl.get(level, logging.INFO))
        logger.addHandler(handler)
        self._handler = handler

    def _release_logs(self) -> None:
        if self._handler is not None:
            logger = logging.getLogger("tracesieve")
            logger.removeHandler(self._handler)
            logger.setLevel(self._level)
            self._handler = None

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def fatal(self) -> BaseException | None:
        """The error a component reported as fatal (a real collector would exit 1)."""
        return None if self.service is None else self.service._fatal

    def exposition(self) -> str:
        """What its /metrics would answer, read without HTTP (the loop is the test's)."""
        return str(self.service.telemetry.exposition().decode())

    def metrics(self) -> dict[str, float]:
        """Its Prometheus metrics, as `scrape` gives them, read without HTTP."""
        return _samples(self.exposition())

    async def stop(self) -> None:
        """The graceful stop a signal starts (within `service.shutdown_timeout`)."""
        running, self._running = self._running, False
        try:
            if running:
                await self.service.shutdown()
        finally:
            self._release_logs()

    async def __aenter__(self) -> InProcessCollector:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def until(predicate: Any, within: float = 20.0, interval: float = 0.05) -> bool:
    """`wait_for` for async tests: poll `predicate()` (a value, or an awaitable one) for
    up to `within` seconds without blocking the event loop."""

    async def check() -> bool:
        got = predicate()
        return bool(await got if inspect.isawaitable(got) else got)

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval)
    return await check()


class OTLPServer:
    """A real OTLP/gRPC TraceService server in a background thread, standing in for a
    backend: it records every request, and can be made slow (`delay` seconds per
    request), held (`hold()`/`release()`), or failing (`fail_with` a status code)."""

    def __init__(self, port: int = 0, delay: float = 0.0) -> None:
        self.port = port
        self.delay = delay
        self.fail_with: Any = None  # a grpc.StatusCode to answer with instead of OK
        self.requests: list[ExportTraceServiceRequest] = []
        self.calls = 0
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> OTLPServer:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._serve(started))
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                started.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _serve(self, started: threading.Event) -> None:
        import grpc

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(self._export)},
        )
        server.add_generic_rpc_handlers((handler,))
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        if self.port == 0:
            raise OSError("OTLPServer: cannot listen")
        await server.start()
        started.set()
        await self._stop.wait()
        await server.stop(0)

    async def _export(self, raw: bytes, context: Any) -> bytes:
        with self._lock:
            self.calls += 1
        if not self._open.is_set():
            await asyncio.to_thread(self._open.wait)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            await context.abort(self.fail_with, "OTLPServer told to fail")
        req = ExportTraceServiceRequest.FromString(raw)
        with self._lock:
            self.requests.append(req)
        return b""

    def hold(self) -> None:
        """Requests wait (unanswered) until `release()`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def spans(self) -> list[Span]:
        with self._lock:
            return spans_in(list(self.requests))

    @property
    def span_count(self) -> int:
        return len(self.spans())

    def stop(self) -> None:
        self.release()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> OTLPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def scrape(address: str) -> dict[str, float]:
    """Prometheus metrics from `http://address/metrics`, as {'name{a="b",...}': value}
    with labels sorted (a series absent means 0)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return _samples(text)


def _samples(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def metric(values: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the series of `name` whose labels include `labels`."""
    total = 0.0
    for k, v in values.items():
        n, _, rest = k.partition("{")
        if n != name:
            continue
        if all(f'{lk}="{lv}"' in rest for lk, lv in labels.items()):
            total += v
    return total


# path -> (inode, bytes decoded, requests): a file polled while it grows is decoded once
_JSON_READ: dict[str, tuple[int, int, list[ExportTraceServiceRequest]]] = {}


def read_json_lines(path: str) -> list[ExportTraceServiceRequest]:
    """Requests written by the `file` exporter in JSON format. A last line without its
    newline is being written (the exporter's buffer flushes it in parts): left out. What
    follows the last newline is read in one go: read line by line, a line half-written at
    one read would come back as its second half at the next. Lines decoded at an earlier
    call on the same file are not decoded again (tests poll growing files); a new or
    shorter file is read from the start."""
    from pipeline import otlpjson

    if not os.path.exists(path):
        return []
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        inode, done, requests = _JSON_READ.get(path, (st.st_ino, 0, []))
        if inode != st.st_ino or st.st_size < done:
            done, requests = 0, []
        fh.seek(done)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    requests = requests + [otlpjson.decode(ln) for ln in data[:end].splitlines() if ln.strip()]
    _JSON_READ[path] = (st.st_ino, done + end, requests)
    return list(requests)


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
    "InProcessCollector",
    "OTLPServer",
    "Sink",
    "attrs",
    "export_grpc",
    "export_http",
    "free_port",
    "kv",
    "make_span",
    "make_traces",
    "metric",
    "read_json_lines",
    "sample_request",
    "scrape",
    "settings",
    "signal",
    "span_index",
    "spans_in",
    "until",
    "wait_for",
]
