"""Real agent frameworks, instrumented for real: LangChain/LangGraph (OpenInference and
Traceloop instrumentations), PydanticAI (its own), the OpenAI Agents SDK (OpenInference),
LlamaIndex (OpenInference, in a venv of its own), each with httpx instrumented, run as a
user runs them (`tests/processors/genai/apps/*_app.py`, a subprocess exporting OTLP/gRPC)
against the fake OpenAI and Anthropic servers on loopback, into one collector started from
the CLI: otlp -> groupbytrace -> provider_reconciliation, cache_tagging, fallback_chain ->
cleanliness -> file.

Per framework, one app run makes one trace per scenario; each trace's class, reasons,
served providers and models, and its logical calls' attempt chains, retry counts and
fallbacks, are checked against what the fake servers logged (the requests each scenario
sent, their statuses and the turns the fake answered).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.testing import Collector, attrs, read_json_lines, spans_in, wait_for
from processors.genai import normalize_model
from tests.processors.genai.e2e import Fakes, classify_config, file_exporter
from tests.processors.genai.fake_llm import Logged
from tests.processors.genai.framework_venv import APPS, venv_python

pytestmark = pytest.mark.timeout(600)


class Sieve:
    """The collector, and what it wrote."""

    def __init__(self, workdir: str, hosts: dict[str, str]) -> None:
        self.out = os.path.join(workdir, "out.jsonl")
        self.collector = Collector(
            classify_config(hosts, file_exporter(self.out)), workdir=workdir
        ).start()
        self.otlp = self.collector.endpoints["receivers::otlp/grpc"]

    def traces(self, ids: set[bytes]) -> dict[bytes, list[Any]]:
        got: dict[bytes, list[Any]] = {}
        for s in spans_in(read_json_lines(self.out)):
            if s.trace_id in ids:
                got.setdefault(s.trace_id, []).append(s)
        return got


@pytest.fixture(scope="module")
def sieve(tmp_path_factory: pytest.TempPathFactory, fakes: Fakes) -> Iterator[Sieve]:
    s = Sieve(str(tmp_path_factory.mktemp("frameworks")), fakes.hosts())
    yield s
    s.collector.stop()


def run_app(
    sieve: Sieve, fakes: Fakes, app: str, tag: str, instrumentation: str = "", venv: str = ""
) -> dict[str, list[Any]]:
    """Run an agent app against the fakes into the collector; every scenario's spans, as
    the collector wrote them, once each trace is whole (its root span written)."""
    python = venv_python(venv)[0] if venv else sys.executable
    args = [python, os.path.join(APPS, app), "--otlp", sieve.otlp, "--tag", tag]
    args += ["--openai", fakes.openai.url, "--anthropic", fakes.anthropic.url]
    if instrumentation:
        args += ["--instrumentation", instrumentation]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    ids = {k: bytes.fromhex(v) for k, v in json.loads(done.stdout.splitlines()[-1]).items()}
    assert all(len(t) == 16 for t in ids.values()), ids

    def whole() -> bool:
        got = sieve.traces(set(ids.values()))
        return all(any(not s.parent_span_id for s in got.get(t, ())) for t in ids.values())

    assert wait_for(whole, timeout=30), sieve.collector.output
    got = sieve.traces(set(ids.values()))
    return {name: got[t] for name, t in ids.items()}


# (class, reasons, providers, models) per scenario
CLEAN = ("clean", [], ["openai"], ["gpt-4o"])
EXPECTED: dict[str, tuple[str, list[str], list[str], list[str]]] = {
    "plain": CLEAN,
    "sdk_retry": ("noisy", ["llm_retry"], ["openai"], ["gpt-4o"]),
    "framework_retry": ("noisy", ["llm_retry"], ["openai"], ["gpt-4o"]),
    "fallback": ("noisy", ["fallback"], ["anthropic"], ["claude-sonnet-4-6"]),
    "tool": CLEAN,
    "tool_retry": ("noisy", ["tool_retry"], ["openai"], ["gpt-4o"]),
    "swallowed": ("corrupted", ["swallowed_error"], ["openai"], ["gpt-4o"]),
    "cache": ("noisy", ["cache_hit"], ["openai"], ["gpt-4o"]),
    "failed": ("failed", ["llm_retry"], [], []),
}


def chain_of(log: list[tuple[str, Logged]]) -> list[str]:
    """The attempt chain the fakes' log says a logical call made."""
    return [
        f"{p}/{normalize_model(r.model)}:{'ok' if r.status < 400 else f'error:{r.status}'}"
        for p, r in log
    ]


_SHOWN = ("sieve.", "http.status_code", "http.response.status_code", "gen_ai.request.model")


