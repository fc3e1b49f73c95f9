"""Bad input loses nothing silently: a corrupt line, a truncated frame, a garbage file, a
broken gzip stream, spans without ids are counted and listed with where they are, the rest
is audited, exit 0 with a warning (1 with --strict); an unreadable path or an input of
unknown format is a one-line error, exit 2, no traceback."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import otlpjson
from tests.audit.helpers import (
    audit,
    classes,
    generated,
    report,
    requests_of,
    truth_classes,
    write_with_exporter,
)

GARBAGE = bytes(range(256)) * 8 + b"not a trace dump"


@pytest.fixture(scope="module")
def traces() -> list[Any]:
    return generated(60, seed=21)


@pytest.fixture(scope="module")
def reqs(traces: list[Any]) -> list[ExportTraceServiceRequest]:
    return requests_of(traces, per_request=10)  # 6 requests


def _audit(tmp_path: Path, *args: str) -> tuple[Any, dict[str, Any]]:
    out = tmp_path / "r.json"
    res = audit(*args, "--report-json", str(out), "--quiet")
    assert "Traceback" not in res.stderr, res.stderr
    return res, (report(out) if out.exists() else {})


def _one_line_error(res: Any) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert res.stdout == ""
    return lines[0]


def test_a_corrupt_line_is_counted_listed_and_the_rest_audited(tmp_path, traces, reqs):
    path = write_with_exporter(tmp_path / "d.jsonl", reqs, "json")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"resourceSpans": [{"scopeSpans": [ this is not json\n'
    path.write_bytes(b"".join(lines))
    res, rep = _audit(tmp_path, str(path))
    assert res.returncode == 0
    assert "warning" in res.stderr and "1 bad lines" in res.stderr
    p = rep["problems"]
    assert p["bad_lines"] == 1
    assert p["examples"][0]["where"] == f"{path}:3"
    assert "invalid JSON" in p["examples"][0]["problem"]
    kept = traces[:20] + traces[30:]  # the third request held traces 20 to 29
    assert rep["totals"]["traces"] == len(kept)
    assert rep["totals"]["spans_audited"] == sum(t.span_count for t in kept)
    assert rep["totals"]["messages_rejected"] == 1
    # --strict: any input problem exits 1
    res, _ = _audit(tmp_path, str(path), "--strict")
    assert res.returncode == 1


def test_a_truncated_frame_is_counted_and_what_came_before_audited(tmp_path, traces, reqs):
    path = write_with_exporter(tmp_path / "d.pb", reqs, "proto")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # the last frame is cut short
    res, rep = _audit(tmp_path, str(path))
    assert res.returncode == 0
    p = rep["problems"]
    assert p["bad_frames"] == 1
    ex = p["examples"][0]
    assert ex["where"].startswith(f"{path}: frame 6 (byte ")
    assert "truncated" in ex["problem"]
    assert rep["totals"]["traces"] == 50
    assert classes(rep) == truth_classes(traces[:50])


def test_a_frame_that_does_not_decode_is_skipped_and_the_next_ones_read(tmp_path, traces, reqs):
    good = [r.SerializeToString() for r in reqs]
    bad = b"\x0a\x05\x12\x03\xff\xff"  # a resource_spans field whose scope_spans runs off
    with open(tmp_path / "d.bin", "wb") as fh:
        for i, m in enumerate(good):
            if i == 1:
                fh.write(struct.pack(">I", len(bad)) + bad)
            fh.write(struct.pack(">I", len(m)) + m)
    res, rep = _audit(tmp_path, str(tmp_path / "d.bin"))
    assert res.returncode == 0
    assert rep["problems"]["bad_frames"] == 1
    assert rep["problems"]["examples"][0]["where"].startswith(f"{tmp_path / 'd.bin'}: frame 2 ")
    assert rep["totals"]["traces"] == 60


def test_a_garbage_file_among_others_is_counted(tmp_path, traces, reqs):
    d = tmp_path / "dumps"
    d.mkdir()
    write_with_exporter(d / "a.jsonl", reqs, "json")
    (d / "README.txt").write_bytes(GARBAGE)
    broken = gzip.compress(b"".join(otlpjson.encode(r) + b"\n" for r in reqs))
    (d / "b.jsonl.gz").write_bytes(broken[: len(broken) // 2])  # a gzip stream cut in half
    for args in ([str(d)], [str(d / "*")]):
        res, rep = _audit(tmp_path, *args)
        assert res.returncode == 0, res.stderr
        p = rep["problems"]
        assert p["bad_files"] == 2
        wheres = {e["where"] for e in p["examples"]}
        assert str(d / "README.txt") in wheres
        assert any(w.startswith(f"{d / 'b.jsonl.gz'}: byte ") for w in wheres)
        # all of a.jsonl, and what the half gzip stream held before it broke
        assert rep["totals"]["traces"] == 60
        formats = {Path(i["name"]).name: i["format"] for i in rep["inputs"]}
        assert formats == {
            "README.txt": "garbage",
            "a.jsonl": "json_lines",
            "b.jsonl.gz": "json_lines",
        }
    res, _ = _audit(tmp_path, str(d), "--strict")
    assert res.returncode == 1


def test_spans_without_ids_are_rejected_and_traces_without_a_root_counted(tmp_path, traces, reqs):
    req = ExportTraceServiceRequest()
    req.CopyFrom(reqs[0])
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[1].trace_id = b""  # no trace id
    spans[2].span_id = b"\x01\x02"  # a span id of 2 bytes
    root_of_first = next(s for s in spans if not s.parent_span_id)
    root_tid = root_of_first.trace_id
    root_of_first.trace_id = (
        b"\x07" * 16
    )  # the first trace loses its root (it becomes its own trace)
    path = write_with_exporter(tmp_path / "d.pb", [req, *reqs[1:]], "proto")
    res, rep = _audit(tmp_path, str(path))
    assert res.returncode == 0
    t = rep["totals"]
    assert t["spans_rejected"] == 2
    assert t["spans_read"] == t["spans_audited"] + 2
    p = rep["problems"]
    assert p["spans_without_ids"] == 2
    assert any(
        e["kind"] == "spans_without_ids" and "trace id of 0 bytes" in e["problem"]
        for e in p["examples"]
    )
    assert p["traces_without_root"] == 1
    assert p["traces_without_root_examples"] == [root_tid.hex()]
    assert "spans without usable ids" in res.stderr


def test_an_unreadable_path_is_a_one_line_error(tmp_path):
    line = _one_line_error(audit(str(tmp_path / "missing.jsonl")))
    assert "missing.jsonl" in line and "No such file" in line
    line = _one_line_error(audit(str(tmp_path / "nothing-*.pb")))
    assert "no file matches" in line


def test_an_unknown_format_is_a_one_line_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(GARBAGE)
    line = _one_line_error(audit(str(path)))
    assert "unknown format" in line and "notes.txt" in line


def test_usage_errors_exit_2(tmp_path):
    good = tmp_path / "x.jsonl"
    good.write_bytes(b"")
    assert "--keep" in _one_line_error(audit(str(good), "--keep", "clean"))
    assert "--keep" in _one_line_error(
        audit(str(good), "--output", str(tmp_path / "o.jsonl"), "--keep", "shiny")
    )
    assert "--report-json" in _one_line_error(
        audit(str(good), "--report-json", str(tmp_path / "no" / "r.json"))
    )
    res = audit(str(good), "--config", str(tmp_path / "none.yaml"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.pb"
        locked.write_bytes(b"")
        locked.chmod(0)
        assert "Permission denied" in _one_line_error(audit(str(locked)))
