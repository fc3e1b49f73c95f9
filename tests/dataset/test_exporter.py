"""The `dataset` exporter in a collector started through the CLI: examples that fail a
check counted by reason (and never written), size-based rotation with whole files only,
everything in place after shutdown, and a run killed mid-way taken up by the next (its
complete lines kept, a torn one cut, what is sent again not written twice)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks.generator import FaultRates, GeneratedTrace, Generator
from pipeline.testing import export_grpc, make_span, make_traces, metric, scrape, wait_for
from tests.audit.helpers import requests_of
from tests.dataset.validators import check_openai_chat, read_lines

CHAT = 3  # SPAN_KIND_CLIENT


def config(path: str, **dataset: Any) -> dict[str, Any]:
    enrich = ["provider_reconciliation", "cache_tagging", "fallback_chain"]
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {
            "groupbytrace": {"wait_duration": "300ms", "wait_duration_after_root": "100ms"},
            **{p: {} for p in enrich},
            "cleanliness": {},
        },
        "exporters": {"dataset": {"path": path, **dataset}},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["groupbytrace", *enrich, "cleanliness"],
                    "exporters": ["dataset"],
                }
            },
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _text(t: str) -> dict[str, Any]:
    return {"type": "text", "content": t}


def _call(cid: str, args: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": cid, "name": "lookup", "arguments": args}


USER = {"role": "user", "parts": [_text("hello")]}
ANSWER = [{"role": "assistant", "parts": [_text("hi there")], "finish_reason": "stop"}]
# case -> (input messages, output messages); None: no content on the span
CASES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]] | None] = {
    "valid": ([USER], ANSWER),
    "arguments_json": ([USER], [{"role": "assistant", "parts": [_call("c1", "{not json")]}]),
    "empty_assistant": ([USER], [{"role": "assistant", "parts": []}]),
    "unanswered_tool_call": (
        [USER, {"role": "assistant", "parts": [_call("c1", {"q": 1})]}, USER],
        ANSWER,
    ),
    "tool_call_id": (
        [
            USER,
            {"role": "assistant", "parts": [_call("c1", {"q": 1})]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c9", "result": "x"}]},
        ],
        ANSWER,
    ),
    "unsupported_content": (
        [{"role": "user", "parts": [{"type": "blob", "modality": "image", "content": "aGk="}]}],
        ANSWER,
    ),
    "role": ([{"role": "critic", "parts": [_text("no")]}, USER], ANSWER),
    "role_order": ([USER, {"role": "system", "parts": [_text("late")]}], ANSWER),
    "no_content": None,
}


def crafted() -> bytes:
    spans = []
    for i, (case, content) in enumerate(CASES.items()):
        tid = (i + 1).to_bytes(16, "big")
        root, call = (i + 1).to_bytes(8, "big"), (i + 101).to_bytes(8, "big")
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
        }
        if content is not None:
            attributes["gen_ai.input.messages"] = json.dumps(content[0])
            attributes["gen_ai.output.messages"] = json.dumps(content[1])
        start = 1_700_000_000_000_000_000 + i * 10**9
        spans.append(make_span(f"invoke_agent {case}", tid, root, start=start, duration_ns=10**8))
        spans.append(
            make_span("chat gpt-4o", tid, call, root, start=start + 10**6, kind=CHAT,
                      attributes=attributes)
        )  # fmt: skip
    return make_traces(spans, service="crafted").to_bytes()


def test_invalid_examples_are_counted_by_reason_and_never_written(tmp_path, collector_factory):
    out = tmp_path / "train.jsonl"
    c = collector_factory(config(str(out)))
    export_grpc(c.endpoints["receivers::otlp/grpc"], crafted())
    address = c.endpoints["telemetry/http"]
    assert wait_for(
        lambda: metric(scrape(address), "tracesieve_dataset_traces_total") == len(CASES), 30
    ), c.output
    m = scrape(address)
    assert metric(m, "tracesieve_dataset_traces_total", outcome="selected") == len(CASES)
    assert metric(m, "tracesieve_dataset_examples_written_total") == 1
    for case in CASES:
        if case != "valid":
            assert metric(m, "tracesieve_dataset_examples_skipped_total", reason=case) == 1, case
    assert metric(m, "tracesieve_dataset_examples_skipped_total") == len(CASES) - 1
    assert c.stop() == 0
    (ex,) = read_lines(str(out))
    assert ex == {
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi there"},
        ]
    }
    assert check_openai_chat(ex) == []


@pytest.fixture(scope="module")
def traces() -> list[GeneratedTrace]:
    """Without faults: every trace is clean."""
    return list(Generator(21, content=True, rates=FaultRates.none()).traces(140))


def send(c: Any, traces: list[GeneratedTrace]) -> None:
    for req in requests_of(traces, per_request=10):
        export_grpc(c.endpoints["receivers::otlp/grpc"], req)


def clean_count(traces: list[GeneratedTrace]) -> int:
    return sum(1 for t in traces if t.truth["expected"]["class"] == "clean")


def test_rotation_writes_whole_files_each_with_its_provenance(tmp_path, collector_factory, traces):
    out = tmp_path / "data" / "train.jsonl"
    c = collector_factory(config(str(out), per="call", rotation={"max_megabytes": 1}))
    send(c, traces)
    address = c.endpoints["telemetry/http"]
    assert wait_for(
        lambda: metric(scrape(address), "tracesieve_dataset_traces_total") == len(traces), 60
    ), c.output
    written = metric(scrape(address), "tracesieve_dataset_examples_written_total")
    folder = out.parent
    # while it runs: finished files (renamed into place, whole) and the one being written
    running = sorted(os.listdir(folder))
    assert "train.jsonl.partial" in running and "train.provenance.jsonl.partial" in running
    assert "train.jsonl" in running  # the first finished segment takes the name
    assert len([f for f in running if not f.endswith(".partial")]) >= 4  # 2+ segments
    assert c.stop() == 0
    names = sorted(os.listdir(folder))
    assert not [f for f in names if f.endswith(".partial")]
    data = [f for f in names if ".provenance" not in f]
    assert len(data) >= 3
    hashes: list[str] = []
    total = 0
    for name in data:
        path = folder / name
        assert path.stat().st_size <= 1 << 20
        prov = folder / name.replace(".jsonl", ".provenance.jsonl")
        rows, provs = read_lines(str(path)), read_lines(str(prov))
        assert len(rows) == len(provs) > 0
        assert all(check_openai_chat(r) == [] for r in rows)
        hashes += [p["hash"] for p in provs]
        total += len(rows)
    assert total == written > clean_count(traces)  # an example per call
    assert len(set(hashes)) == len(hashes)


def test_a_killed_run_is_taken_up_by_the_next(tmp_path, collector_factory, traces):
    out = tmp_path / "train.jsonl"
    partial = tmp_path / "train.jsonl.partial"
    first, second = traces[:70], traces[70:]
    cfg = config(str(out))
    c = collector_factory(cfg)
    send(c, first)
    # both files whole before the kill: a data line the buffer let out before its
    # provenance is cut off at the next start, and its example written again, not counted
    # a duplicate
    prov_partial = tmp_path / "train.provenance.jsonl.partial"
    assert wait_for(lambda: lines(partial) == lines(prov_partial) == clean_count(first), 60), (
        c.output
    )
    c.kill()  # SIGKILL: nothing renamed into place
    assert not out.exists()
    with open(partial, "ab") as fh:  # a line cut short by the crash
        fh.write(b'{"messages":[{"role":"user","cont')
    c2 = collector_factory(cfg)
    send(c2, first)  # sent again (at least once): not written twice
    send(c2, second)
    address = c2.endpoints["telemetry/http"]
    assert wait_for(
        lambda: metric(scrape(address), "tracesieve_dataset_traces_total") == len(traces), 60
    ), c2.output
    m = scrape(address)
    assert metric(m, "tracesieve_dataset_examples_skipped_total", reason="duplicate") == (
        clean_count(first)
    )
    assert c2.stop() == 0
    rows = read_lines(str(out))
    prov = read_lines(str(tmp_path / "train.provenance.jsonl"))
    assert len(rows) == len(prov) == clean_count(traces)
    want = {t.truth["trace_id"] for t in traces if t.truth["expected"]["class"] == "clean"}
    assert {p["trace_id"] for p in prov} == want
    assert not partial.exists()
