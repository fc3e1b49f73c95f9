"""`tracesieve audit` through the CLI on dumps written the way real ones are: our `file`
exporter in both formats, plain, gzip and zstd, the Collector's zstd framing, stdin, one
OTLP JSON document; the generator's labelled traces (the audit's counts are its truth),
traces interleaved and out of order, several workers and partitions, the enriched output.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline import otlpjson
from pipeline.audit.chain import DEFAULTS
from pipeline.audit.report import schema
from pipeline.testing import attrs
from tests.audit.helpers import (
    ROOT,
    audit,
    audit_bytes_stdin,
    calls,
    classes,
    config_with_schemas,
    generated,
    gzipped,
    reasons,
    report,
    requests_of,
    shuffled_requests,
    truth_calls,
    truth_classes,
    truth_reasons,
    write_with_exporter,
    zstd_frames,
    zstd_whole,
)

N_TRACES = 240


@pytest.fixture(scope="module")
def traces() -> list[Any]:
    return generated(N_TRACES, seed=11)


@pytest.fixture(scope="module")
def dumps(traces: list[Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dumps")
    reqs = requests_of(traces, per_request=16)
    json_path = write_with_exporter(d / "spans.jsonl", reqs, "json")
    proto_path = write_with_exporter(d / "spans.pb", reqs, "proto")
    # the name says nothing: formats are told from the content
    return {
        "json": json_path,
        "proto": proto_path,
        "json.gz": gzipped(json_path),
        "proto.gz": gzipped(proto_path),
        "json.zst": zstd_whole(json_path),
        "proto.zst": zstd_whole(proto_path),
        "json-frames.zst": zstd_frames(
            d / "collector-json.bin", [otlpjson.encode(r) for r in reqs]
        ),
        "proto-frames.zst": zstd_frames(
            d / "collector-proto.bin", [r.SerializeToString() for r in reqs]
        ),
    }


def _run(tmp_path: Path, *inputs: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    out = tmp_path / "report.json"
    res = audit(
        *inputs, *config_with_schemas(tmp_path), "--report-json", str(out), "--quiet", *extra
    )
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return report(out)


@pytest.mark.parametrize(
    "kind",
    [
        "json",
        "proto",
        "json.gz",
        "proto.gz",
        "json.zst",
        "proto.zst",
        "json-frames.zst",
        "proto-frames.zst",
    ],
)
def test_every_dump_format_gives_the_generators_truth(kind, dumps, traces, tmp_path):
    rep = _run(tmp_path, str(dumps[kind]))
    assert classes(rep) == truth_classes(traces)
    assert reasons(rep) == truth_reasons(traces)
    # each logical call once: not again by its failed sibling attempts, a second
    # instrumentation's twin or the gateway's server span under it
    assert calls(rep) == truth_calls(traces)
    spans = sum(t.span_count for t in traces)
    assert rep["totals"]["traces"] == N_TRACES
    assert rep["totals"]["spans_read"] == rep["totals"]["spans_audited"] == spans
    assert rep["totals"]["spans_rejected"] == 0
    fmt = rep["inputs"][0]["format"]
    assert fmt == {"json": "json_lines", "proto": "proto_frames"}.get(
        kind.split(".")[0], "zstd_frames"
    )
    jsonschema_rs.validator_for(schema()).validate(rep)


def test_interleaved_and_out_of_order_traces_are_audited_the_same(traces, dumps, tmp_path):
    messy = write_with_exporter(tmp_path / "messy.pb", shuffled_requests(traces, seed=5), "proto")
    ordered = _run(tmp_path, str(dumps["proto"]))
    rep = _run(tmp_path, str(messy), extra=("--workers", "2"))
    assert classes(rep) == truth_classes(traces)
    assert reasons(rep) == truth_reasons(traces)
    for key in (
        "classes",
        "reasons",
        "requested_served",
        "fallback_chains",
        "cache_hits",
        "tool_retries",
        "tool_schema_invalid",
        "four_point_filter",
    ):
        assert rep[key] == ordered[key], key
    assert rep["problems"]["traces_without_root"] == 0


def test_workers_and_partitions_do_not_change_the_report(dumps, tmp_path):
    one = _run(tmp_path, str(dumps["json"]), extra=("--workers", "1"))
    many = _run(tmp_path, str(dumps["json"]), extra=("--workers", "3", "--partition-mib", "1"))
    assert many["run"]["partitions"] >= 3
    for key in ("classes", "reasons", "requested_served", "task_classes", "tool_schema_invalid"):
        assert many[key] == one[key], key


def test_several_inputs_add_up(dumps, traces, tmp_path):
    # the same traces twice: a trace's spans twice over are still one trace
    rep = _run(tmp_path, str(dumps["json"]), str(dumps["proto.gz"]))
    assert rep["totals"]["traces"] == N_TRACES
    assert rep["totals"]["spans_read"] == 2 * sum(t.span_count for t in traces)
    assert [i["compression"] for i in rep["inputs"]] == [None, "gzip"]


def test_stdin_and_a_single_json_document(traces, tmp_path):
    req = requests_of(traces[:30], per_request=30)[0]
    doc = json.dumps(otlpjson.to_dict(req), indent=2).encode()  # pretty-printed, one document
    path = tmp_path / "one.json"
    path.write_bytes(doc)
    rep = _run(tmp_path, str(path))
    assert rep["inputs"][0]["format"] == "json_document"
    assert classes(rep) == truth_classes(traces[:30])
    out = tmp_path / "stdin.json"
    res = audit_bytes_stdin(
        "-",
        "--report-json",
        str(out),
        *config_with_schemas(tmp_path),
        stdin=req.SerializeToString(),
    )
    assert res.returncode == 0, res.stderr
    rep = report(out)
    assert rep["inputs"][0]["format"] == "proto_message"
    assert classes(rep) == truth_classes(traces[:30])


def _json_lines(path: Path) -> list[ExportTraceServiceRequest]:
    return [otlpjson.decode(line) for line in path.read_bytes().splitlines() if line.strip()]


def _frames(path: Path) -> list[ExportTraceServiceRequest]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        out.append(ExportTraceServiceRequest.FromString(data[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return out


def test_output_keeps_the_chosen_classes_enriched(dumps, traces, tmp_path):
    out = tmp_path / "clean.jsonl"
    rep = _run(
        tmp_path,
        str(dumps["proto"]),
        extra=("--output", str(out), "--keep", "clean", "--workers", "2"),
    )
    spans = [
        s
        for r in _json_lines(out)
        for rs in r.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    roots = [s for s in spans if not s.parent_span_id]
    assert len(roots) == classes(rep)["clean"] == truth_classes(traces)["clean"]
    assert {attrs(s)["sieve.trace.class"] for s in roots} == {"clean"}
    kept_ids = {s.trace_id for s in roots}
    want = sum(t.span_count for t in traces if t.trace_id in kept_ids)
    assert len(spans) == want
    # the enrichment is in the output: LLM call spans carry what served them
    assert any("sieve.provider.served" in attrs(s) for s in spans)
    # every class, as length-prefixed protobuf (by the extension)
    out_pb = tmp_path / "all.binpb"
    rep = _run(tmp_path, str(dumps["json"]), extra=("--output", str(out_pb)))
    got = _frames(out_pb)
    assert (
        sum(len(ss.spans) for r in got for rs in r.resource_spans for ss in rs.scope_spans)
        == rep["totals"]["spans_audited"]
    )
    assert rep["run"]["output_format"] == "proto"


def test_offline_medians_say_what_they_rest_on(dumps, tmp_path):
    rep = _run(tmp_path, str(dumps["proto"]))
    slow_total = 0
    for tc in rep["task_classes"]:
        cm = tc["clean_median"]
        assert cm["clean_traces"] > 0
        assert cm["used"] == (cm["clean_traces"] >= 20)
        assert cm["slow_above_seconds"] == pytest.approx(cm["seconds"] * 1.5, rel=1e-4)
        slow_total += tc["slow"]
    assert slow_total == reasons(rep).get("slow", 0)
    # the slow ones went through the processors again with the medians
    assert rep["run"]["second_pass_traces"] == slow_total


def test_the_terminal_report_is_plain_when_stdout_is_not_a_terminal(dumps, tmp_path):
    res = audit(str(dumps["proto"]), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "\x1b[" not in res.stdout
    for title in (
        "Totals",
        "Audit",
        "Reasons",
        "Requested -> served",
        "fallback chains",
        "Cache hits",
        "Tool retries",
        "Task classes",
        "Problems in the input",
    ):
        assert title in res.stdout, title
    assert res.stderr == ""  # no progress bar off a terminal, no warning


def test_the_defaults_are_make_runs_processors():
    import yaml

    local = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    mine = {k: (v or {}) for k, v in local["processors"].items() if k in DEFAULTS}
    assert mine == DEFAULTS


def test_an_enriched_dump_audits_the_same(dumps, traces, tmp_path):
    """What `make run` writes (spans already enriched and classified by a tracesieve)
    audits to the same verdicts: what an earlier tracesieve wrote is read, not doubted."""
    enriched = tmp_path / "enriched.jsonl"
    first = _run(tmp_path, str(dumps["proto"]), extra=("--output", str(enriched)))
    again = _run(tmp_path, str(enriched))
    for key in (
        "classes",
        "reasons",
        "requested_served",
        "fallback_chains",
        "cache_hits",
        "tool_retries",
        "task_classes",
    ):
        assert again[key] == first[key], key
    assert classes(again) == truth_classes(traces)
