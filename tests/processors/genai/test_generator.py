"""The labelled trace generator: determinism, schemas, CLI, load stream."""

from __future__ import annotations

import json
import struct

import jsonschema_rs
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks import generator as gm
from benchmarks.generator import FaultRates, Generator, LoadStream


def test_deterministic_for_a_seed():
    a = [t.request().SerializeToString() for t in Generator(5).traces(30)]
    b = [t.request().SerializeToString() for t in Generator(5).traces(30)]
    c = [t.request().SerializeToString() for t in Generator(6).traces(30)]
    assert a == b and a != c


def test_shape_warmup_and_rates():
    g = Generator(1, rates=FaultRates.parse("all=0.5"), warmup=3)
    traces = list(g.traces(120))
    for t in traces:
        truth = t.truth
        assert 8 <= _tools(t) <= 41  # a tool retry adds one span
        assert truth["task_class"] in gm.TASK_CLASSES
        assert truth["spans"] == t.span_count
        if truth["warmup"]:
            assert truth["faults"] == [] and truth["expected"]["class"] == "clean"
    assert sum(t.truth["warmup"] for t in traces) == 3 * len(gm.TASK_CLASSES)
    assert {t.truth["convention"] for t in traces} == set(gm.CONVENTIONS)
    classes = {t.truth["expected"]["class"] for t in traces}
    assert classes == {"clean", "noisy", "corrupted", "failed"}


def _tools(t: gm.GeneratedTrace) -> int:
    names = ("execute_tool ", ".tool", "tool.invoke:")
    n = 0
    for rs in t.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                if (
                    s.name.startswith((names[0], names[2]))
                    or s.name.endswith(names[1])
                    or any(
                        kv.key == "openinference.span.kind" and kv.value.string_value == "TOOL"
                        for kv in s.attributes
                    )
                ):
                    n += 1
    return n


def test_expected_classes_follow_the_rules():
    assert gm.expected_class([], False) == "clean"
    assert gm.expected_class(["slow"], False) == "noisy"
    assert gm.expected_class(["slow", "swallowed_error"], False) == "corrupted"
    assert gm.expected_class(["tool_schema_invalid"], True) == "failed"
    g = Generator(2, warmup=0)
    t = g.trace("otel_genai", faults=["swallowed_error", "root_failure"])
    assert t.truth["expected"] == {"class": "failed", "reasons": []}
    t = g.trace("bifrost", faults=["fallback"])
    assert t.truth["expected"]["reasons"] == ["fallback", "provider_mismatch"]
    t = g.trace("openinference", faults=["fallback"])
    assert t.truth["expected"]["reasons"] == ["fallback"]
    assert "multi_model" in t.truth["expected_strict"]["reasons"]


def test_the_guides_faults_only_in_its_convention():
    """`eval_failed`, `policy_blocked` and `governance` are drawn for `agent_guide` traces
    only (after the other faults: a generator without `agent_guide` draws none of them)."""
    old = [c for c in gm.CONVENTIONS if c != "agent_guide"]
    a = Generator(8, rates=FaultRates.parse("all=0.3"), conventions=old, warmup=0)
    seen: set[str] = set()
    for t in a.traces(60):
        seen.update(t.truth["faults"])
        assert t.truth["evals"] is None and t.truth["policy_blocked"] == []
        assert t.truth["governance"] == {"quota_exceeded": 0, "key_rotated": 0}
    assert not seen & set(gm.GUIDE_FAULTS)
    g = Generator(2, warmup=0)
    t = g.trace("agent_guide", faults=["eval_failed"])
    assert t.truth["expected"]["reasons"] == ["eval_failed"]
    assert t.truth["expected"]["class"] == "corrupted"
    assert t.truth["evals"]["failed"] >= 1
    t = g.trace("agent_guide", faults=["policy_blocked", "governance"])
    assert t.truth["expected"] == {"class": "noisy", "reasons": ["policy_blocked"]}
    assert len(t.truth["policy_blocked"]) == 1
    assert sum(t.truth["governance"].values()) >= 1
    t = g.trace("otel_genai", faults=["eval_failed", "governance"])  # not its vocabulary
    assert t.truth["faults"] == [] and t.truth["expected"]["class"] == "clean"


def test_tool_schemas_accept_valid_and_reject_invalid_results(tmp_path):
    paths = gm.write_tool_schemas(str(tmp_path))
    assert len(paths) == len(gm.TOOL_SCHEMAS)
    import random

    r = random.Random(0)
    for name in gm.TOOL_SCHEMAS:
        with open(tmp_path / f"{name}.json") as fh:
            validator = jsonschema_rs.validator_for(json.load(fh))
        for _ in range(5):
            assert validator.is_valid(gm._valid_result(name, r)), name
            assert not validator.is_valid(gm._invalid_result(name, r)), name


def test_invalid_results_in_traces_are_the_labelled_ones():
    g = Generator(9, warmup=0)
    t = g.trace("openinference", faults=["schema_invalid"])
    key = t.truth["tool_result_key"]
    bad = set(t.truth["tool_schema_invalid"])
    assert len(bad) == 1
    validators = {n: jsonschema_rs.validator_for(s) for n, s in gm.TOOL_SCHEMAS.items()}
    for rs in t.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                a = {kv.key: kv.value.string_value for kv in s.attributes}
                if a.get("openinference.span.kind") != "TOOL" or key not in a:
                    continue
                ok = validators[a["tool.name"]].is_valid(json.loads(a[key]))
                assert ok == (s.span_id.hex() not in bad)


def test_cli(tmp_path):
    out, truth, schemas = tmp_path / "t.pb", tmp_path / "truth.jsonl", tmp_path / "schemas"
    argv = ["--traces", "12", "--seed", "3", "--out", str(out), "--truth", str(truth)]
    assert (
        gm.main([*argv, "--schemas", str(schemas), "--rates", "all=0.3", "--per-request", "5"]) == 0
    )
    data = out.read_bytes()
    reqs, spans = [], 0
    while data:
        (n,) = struct.unpack(">I", data[:4])
        reqs.append(ExportTraceServiceRequest.FromString(data[4 : 4 + n]))
        data = data[4 + n :]
    assert len(reqs) == 3
    lines = [json.loads(x) for x in truth.read_text().splitlines()]
    assert len(lines) == 12
    spans = sum(len(ss.spans) for r in reqs for rs in r.resource_spans for ss in rs.scope_spans)
    assert spans == sum(x["spans"] for x in lines)
    assert (schemas / "web_search.json").exists()
    assert gm.main([*argv, "--format", "json", "--out", str(tmp_path / "t.jsonl")]) == 0


def test_load_stream_varies_trace_ids():
    ls = LoadStream(seed=1, templates=10)
    total = 0
    ids: set[bytes] = set()
    for raw, n in ls.requests(5000, spans_per_request=1000):
        req = ExportTraceServiceRequest.FromString(raw)
        count = 0
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                count += len(ss.spans)
                ids.update(s.trace_id for s in ss.spans)
        assert count == n
        total += n
    assert total >= 5000
    assert len(ids) > 10  # more traces than templates


def test_load_stream_mixes_faulty_traces_in_from_the_start():
    ls = LoadStream(seed=1, templates=500)
    first = [truth for _, _, _, truth in ls.templates[:50]]
    assert any(t["faults"] for t in first), "the first templates are all warm-up traces"
