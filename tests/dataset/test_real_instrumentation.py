"""Real instrumentation with message content capture on, end to end: a multi-turn,
tool-calling agent (`agent_app`) on the `openai` SDK, instrumented by
`opentelemetry-instrumentation-openai-v2` or `openinference-instrumentation-openai`, sends
its spans through the OTel SDK's OTLP exporter to a collector started through the CLI:
groupbytrace, the enrichment processors, cleanliness, and two `dataset` exporters (the
defaults; and noisy traces too, `on_fallback: weight0`). Every example written must be,
message for message, what the app sent to the fake API (its request log) plus the answer
the API returned."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.testing import wait_for
from tests.dataset import agent_app
from tests.dataset.validators import check_openai_chat, read_lines
from tests.processors.genai.e2e import classify_config
from tests.processors.genai.fake_llm import FakeLLM


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    api = FakeLLM()
    yield api
    api.close()


def config(out: str, hosts: dict[str, str]) -> dict[str, Any]:
    """otlp -> groupbytrace -> enrichment -> cleanliness -> two dataset exporters."""
    genai = {"hosts": hosts}
    exporters = {
        "dataset": {"path": f"{out}/clean.jsonl", **genai},
        "dataset/all": {
            "path": f"{out}/all.jsonl",
            "classes": ["clean", "noisy"],
            "on_fallback": "weight0",
            **genai,
        },
    }
    return classify_config(hosts, exporters, wait="1s")


def canonical(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages compared by what they say: arguments as JSON values, no content as None."""
    out = []
    for m in messages:
        c: dict[str, Any] = {"role": m["role"], "content": m.get("content") or None}
        if m.get("tool_calls"):
            c["tool_calls"] = [
                (t["id"], t["function"]["name"], json.loads(t["function"]["arguments"]))
                for t in m["tool_calls"]
            ]
        if m["role"] == "tool":
            c["tool_call_id"] = m["tool_call_id"]
        out.append(c)
    return out


def lines(path: str) -> int:
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as fh:
        return fh.read().count(b"\n")


@pytest.mark.parametrize("instrumentation", ["openai-v2", "openinference"])
def test_examples_are_what_the_app_sent_and_got(tmp_path, collector_factory, fake, instrumentation):
    fake.exchanges.clear()
    out = str(tmp_path / "data")
    hosts = {f"127.0.0.1:{fake.port}": "openai"}
    c = collector_factory(config(out, hosts))
    trace_ids = agent_app.run(instrumentation, c.endpoints["receivers::otlp/grpc"], fake.url)
    # lines go to .partial files while the collector runs, renamed into place at shutdown
    assert wait_for(lambda: lines(f"{out}/all.jsonl.partial") >= 4, timeout=30), c.output
    assert c.stop() == 0
    assert sorted(os.listdir(out)) == [
        "all.jsonl",
        "all.provenance.jsonl",
        "clean.jsonl",
        "clean.provenance.jsonl",
    ]

    log = fake.exchanges
    assert len(log) == 9  # the failed call (500) is not logged

    def expected(i: int) -> list[dict[str, Any]]:
        body, answer = log[i]
        return canonical([*body["messages"], answer])

    # the last call of each conversation: weather (3rd call), researcher (5th), writer (6th)
    clean = read_lines(f"{out}/clean.jsonl")
    clean_prov = read_lines(f"{out}/clean.provenance.jsonl")
    assert [canonical(e["messages"]) for e in clean] == [expected(2), expected(4), expected(5)]
    for e in clean:
        assert check_openai_chat(e) == []
        assert "weight" not in json.dumps(e)
    tools_sent = [log[2][0].get("tools"), log[4][0].get("tools"), None]
    if instrumentation == "openinference":  # llm.tools.N.tool.json_schema
        assert [e.get("tools") for e in clean] == tools_sent
    else:  # openai-v2 does not capture the tool definitions
        assert all("tools" not in e for e in clean)
    if instrumentation == "openinference":  # the weather call asked for two tools at once
        assert clean[0]["parallel_tool_calls"] is True

    # provenance: one line per example, in order
    assert [p["trace_id"] for p in clean_prov] == [
        trace_ids["weather"],
        trace_ids["two_agents"],
        trace_ids["two_agents"],
    ]
    weather = clean_prov[0]
    assert weather["class"] == "clean" and weather["reasons"] == []
    assert weather["task_class"] == "weather" and weather["service"] == "agent-app"
    assert len(weather["span_ids"]) == 3 and len(weather["turns"]) == 3
    assert [(t["provider"], t["model"]) for t in weather["turns"]] == [("openai", "gpt-4o")] * 3
    assert weather["turns"][-1]["span_id"] == weather["span_ids"][-1]
    assert all(len(p["hash"]) == 32 for p in clean_prov)

    # noisy traces too: the fallback trace, with the turns after the fallback weighted 0
    everything = read_lines(f"{out}/all.jsonl")
    prov = read_lines(f"{out}/all.provenance.jsonl")
    assert [canonical(e["messages"]) for e in everything] == [
        expected(2),
        expected(4),
        expected(5),
        expected(8),
    ]
    fb, fb_prov = everything[3], prov[3]
    assert fb_prov["class"] == "noisy" and fb_prov["reasons"] == ["fallback"]
    assert [m.get("weight") for m in fb["messages"] if m["role"] == "assistant"] == [1, 0, 0]
    assert [(t["model"], t.get("fallback", False), t["weight"]) for t in fb_prov["turns"]] == [
        ("gpt-4o", False, 1),
        ("gpt-4o-mini", True, 0),
        ("gpt-4o", False, 0),
    ]
    assert check_openai_chat(fb) == []