def tree(trace: list[Any]) -> str:
    """A trace as an indented tree with its statuses and the `sieve.*` values written (in
    assertion messages)."""
    kids: dict[bytes, list[Any]] = {}
    ids = {s.span_id for s in trace}
    for s in sorted(trace, key=lambda s: s.start_time_unix_nano):
        kids.setdefault(s.parent_span_id if s.parent_span_id in ids else b"", []).append(s)
    lines: list[str] = []

    def walk(s: Any, depth: int) -> None:
        shown = {k: v for k, v in attrs(s).items() if k.startswith(_SHOWN)}
        ms = (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6
        lines.append(f"{'  ' * depth}{s.name} [{s.status.code}] {ms:.1f}ms {shown}")
        for c in kids.get(s.span_id, ()):
            walk(c, depth + 1)

    for r in kids.get(b"", ()):
        walk(r, 0)
    return "\n".join(lines)


def check(
    spans: dict[str, list[Any]],
    fakes: Fakes,
    tag: str,
    expected: dict[str, tuple[str, list[str], list[str], list[str]]],
    cache_evidence: str = "",
) -> None:
    """Every scenario's verdict, and its LLM calls against the fakes' log."""
    assert set(spans) == set(expected)
    for scenario, (cls, reasons, providers, models) in expected.items():
        trace = spans[scenario]
        where = f"{tag}/{scenario}\n{tree(trace)}\nfakes: {fakes.log(tag, scenario)}"
        (root,) = [attrs(s) for s in trace if not s.parent_span_id]
        verdict = (
            root["sieve.trace.class"],
            root["sieve.trace.reasons"],
            root["sieve.trace.providers"],
            root["sieve.trace.models"],
        )
        assert verdict == (cls, reasons, providers, models), where
        log = fakes.log(tag, scenario)
        assert log, where  # the scenario reached the fakes
        logical = [a for a in map(attrs, trace) if "sieve.fallback.chain" in a]
        if scenario in ("sdk_retry", "framework_retry", "fallback", "failed"):
            # one logical call, made of every request the fakes logged
            # one logical call, made of the requests the fakes logged up to the first answer
            # (an agent's later turns are calls of their own)
            (call,) = [a for a in logical if len(a["sieve.fallback.chain"]) > 1]
            n = next((i + 1 for i, (_, r) in enumerate(log) if r.status < 400), len(log))
            want = chain_of(log[:n])
            assert call["sieve.fallback.chain"] == want, where
            assert call["sieve.attempt.count"] == n, where
            fell_back = want[0].split(":")[0] != want[-1].split(":")[0]
            assert call["sieve.fallback.fired"] is fell_back, where
            assert call["sieve.retry.count"] == (0 if fell_back else n - 1), where
            assert call["sieve.provider.mismatch"] is False, where
            if log[n - 1][1].status < 400:  # served by that answer's provider and model
                p, r = log[n - 1]
                assert call["sieve.provider.served"] == p, where
                assert call["sieve.model.served"] == normalize_model(r.model), where
        else:
            # every other scenario: each request answered at once, one attempt per call
            assert all(r.status == 200 for _, r in log), where
            assert all(len(a["sieve.fallback.chain"]) == 1 for a in logical), where
            assert all(a["sieve.provider.served"] == "openai" for a in logical), where
        replies = [r.reply for _, r in log]
        retried_tools = [
            a["sieve.retry.count"]
            for a in map(attrs, trace)
            if "sieve.retry.count" in a and "sieve.fallback.chain" not in a
        ]
        if scenario == "tool_retry":
            # the model asked for the tool again after its error, and it ran again
            assert replies == ["tool:get_weather", "tool:get_weather", "text"], where
            assert retried_tools == [1], where
        elif scenario == "swallowed":
            assert replies == ["tool:get_weather", "text"], where  # never asked again
            assert retried_tools == [], where
        elif scenario == "tool":
            assert replies == ["tool:get_weather", "text"], where
        if scenario == "cache":
            # two calls in the trace, one request: the second was LangChain's cache
            assert len(log) == 1, where
            hits = [a for a in map(attrs, trace) if a.get("sieve.cache.hit") is True]
            assert [a["sieve.cache.evidence"] for a in hits] == [cache_evidence], where
        else:
            assert not any(a.get("sieve.cache.hit") is True for a in map(attrs, trace)), where


@pytest.mark.parametrize(
    ("instrumentation", "cache_evidence"),
    [("openinference", "response_id_seen"), ("traceloop", "no_provider_call")],
)
def test_langchain(sieve: Sieve, fakes: Fakes, instrumentation: str, cache_evidence: str) -> None:
    tag = f"langchain-{instrumentation}"
    spans = run_app(sieve, fakes, "langchain_app.py", tag, instrumentation)
    check(spans, fakes, tag, EXPECTED, cache_evidence)


def test_pydantic_ai(sieve: Sieve, fakes: Fakes) -> None:
    spans = run_app(sieve, fakes, "pydantic_ai_app.py", "pydantic_ai")
    skip = ("framework_retry", "cache")  # no LLM retry of its own, no LLM cache
    check(spans, fakes, "pydantic_ai", {k: v for k, v in EXPECTED.items() if k not in skip})


def test_openai_agents(sieve: Sieve, fakes: Fakes) -> None:
    spans = run_app(sieve, fakes, "openai_agents_app.py", "openai_agents")
    check(spans, fakes, "openai_agents", {k: v for k, v in EXPECTED.items() if k != "cache"})


def test_llamaindex(sieve: Sieve, fakes: Fakes) -> None:
    spans = run_app(sieve, fakes, "llamaindex_app.py", "llamaindex", venv="llamaindex")
    expected = {k: v for k, v in EXPECTED.items() if k not in ("framework_retry", "cache")}
    expected["fallback"] = ("noisy", ["fallback"], ["openai"], ["gpt-4o-mini"])
    check(spans, fakes, "llamaindex", expected)
