"""`tracesieve audit DUMP --dataset FILE` through the CLI, on the generator's traces with
their conversations on the LLM spans (`Generator(content=True)`) in every convention:
every example checked against the generator's ground truth, and the options (per call,
split, dedup, fallbacks, served models, hf_chat) against what they promise."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.generator import CONVENTIONS, FaultRates, GeneratedTrace, Generator
from tests.audit.helpers import audit, requests_of, schemas_dir, write_with_exporter
from tests.dataset.validators import check_hf_chat, check_hf_rows, check_openai_chat, read_lines

N = 260  # about 20 traces a convention; each task class gets past its 25 fault-free warm-up ones


def config(tmp: Path, **dataset: Any) -> str:
    """A config whose pipeline ends in a `dataset` exporter with these options."""
    enrich = ["provider_reconciliation", "cache_tagging", "fallback_chain"]
    cfg = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {
            "groupbytrace": {},
            **{p: {} for p in enrich},
            "cleanliness": {"tool_schemas": str(schemas_dir(tmp))},
        },
        "exporters": {"dataset": {"path": str(tmp / "unused.jsonl"), **dataset}},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["groupbytrace", *enrich, "cleanliness"],
                    "exporters": ["dataset"],
                }
            }
        },
    }
    path = tmp / f"config-{hashlib.sha1(repr(dataset).encode()).hexdigest()[:8]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[GeneratedTrace]]:
    tmp = tmp_path_factory.mktemp("dump")
    traces = list(Generator(11, content=True).traces(N))
    write_with_exporter(tmp / "dump.pb", requests_of(traces), "proto")
    return tmp, traces


def run(tmp: Path, dump_path: Path, out: Path, *extra: str, **options: Any) -> dict[str, Any]:
    report = tmp / f"{out.stem}-report.json"
    got = audit(
        str(dump_path),
        "--config",
        config(tmp, **options),
        "--dataset",
        str(out),
        "--report-json",
        str(report),
        "--quiet",
        *extra,
    )
    assert got.returncode == 0, got.stderr
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def canonical(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        c: dict[str, Any] = {"role": m["role"], "content": m.get("content") or None}
        calls = m.get("tool_calls")
        if calls:
            c["tool_calls"] = [
                (
                    t["id"],
                    t["function"]["name"],
                    a if isinstance(a := t["function"]["arguments"], dict) else json.loads(a),
                )
                for t in calls
            ]
        if m["role"] == "tool":
            c["tool_call_id"] = m["tool_call_id"]
        out.append(c)
    return out


def clean_truths(traces: list[GeneratedTrace]) -> dict[str, dict[str, Any]]:
    return {t.truth["trace_id"]: t.truth for t in traces if t.truth["expected"]["class"] == "clean"}


def test_examples_are_the_ground_truth_conversations(dump, tmp_path):
    tmp, traces = dump
    out = tmp_path / "train.jsonl"
    report = run(tmp, tmp / "dump.pb", out, "--workers", "2")
    examples = read_lines(str(out))
    prov = read_lines(str(tmp_path / "train.provenance.jsonl"))
    truths = clean_truths(traces)
    # one example per clean trace (one conversation each), none from another
    assert len(examples) == len(prov) == len(truths)
    assert {p["trace_id"] for p in prov} == set(truths)
    seen_conventions = set()
    for ex, p in zip(examples, prov, strict=True):
        truth = truths[p["trace_id"]]
        conv = truth["conversation"]
        seen_conventions.add(truth["convention"])
        assert canonical(ex["messages"]) == canonical(conv["messages"]), truth["convention"]
        assert ex.get("tools", []) == conv["tools"], truth["convention"]
        assert check_openai_chat(ex) == [], truth["convention"]
        # provenance: who served each assistant turn, the calls, the verdict
        assert [t["span_id"] for t in p["turns"]] == [t["span_id"] for t in conv["turns"]]
        assert [f"{t['provider']}/{t['model']}" for t in p["turns"]] == [
            t["served"] for t in conv["turns"]
        ]
        assert p["span_ids"] == [t["span_id"] for t in conv["turns"]]
        assert (p["class"], p["reasons"]) == ("clean", [])
        assert p["task_class"] == truth["task_class"]
        assert p["service"] == "agent-app"
    assert seen_conventions == set(CONVENTIONS)
    # in the order of the traces' start
    assert [p["start"] for p in prov] == sorted(p["start"] for p in prov)
    ds = report["dataset"]
    assert ds["examples"] == {"train": len(truths), "validation": 0}
    assert ds["traces"]["selected"] == len(truths)
    assert ds["traces"]["class"] == N - len(truths)
    assert ds["files"] == [str(out)]


def test_one_example_per_call(dump, tmp_path):
    tmp, traces = dump
    out = tmp_path / "calls.jsonl"
    report = run(tmp, tmp / "dump.pb", out, per="call")
    examples = read_lines(str(out))
    prov = read_lines(str(tmp_path / "calls.provenance.jsonl"))
    truths = clean_truths(traces)
    # each successful call: its input (the conversation so far) and its answer
    expected = {}
    for t in truths.values():
        conv = t["conversation"]["messages"]
        for call in t["llm_calls"]:
            k = call["input_messages"]
            expected[(t["trace_id"], call["span_id"])] = [
                canonical(conv[: k + 1]),
                t["conversation"]["tools"],
            ]
    got = {}
    for ex, p in zip(examples, prov, strict=True):
        key = (p["trace_id"], p["turns"][-1]["span_id"])
        assert key not in got
        got[key] = [canonical(ex["messages"]), ex.get("tools", [])]
        assert got[key] == expected[key]
        assert check_openai_chat(ex) == []
    # first calls of traces can be alike (the same task, plan and tools): written once
    distinct = {json.dumps(v) for v in expected.values()}
    assert len(got) == len(distinct) < len(expected)
    assert {json.dumps(v) for v in got.values()} == distinct
    assert report["dataset"]["skipped"]["duplicate"] == len(expected) - len(distinct)


def test_the_same_files_for_any_number_of_workers(dump, tmp_path):
    tmp, _ = dump
    one, three = tmp_path / "one.jsonl", tmp_path / "three.jsonl"
    run(tmp, tmp / "dump.pb", one, "--workers", "1", "--partition-mib", "1")
    run(tmp, tmp / "dump.pb", three, "--workers", "3", "--partition-mib", "1")
    assert one.read_bytes() == three.read_bytes()
    assert (tmp_path / "one.provenance.jsonl").read_bytes() == (
        tmp_path / "three.provenance.jsonl"
    ).read_bytes()


def test_split_by_trace_id_is_deterministic(dump, tmp_path):
    tmp, traces = dump
    out = tmp_path / "s.jsonl"
    report = run(tmp, tmp / "dump.pb", out, split={"validation": 0.3})
    val = tmp_path / "s.validation.jsonl"
    train_p = read_lines(str(tmp_path / "s.provenance.jsonl"))
    val_p = read_lines(str(tmp_path / "s.validation.provenance.jsonl"))
    assert len(read_lines(str(out))) == len(train_p)
    assert len(read_lines(str(val))) == len(val_p)
    truths = clean_truths(traces)
    assert {p["trace_id"] for p in train_p} | {p["trace_id"] for p in val_p} == set(truths)

    def share(tid: str) -> float:
        h = hashlib.blake2b(bytes.fromhex(tid), digest_size=8).digest()
        return int.from_bytes(h, "big") / 2**64

    assert all(share(p["trace_id"]) < 0.3 for p in val_p)
    assert all(share(p["trace_id"]) >= 0.3 for p in train_p)
    assert 0 < len(val_p) < len(train_p)
    assert report["dataset"]["examples"] == {"train": len(train_p), "validation": len(val_p)}
    # again: the same files
    first = (out.read_bytes(), val.read_bytes())
    run(tmp, tmp / "dump.pb", out, split={"validation": 0.3})
    assert (out.read_bytes(), val.read_bytes()) == first


def test_identical_examples_are_written_once(dump, tmp_path):
    """The dump twice over, the copy under other trace ids: the same conversations."""
    tmp, traces = dump
    copies = []
    for t in traces:
        new_id = hashlib.md5(t.trace_id).digest()
        rs = [
            type(r).FromString(r.SerializeToString().replace(t.trace_id, new_id))
            for r in t.resource_spans
        ]
        copies.append(GeneratedTrace(new_id, rs, t.truth))
    write_with_exporter(tmp_path / "twice.pb", requests_of([*traces, *copies]), "proto")
    out = tmp_path / "d.jsonl"
    report = run(tmp, tmp_path / "twice.pb", out)
    truths = clean_truths(traces)
    lines = out.read_bytes().splitlines()
    assert len(lines) == len(set(lines)) == len(truths)
    prov = read_lines(str(tmp_path / "d.provenance.jsonl"))
    assert len({p["hash"] for p in prov}) == len(prov)
    assert report["dataset"]["skipped"]["duplicate"] == len(truths)
    assert report["dataset"]["traces"]["selected"] == 2 * len(truths)


@pytest.fixture(scope="module")
def fallbacks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[GeneratedTrace]]:
    """Traces with a fallback (and no other fault) past the warm-up."""
    tmp = tmp_path_factory.mktemp("fallbacks")
    rates = FaultRates.none()
    rates.fallback = 1.0
    traces = list(Generator(5, content=True, rates=rates).traces(130))
    write_with_exporter(tmp / "dump.pb", requests_of(traces), "proto")
    return tmp, traces


def _first_fallback(truth: dict[str, Any]) -> int | None:
    return next((i for i, t in enumerate(truth["conversation"]["turns"]) if t["fallback"]), None)


def test_fallback_traces_are_left_out_by_default(fallbacks, tmp_path):
    tmp, traces = fallbacks
    out = tmp_path / "default.jsonl"
    report = run(tmp, tmp / "dump.pb", out)
    prov = read_lines(str(tmp_path / "default.provenance.jsonl"))
    with_fallback = {t.truth["trace_id"] for t in traces if _first_fallback(t.truth) is not None}
    assert len(with_fallback) > 20
    assert not with_fallback & {p["trace_id"] for p in prov}
    assert {p["trace_id"] for p in prov} == set(clean_truths(traces))
    assert report["dataset"]["traces"]["class"] >= len(with_fallback)


def test_on_fallback_weight0_marks_the_turns_after_the_fallback(fallbacks, tmp_path):
    tmp, traces = fallbacks
    out = tmp_path / "w.jsonl"
    run(tmp, tmp / "dump.pb", out, classes=["clean", "noisy"], on_fallback="weight0")
    by_id = {t.truth["trace_id"]: t.truth for t in traces}
    examples = read_lines(str(out))
    prov = read_lines(str(tmp_path / "w.provenance.jsonl"))
    weighted = 0
    for ex, p in zip(examples, prov, strict=True):
        truth = by_id[p["trace_id"]]
        assert canonical(ex["messages"]) == canonical(truth["conversation"]["messages"])
        assert check_openai_chat(ex) == []
        weights = [m.get("weight") for m in ex["messages"] if m["role"] == "assistant"]
        f = _first_fallback(truth)
        if f is None:
            assert set(weights) == {None}
            continue
        weighted += 1
        n = len(truth["conversation"]["turns"])
        assert weights == [1] * f + [0] * (n - f)
        assert [t["weight"] for t in p["turns"]] == weights
        assert [t.get("fallback", False) for t in p["turns"]] == [
            t["fallback"] for t in truth["conversation"]["turns"]
        ]
    assert weighted > 20


def test_on_fallback_drop_cuts_before_the_fallback(fallbacks, tmp_path):
    tmp, traces = fallbacks
    out = tmp_path / "drop.jsonl"
    report = run(tmp, tmp / "dump.pb", out, classes=["clean", "noisy"])
    by_id = {t.truth["trace_id"]: t.truth for t in traces}
    examples = read_lines(str(out))
    prov = read_lines(str(tmp_path / "drop.provenance.jsonl"))
    cut = 0
    for ex, p in zip(examples, prov, strict=True):
        truth = by_id[p["trace_id"]]
        msgs = truth["conversation"]["messages"]
        f = _first_fallback(truth)
        if f is not None:  # up to the last assistant turn before the f-th
            positions = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
            msgs = msgs[: positions[f - 1] + 1]
            cut += 1
        assert canonical(ex["messages"]) == canonical(msgs)
        assert not any(t.get("fallback") for t in p["turns"])
    assert cut > 20
    skipped = report["dataset"]["skipped"].get("fallback", 0)
    firsts = sum(1 for t in traces if _first_fallback(t.truth) == 0)
    assert skipped == firsts  # a fallback on the first call leaves nothing to keep


def test_served_models_keeps_examples_served_by_them_only(dump, tmp_path):
    tmp, traces = dump
    out = tmp_path / "m.jsonl"
    report = run(tmp, tmp / "dump.pb", out, served_models=["gpt-4o", "gpt-4o-mini"])
    prov = read_lines(str(tmp_path / "m.provenance.jsonl"))
    truths = clean_truths(traces)
    want = {
        tid
        for tid, t in truths.items()
        if all(
            x["served"].split("/", 1)[1] in ("gpt-4o", "gpt-4o-mini")
            for x in t["conversation"]["turns"]
        )
    }
    assert 0 < len(want) < len(truths)
    assert {p["trace_id"] for p in prov} == want
    assert report["dataset"]["skipped"]["served_model"] == len(truths) - len(want)


def test_hf_chat_is_what_trl_takes(dump, tmp_path):
    tmp, traces = dump
    out = tmp_path / "hf.jsonl"
    run(tmp, tmp / "dump.pb", out, "--dataset-format", "hf_chat")
    rows = read_lines(str(out))
    prov = read_lines(str(tmp_path / "hf.provenance.jsonl"))
    truths = clean_truths(traces)
    assert len(rows) == len(truths)
    for row, p in zip(rows, prov, strict=True):
        assert check_hf_chat(row) == []
        assert canonical(row["messages"]) == canonical(
            truths[p["trace_id"]]["conversation"]["messages"]
        )
    assert check_hf_rows(rows) == []
    assert any(m.get("tool_calls") for r in rows for m in r["messages"])


def test_options_that_cannot_work_are_config_errors(dump, tmp_path):
    tmp, _ = dump
    out = str(tmp_path / "x.jsonl")
    # in the config: found when it is loaded, with the others
    got = audit(str(tmp / "dump.pb"), "--config", config(tmp, classes=["clean", "shiny"]),
                "--dataset", out)  # fmt: skip
    assert got.returncode == 2
    assert "exporters::dataset::classes: unknown class 'shiny'" in got.stderr
    # the config with the command line's format
    got = audit(str(tmp / "dump.pb"), "--config", config(tmp, on_fallback="weight0"),
                "--dataset", out, "--dataset-format", "hf_chat")  # fmt: skip
    assert got.returncode == 2
    assert "exporters::dataset::on_fallback: weight0 needs format openai_chat" in got.stderr
    got = audit(str(tmp / "dump.pb"), "--dataset-format", "hf_chat")
    assert got.returncode == 2 and "--dataset-format: needs --dataset" in got.stderr
    got = audit(str(tmp / "dump.pb"), "--dataset", str(tmp_path / "no" / "x.jsonl"))
    assert got.returncode == 2 and "--dataset" in got.stderr
    assert not (tmp_path / "x.jsonl").exists()
    assert "Traceback" not in got.stderr
