"""Dumps for the audit tests, written the way real ones are (our `file` exporter; the
Collector's zstd framing by hand), and the command run as a user runs it."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import random
import struct
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import zstandard
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.generator import FaultRates, GeneratedTrace, Generator, write_tool_schemas
from pipeline.configtypes import decode
from pipeline.exporters.file import FileExporter, FileExporterConfig
from pipeline.pdata import Traces
from pipeline.testing import FakeHost, settings

ROOT = Path(__file__).resolve().parents[2]


def generated(n: int, seed: int = 3, rates: FaultRates | None = None) -> list[GeneratedTrace]:
    return list(Generator(seed, rates=rates or FaultRates()).traces(n))


def requests_of(
    traces: Sequence[GeneratedTrace], per_request: int = 20
) -> list[ExportTraceServiceRequest]:
    out = []
    for i in range(0, len(traces), per_request):
        req = ExportTraceServiceRequest()
        for t in traces[i : i + per_request]:
            req.resource_spans.extend(t.resource_spans)
        out.append(req)
    return out


def shuffled_requests(
    traces: Sequence[GeneratedTrace], seed: int = 1, spans_per_request: int = 37
) -> list[ExportTraceServiceRequest]:
    """Every span of every trace, one resource/scope group per span, in a random order
    (children before parents, traces interleaved), cut into requests."""
    r = random.Random(seed)
    pieces = []
    for t in traces:
        for rs in t.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    pieces.append((rs, ss, span))
    r.shuffle(pieces)
    out = []
    for i in range(0, len(pieces), spans_per_request):
        req = ExportTraceServiceRequest()
        for rs, ss, span in pieces[i : i + spans_per_request]:
            out_rs = req.resource_spans.add()
            out_rs.resource.CopyFrom(rs.resource)
            out_ss = out_rs.scope_spans.add()
            out_ss.scope.CopyFrom(ss.scope)
            out_ss.spans.append(span)
        out.append(req)
    return out


def write_with_exporter(
    path: Path, requests: Iterable[ExportTraceServiceRequest], fmt: str
) -> Path:
    """What our `file` exporter writes (`format: json` or `proto`) for these requests."""
    cfg, errs = decode({"path": str(path), "format": fmt}, FileExporterConfig, "exporters::file")
    assert cfg is not None and not errs, errs
    exp = FileExporter(settings(kind="exporter", id="file"), cfg)

    async def run() -> None:
        await exp.start(FakeHost())
        for req in requests:
            await exp.consume_traces(Traces(req))
        await exp.shutdown()

    # in a thread of its own: the browser tests' Playwright runs an event loop in this one
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=main)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return path


def gzipped(path: Path) -> Path:
    out = path.with_name(path.name + ".gz")
    out.write_bytes(gzip.compress(path.read_bytes()))
    return out


def zstd_whole(path: Path) -> Path:
    out = path.with_name(path.name + ".zst")
    out.write_bytes(zstandard.ZstdCompressor().compress(path.read_bytes()))
    return out


def zstd_frames(path: Path, messages: Iterable[bytes]) -> Path:
    """The Collector's `file` exporter with `compression: zstd`: each message (JSON or
    protobuf) compressed on its own, preceded by its 4-byte big-endian length."""
    c = zstandard.ZstdCompressor()
    with open(path, "wb") as fh:
        for m in messages:
            z = c.compress(m)
            fh.write(struct.pack(">I", len(z)) + z)
    return path


def schemas_dir(tmp: Path) -> Path:
    d = tmp / "schemas"
    if not d.exists():
        d.mkdir()
        write_tool_schemas(str(d))
    return d


def config_with_schemas(tmp: Path) -> list[str]:
    """`--config` arguments: make run's config with the generator's tool schemas."""
    return [
        "--config",
        str(ROOT / "configs" / "local.yaml"),
        "--config",
        f"yaml:processors::cleanliness::tool_schemas: {schemas_dir(tmp)}",
    ]


def audit(
    *args: str, stdin: bytes | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`tracesieve audit ARGS` through the CLI, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "audit", *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def audit_bytes_stdin(
    *args: str, stdin: bytes, timeout: float = 180
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "audit", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


def report(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(path.read_text())
    return out


def classes(rep: dict[str, Any]) -> dict[str, int]:
    return {c["class"]: c["traces"] for c in rep["classes"]}


def reasons(rep: dict[str, Any]) -> dict[str, int]:
    return {r["reason"]: r["traces"] for r in rep["reasons"] if r["traces"]}


def truth_classes(traces: Sequence[GeneratedTrace]) -> dict[str, int]:
    got = Counter(t.truth["expected"]["class"] for t in traces)
    return {c: got.get(c, 0) for c in ("clean", "noisy", "corrupted", "failed")}


def truth_reasons(traces: Sequence[GeneratedTrace]) -> dict[str, int]:
    return dict(Counter(r for t in traces for r in t.truth["expected"]["reasons"]))


def truth_calls(traces: Sequence[GeneratedTrace]) -> dict[tuple[str, str], int]:
    """Logical LLM calls by ("provider/model" requested, served), as the generator made them."""
    return dict(
        Counter((c["requested"], c["served"]) for t in traces for c in t.truth["llm_calls"])
    )


def calls(rep: dict[str, Any]) -> dict[tuple[str, str], int]:
    """The report's requested -> served matrix in `truth_calls`'s form."""
    got: Counter[tuple[str, str]] = Counter()
    for r in rep["requested_served"]:
        asked = f"{r['requested_provider']}/{r['requested_model']}"
        got[(asked, f"{r['served_provider']}/{r['served_model']}")] += r["calls"]
    return dict(got)
