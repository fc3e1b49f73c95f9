"""cleanliness: every reason and class on small hand-made traces and on generator traces,
the reason -> class overrides, the timing median's warm-up, traces without a root span,
late fragments, the attribute types, metrics, and config errors."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from benchmarks.generator import CONVENTIONS, Generator, write_tool_schemas
from pipeline import config as config_mod
from pipeline.configtypes import decode
from pipeline.errors import ConfigError
from pipeline.pdata import Traces
from pipeline.registry import REGISTRY
from pipeline.telemetry import Telemetry
from pipeline.testing import Sink, attrs, make_span, make_traces, settings
from pipeline.wholetraces import TraceEntry, TraceIndex
from processors.cleanliness import CleanlinessConfig, CleanlinessProcessor
from processors.genai import GenAIConfig, GenAIIndex, index_for
from processors.groupbytrace import GroupByTraceConfig, GroupByTraceProcessor
from processors.tail_sampling import TailSamplingConfig, TailSamplingProcessor

S = 1_000_000_000  # ns per second
T0 = 1_750_000_000_000_000_000
ERROR = Status.STATUS_CODE_ERROR
CLIENT = Span.SPAN_KIND_CLIENT

SCHEMAS = {
    "web_search": {
        "type": "object",
        "required": ["results"],
        "properties": {"results": {"type": "array"}},
    },
    "calculator": {
        "type": "object",
        "required": ["value"],
        "properties": {"value": {"type": "number"}},
    },
}


def tid(n: int) -> bytes:
    return random.Random(n).randbytes(16)


class TraceBuilder:
    """A hand-made agent trace in OTel GenAI names: a root task span and its children."""

    def __init__(
        self,
        n: int,
        *,
        task: str = "research",
        seconds: float = 10.0,
        root_error: bool = False,
        root: bool = True,
        root_attrs: dict[str, Any] | None = None,
        start: int = T0,
    ) -> None:
        self.trace_id = tid(n)
        self.n = n
        self.next_id = 1
        self.t = start + S // 10
        self.root_id = self._id()
        a = {"gen_ai.operation.name": "invoke_workflow", "task.class": task}
        if root_attrs is not None:
            a = root_attrs
        self.root = make_span(
            f"invoke_workflow {task}",
            self.trace_id,
            self.root_id,
            b"" if root else b"\xff" * 8,
            start=start,
            duration_ns=int(seconds * S),
            status=ERROR if root_error else Status.STATUS_CODE_UNSET,
            attributes=a,
        )
        self.spans = [self.root]

    def _id(self) -> bytes:
        self.next_id += 1
        return self.n.to_bytes(4, "big") + self.next_id.to_bytes(4, "big")

    def _slot(self, ms: int = 100) -> tuple[int, int]:
        start = self.t
        self.t += ms * 1_000_000 + 1_000_000
        return start, ms * 1_000_000

    def llm(
        self,
        model: str = "gpt-4o",
        served: str = "gpt-4o-2024-08-06",
        provider: str = "openai",
        host: str = "api.openai.com",
        *,
        error: bool = False,
        response_id: str | None = None,
    ) -> TraceBuilder:
        start, dur = self._slot()
        a: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "server.address": host,
        }
        if error:
            a["error.type"] = "InternalServerError"
        else:
            a["gen_ai.response.model"] = served
        if response_id:
            a["gen_ai.response.id"] = response_id
        self.spans.append(
            make_span(
                f"chat {model}",
                self.trace_id,
                self._id(),
                self.root_id,
                start=start,
                duration_ns=dur,
                kind=CLIENT,
                status=ERROR if error else Status.STATUS_CODE_UNSET,
                attributes=a,
            )
        )
        return self

    def tool(
        self,
        name: str = "web_search",
        result: Any = None,
        *,
        error: bool = False,
        key: str = "gen_ai.tool.call.result",
        span_name: str | None = None,
    ) -> TraceBuilder:
        start, dur = self._slot()
        if result is None and not error:
            result = {"results": [{"title": "a", "url": "https://example.org"}]}
        a: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        if result is not None:
            a[key] = result if isinstance(result, str) else json.dumps(result)
        if error:
            a["error.type"] = "ToolError"
        self.spans.append(
            make_span(
                span_name or f"execute_tool {name}",
                self.trace_id,
                self._id(),
                self.root_id,
                start=start,
                duration_ns=dur,
                status=ERROR if error else Status.STATUS_CODE_UNSET,
                attributes=a,
            )
        )
        return self


def clean_trace(n: int, **kw: Any) -> TraceBuilder:
    return TraceBuilder(n, **kw).llm().tool().llm()


async def whole(*builders: TraceBuilder) -> Traces:
    """The traces as groupbytrace releases them (one trace-aligned, indexed batch)."""
    sink = Sink()
    g = GroupByTraceProcessor(settings(), GroupByTraceConfig(), sink)
    await g.consume_traces(make_traces([s for b in builders for s in b.spans]))
    await g.shutdown()
    (batch,) = sink.batches
    return batch


def processor(
    tel: Telemetry | None = None, sink: Sink | None = None, **cfg: Any
) -> tuple[CleanlinessProcessor, Sink]:
    value, errs = decode(cfg, CleanlinessConfig, "cleanliness")
    assert not errs and value is not None, errs
    sink = sink or Sink(mutates_data=True)
    return CleanlinessProcessor(settings(telemetry=tel or Telemetry()), value, sink), sink


def roots(sink: Sink) -> dict[bytes, dict[str, Any]]:
    return {s.trace_id: attrs(s) for s in sink.spans() if not s.parent_span_id}


async def verdicts(*builders: TraceBuilder, **cfg: Any) -> list[dict[str, Any]]:
    """Root attributes written, per builder, in order (all in one batch)."""
    p, sink = processor(**cfg)
    await p.consume_traces(await whole(*builders))
    got = roots(sink)
    return [got[b.trace_id] for b in builders]


async def verdict(builder: TraceBuilder, **cfg: Any) -> tuple[str, list[str]]:
    (a,) = await verdicts(builder, **cfg)
    return a["sieve.trace.class"], a["sieve.trace.reasons"]


@pytest.fixture
def schemas(tmp_path) -> str:
    d = tmp_path / "schemas"
    d.mkdir()
    for name, schema in SCHEMAS.items():
        (d / f"{name}.json").write_text(json.dumps(schema))
    (d / "README.txt").write_text("not a schema: ignored")
    return str(d)


# -- each reason and class, hand-made ----------------------------------------------------------


async def test_a_plain_trace_is_clean_with_what_served_it():
    (a,) = await verdicts(clean_trace(1))
    assert a["sieve.trace.class"] == "clean"
    assert a["sieve.trace.reasons"] == []
    assert a["sieve.trace.providers"] == ["openai"]
    assert a["sieve.trace.models"] == ["gpt-4o"]
    assert "sieve.trace.duration_ratio" not in a  # no median yet


async def test_llm_retry_is_noisy():
    b = TraceBuilder(1).llm(error=True).llm().tool()
    assert await verdict(b) == ("noisy", ["llm_retry"])


async def test_fallback_to_another_provider_is_noisy():
    b = (
        TraceBuilder(1)
        .llm(error=True)
        .llm(
            "claude-3-5-sonnet-20241022",
            "claude-3-5-sonnet-20241022",
            "anthropic",
            "api.anthropic.com",
        )
    )
    (a,) = await verdicts(b)
    assert (a["sieve.trace.class"], a["sieve.trace.reasons"]) == ("noisy", ["fallback"])
    assert a["sieve.trace.providers"] == ["anthropic"]  # what served, not what was asked


async def test_tool_retry_is_noisy():
    b = TraceBuilder(1).llm().tool(error=True).tool().llm()
    assert await verdict(b) == ("noisy", ["tool_retry"])


async def test_a_replayed_response_is_a_cache_hit():
    b = TraceBuilder(1).llm(response_id="chatcmpl-1").llm(response_id="chatcmpl-1")
    assert await verdict(b) == ("noisy", ["cache_hit"])


async def test_another_model_served_is_a_provider_mismatch():
    b = TraceBuilder(1).llm(served="gpt-4o-mini-2024-07-18")
    assert await verdict(b) == ("noisy", ["provider_mismatch"])


async def test_multi_model_only_when_strict():
    b = TraceBuilder(1).llm().llm("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    (a,) = await verdicts(b)
    assert (a["sieve.trace.class"], a["sieve.trace.reasons"]) == ("clean", [])
    assert a["sieve.trace.models"] == ["gpt-4o", "gpt-4o-mini"]
    assert await verdict(b, strict_single_model=True) == ("noisy", ["multi_model"])


async def test_a_result_breaking_its_schema_is_corrupted(schemas):
    bad = TraceBuilder(1).llm().tool(result={"hits": []})
    assert await verdict(bad, tool_schemas=schemas) == ("corrupted", ["tool_schema_invalid"])
    # the same trace without schemas configured: nothing to check against
    assert await verdict(TraceBuilder(1).llm().tool(result={"hits": []})) == ("clean", [])


@pytest.mark.parametrize(
    ("result", "valid"),
    [
        ({"value": 3.5}, True),
        ({"value": "3.5"}, False),  # wrong type
        ("not json at all", False),  # plain text is checked as a JSON string
        ("[1, 2", False),
    ],
)
async def test_results_are_checked_as_the_json_they_hold(schemas, result, valid):
    b = TraceBuilder(1).llm().tool("calculator", result)
    cls, _ = await verdict(b, tool_schemas=schemas)
    assert cls == ("clean" if valid else "corrupted")


@pytest.mark.parametrize(
    ("key", "span_name", "config"),
    [
        ("output.value", "web_search", {}),  # OpenInference TOOL span (named by tool.name)
        ("traceloop.entity.output", "web_search.tool", {}),  # Traceloop
        ("my.result", None, {"tool_result_key": "my.result"}),  # configured key
    ],
)
async def test_results_read_from_every_convention(schemas, key, span_name, config):
    b = TraceBuilder(1).llm()
    b.tool(result={"hits": []}, key=key, span_name=span_name)
    if key == "output.value":
        b.spans[-1].attributes.add(key="openinference.span.kind").value.string_value = "TOOL"
        b.spans[-1].attributes.add(key="tool.name").value.string_value = "web_search"
    assert await verdict(b, tool_schemas=schemas, **config) == (
        "corrupted",
        ["tool_schema_invalid"],
    )


async def test_the_tool_name_is_the_first_name_attribute_that_is_not_empty(schemas):
    b = TraceBuilder(1).llm()
    b.tool(result={"hits": []}, key="output.value", span_name="web_search")
    span = b.spans[-1]
    span.attributes.add(key="openinference.span.kind").value.string_value = "TOOL"
    span.attributes.add(key="gen_ai.tool.name").value.string_value = ""
    span.attributes.add(key="tool.name").value.string_value = "web_search"
    assert await verdict(b, tool_schemas=schemas) == ("corrupted", ["tool_schema_invalid"])


async def test_the_failing_tool_span_says_where_its_result_broke_the_schema(schemas):
    b = TraceBuilder(1).llm().tool("calculator", {"value": "3.5"}).tool(result={"hits": []})
    b.tool("calculator", {"value": 2})
    p, sink = processor(tool_schemas=schemas)
    await p.consume_traces(await whole(b))
    tools = [attrs(s) for s in sink.spans() if s.name.startswith("execute_tool")]
    assert tools[0]["sieve.tool.schema_path"] == "/value"
    assert tools[0]["sieve.tool.schema_error"] == '"3.5" is not of type "number"'
    assert tools[1]["sieve.tool.schema_path"] == ""  # the result as a whole
    assert tools[1]["sieve.tool.schema_error"] == '"results" is a required property'
    assert not any(k.startswith("sieve.tool.") for k in tools[2])  # valid: nothing written


async def test_schema_errors_an_earlier_pass_wrote_are_replaced(schemas):
    b = TraceBuilder(1).llm().tool("calculator", {"value": 1}).tool("calculator", {"value": "x"})
    for span in b.spans[-2:]:
        span.attributes.add(key="sieve.tool.schema_error").value.string_value = "stale"
        span.attributes.add(key="sieve.tool.schema_path").value.string_value = "/stale"
    p, sink = processor(tool_schemas=schemas)
    await p.consume_traces(await whole(b))
    valid, invalid = [s for s in sink.spans() if s.name.startswith("execute_tool")]
    assert not any(kv.key.startswith("sieve.tool.") for kv in valid.attributes)
    keys = [kv.key for kv in invalid.attributes]
    assert keys.count("sieve.tool.schema_error") == keys.count("sieve.tool.schema_path") == 1
    assert attrs(invalid)["sieve.tool.schema_path"] == "/value"


async def test_the_task_class_is_written_on_the_root():
    a, b, c = await verdicts(
        TraceBuilder(1, task="support").llm(),
        TraceBuilder(2, root_attrs={"gen_ai.agent.name": "triage"}).llm(),
        TraceBuilder(3, root_attrs={}).llm(),
    )
    assert a["sieve.trace.task_class"] == "support"
    assert b["sieve.trace.task_class"] == "triage"
    assert c["sieve.trace.task_class"] == "invoke_workflow research"  # the root's name


async def test_tools_without_a_schema_and_failed_tools_are_not_checked(schemas):
    b = TraceBuilder(1).llm().tool("read_file", result={"anything": 1}).tool(error=True).tool()
    assert await verdict(b, tool_schemas=schemas) == ("noisy", ["tool_retry"])


async def test_a_tool_error_nobody_handled_is_a_swallowed_error():
    b = TraceBuilder(1).llm().tool("web_search", error=True).tool("calculator", {"value": 1})
    assert await verdict(b) == ("corrupted", ["swallowed_error"])


async def test_a_failed_llm_call_with_no_retry_is_a_swallowed_error():
    b = TraceBuilder(1).llm().tool().llm(error=True)
    (a,) = await verdicts(b)
    assert (a["sieve.trace.class"], a["sieve.trace.reasons"]) == ("corrupted", ["swallowed_error"])
    assert a["sieve.trace.providers"] == ["openai"]  # the successful call's


async def test_a_root_error_is_failed_and_not_a_swallowed_error():
    b = TraceBuilder(1, root_error=True).llm().tool(error=True)
    assert await verdict(b) == ("failed", [])
    b = TraceBuilder(2, root_error=True).llm(error=True).llm().tool(result={"x": 1})
    assert await verdict(b) == ("failed", ["llm_retry"])


async def test_the_worst_class_wins(schemas):
    b = TraceBuilder(1).llm(error=True).llm().tool(result={"hits": []})
    (a,) = await verdicts(b, tool_schemas=schemas)
    assert a["sieve.trace.class"] == "corrupted"
    assert a["sieve.trace.reasons"] == ["llm_retry", "tool_schema_invalid"]


async def test_reason_classes_override_the_defaults():
    cache = TraceBuilder(1).llm(response_id="r").llm(response_id="r")
    retry = TraceBuilder(2).llm().tool(error=True).tool()
    swallowed = TraceBuilder(3).llm().tool(error=True).tool("calculator", {"value": 1})
    got = await verdicts(
        cache,
        retry,
        swallowed,
        reason_classes={
            "cache_hit": "clean",
            "tool_retry": "corrupted",
            "swallowed_error": "noisy",
        },
    )
    assert [(a["sieve.trace.class"], a["sieve.trace.reasons"]) for a in got] == [
        ("clean", ["cache_hit"]),  # still named, no longer counted against the trace
        ("corrupted", ["tool_retry"]),
        ("noisy", ["swallowed_error"]),
    ]


# -- timing ------------------------------------------------------------------------------------


async def test_slow_needs_the_median_of_min_samples_clean_traces():
    timing = {"min_samples": 3, "max_ratio": 1.5}
    p, sink = processor(timing=timing)
    # noisy traces do not feed the median
    noisy = [TraceBuilder(n, seconds=10).llm(error=True).llm() for n in range(1, 4)]
    # three clean traces of 10 s: during the warm-up no ratio, no slow even at 30 s
    warm = [clean_trace(n, seconds=10) for n in range(4, 6)]
    early_slow = clean_trace(6, seconds=30)  # clean: it feeds the median too
    after = [
        clean_trace(7, seconds=11),  # 11 / median 10
        clean_trace(8, seconds=40),  # slow
        clean_trace(9, seconds=12, task="support"),  # another task class: no median
    ]
    batch = await whole(*noisy, *warm, early_slow, *after)
    await p.consume_traces(batch)
    got = roots(sink)
    for b in (*noisy, *warm, early_slow):
        assert "sieve.trace.duration_ratio" not in got[b.trace_id]
        assert "slow" not in got[b.trace_id]["sieve.trace.reasons"]
    a7, a8, a9 = (got[b.trace_id] for b in after)
    assert a7["sieve.trace.class"] == "clean"
    assert a7["sieve.trace.duration_ratio"] == pytest.approx(1.1, rel=0.03)
    assert (a8["sieve.trace.class"], a8["sieve.trace.reasons"]) == ("noisy", ["slow"])
    assert a8["sieve.trace.duration_ratio"] == pytest.approx(4.0, rel=0.03)
    assert "sieve.trace.duration_ratio" not in a9
    # the slow trace did not move the median: another 40 s trace is as slow
    p2 = clean_trace(10, seconds=40, start=T0 + 1000 * S)
    sink.batches.clear()
    await p.consume_traces(await whole(p2))
    assert roots(sink)[p2.trace_id]["sieve.trace.duration_ratio"] == pytest.approx(4.0, rel=0.03)


@pytest.mark.parametrize(
    ("root_attrs", "config_key"),
    [
        ({"task.class": "a", "gen_ai.workflow.name": "b"}, "task.class"),
        ({"gen_ai.workflow.name": "a", "gen_ai.agent.name": "b"}, "task.class"),
        ({"gen_ai.agent.name": "a"}, "task.class"),
        ({"job": "a", "task.class": "b"}, "job"),
        ({}, "task.class"),  # the root span's name
    ],
)
async def test_task_class_key_order(root_attrs, config_key):
    timing = {"min_samples": 2, "class_key": config_key}
    # two clean traces of class "a" at 10 s, then a 20 s trace with the attributes tested
    other = dict(root_attrs)
    ref = {config_key: "a"} if root_attrs else {}
    first = [clean_trace(n, seconds=10, root_attrs=ref, task="a") for n in (1, 2)]
    probe = clean_trace(3, seconds=20, root_attrs=other, task="a")
    got = await verdicts(*first, probe, timing=timing)
    assert got[2]["sieve.trace.duration_ratio"] == pytest.approx(2.0, rel=0.03)
    assert got[2]["sieve.trace.reasons"] == ["slow"]


# -- where and how it is written ---------------------------------------------------------------


async def test_attribute_types_and_source_attributes_untouched():
    b = clean_trace(1)
    before = attrs(b.root)
    p, sink = processor(timing={"min_samples": 1})
    await p.consume_traces(await whole(clean_trace(2), b))
    (root,) = [s for s in sink.spans() if s.trace_id == b.trace_id and not s.parent_span_id]
    values = {kv.key: kv.value for kv in root.attributes}
    assert values["sieve.trace.class"].WhichOneof("value") == "string_value"
    for k in ("sieve.trace.reasons", "sieve.trace.providers", "sieve.trace.models"):
        assert values[k].WhichOneof("value") == "array_value"
        assert all(x.WhichOneof("value") == "string_value" for x in values[k].array_value.values)
    assert values["sieve.trace.duration_ratio"].WhichOneof("value") == "double_value"
    after = attrs(root)
    assert {k: after[k] for k in before} == before
    # only the root span gets them
    others = [s for s in sink.spans() if s.trace_id == b.trace_id and s.parent_span_id]
    assert others and not any(k.startswith("sieve.trace.") for s in others for k in attrs(s))


async def test_existing_values_are_replaced_not_repeated():
    b = TraceBuilder(1).llm(error=True).llm()
    b.root.attributes.add(key="sieve.trace.class").value.string_value = "clean"
    b.root.attributes.add(key="sieve.trace.duration_ratio").value.double_value = 9.0
    p, sink = processor()
    await p.consume_traces(await whole(b))
    (root,) = [s for s in sink.spans() if not s.parent_span_id]
    keys = [kv.key for kv in root.attributes]
    assert keys.count("sieve.trace.class") == 1
    assert "sieve.trace.duration_ratio" not in keys  # no median: the stale value is gone
    assert attrs(root)["sieve.trace.class"] == "noisy"


async def test_without_a_root_every_span_gets_the_attributes():
    b = TraceBuilder(1, root=False).llm().tool(error=True).tool("calculator", {"value": 1})
    p, sink = processor()
    await p.consume_traces(await whole(b))
    spans = sink.spans()
    assert len(spans) == 4
    for s in spans:
        a = attrs(s)
        assert a["sieve.trace.class"] == "corrupted"
        assert a["sieve.trace.reasons"] == ["swallowed_error"]
        assert "sieve.trace.duration_ratio" not in a


async def test_late_fragments_get_the_result_of_their_trace():
    b = TraceBuilder(1).llm(error=True).llm()
    p, sink = processor()
    await p.consume_traces(await whole(b))
    # a late span of the same trace, as groupbytrace passes it on after the release
    late = make_span("late", b.trace_id, b"\x99" * 8, b.root_id, start=T0 + S)
    frag = make_traces([late])
    frag.trace_index = TraceIndex([TraceEntry(b.trace_id, 1, "late")], None)
    await p.consume_traces(frag)
    a = attrs(sink.batches[-1].request.resource_spans[0].scope_spans[0].spans[0])
    assert a["sieve.trace.class"] == "noisy" and a["sieve.trace.reasons"] == ["llm_retry"]
    assert frag.trace_index is not None
    assert frag.trace_index.entries[0].facts["sieve.trace.class"] == "noisy"


async def test_a_batch_without_index_is_grouped_by_trace_id():
    p, sink = processor()
    bad = TraceBuilder(2).llm().tool(error=True).tool("calculator", {"value": 1})
    await p.consume_traces(make_traces([*clean_trace(1).spans, *bad.spans]))
    got = roots(sink)
    assert got[tid(1)]["sieve.trace.class"] == "clean"
    assert got[tid(2)]["sieve.trace.class"] == "corrupted"


async def test_tail_sampling_keeps_by_the_class_written():
    ts_cfg = msgspec.convert(
        {"policies": [{"name": "c", "type": "cleanliness"}]}, TailSamplingConfig
    )
    sink = Sink()
    ts = TailSamplingProcessor(settings(id="tail_sampling"), ts_cfg, sink)
    p, _ = processor(sink=ts)  # type: ignore[arg-type]
    batch = await whole(clean_trace(1), TraceBuilder(2).llm(error=True).llm(), clean_trace(3))
    await p.consume_traces(batch)
    assert {s.trace_id for s in sink.spans()} == {tid(1), tid(3)}


async def test_traces_counted_by_class_and_reason():
    tel = Telemetry()
    p, _ = processor(tel=tel)
    await p.consume_traces(
        await whole(
            clean_trace(1),
            clean_trace(2),
            TraceBuilder(3).llm(error=True).llm(),
            TraceBuilder(4, root_error=True).llm(error=True).llm(),
        )
    )
    labels = {"processor": "test", "pipeline": "traces"}
    value = tel.registry.get_sample_value
    by_class = "tracesieve_cleanliness_traces_total"
    assert value(by_class, {**labels, "class": "clean"}) == 2
    assert value(by_class, {**labels, "class": "noisy"}) == 1
    assert value(by_class, {**labels, "class": "failed"}) == 1
    assert value(by_class, {**labels, "class": "corrupted"}) == 0
    assert value("tracesieve_cleanliness_reasons_total", {**labels, "reason": "llm_retry"}) == 2
    assert value("tracesieve_cleanliness_reasons_total", {**labels, "reason": "slow"}) == 0


# -- generator traces --------------------------------------------------------------------------

FAULT_CASES = [
    ([], "clean"),
    (["fallback"], "noisy"),
    (["llm_retry"], "noisy"),
    (["tool_retry"], "noisy"),
    (["cache_hit"], "noisy"),
    (["mismatch"], "noisy"),
    (["schema_invalid"], "corrupted"),
    (["swallowed_error"], "corrupted"),
    (["root_failure"], "failed"),
    (["llm_retry", "schema_invalid"], "corrupted"),
    (["swallowed_error", "root_failure"], "failed"),
]


@pytest.mark.parametrize("convention", CONVENTIONS)
async def test_generator_traces_of_every_fault(tmp_path, convention):
    write_tool_schemas(str(tmp_path))
    gen = Generator(7, warmup=0)
    made = [gen.trace(convention, faults) for faults, _ in FAULT_CASES]
    # slow: a warm-up of clean traces of one task class, then a slow one of it
    warm = [gen.trace(convention, []) for _ in range(60)]
    slow = gen.trace(convention, ["slow"])
    traces = [*made, *warm, slow]
    batch = make_traces([])
    for t in traces:
        batch.request.resource_spans.extend(t.resource_spans)
    p, sink = processor(tool_schemas=str(tmp_path), timing={"min_samples": 5})
    await p.consume_traces(Traces(batch.request))
    got = roots(sink)
    for t, (faults, cls) in zip(made, FAULT_CASES, strict=True):
        if set(faults) - set(t.truth["faults"]):
            cls = t.truth["expected"]["class"]  # a fault the framework cannot show: dropped
        a = got[t.trace_id]
        assert a["sieve.trace.class"] == t.truth["expected"]["class"] == cls, faults
        assert a["sieve.trace.reasons"] == t.truth["expected"]["reasons"], faults
        assert a["sieve.trace.providers"] == t.truth["served"]["providers"], faults
        flagged = {
            s.span_id.hex()
            for s in sink.spans()
            if s.trace_id == t.trace_id and "sieve.tool.schema_error" in attrs(s)
        }
        assert flagged == set(t.truth["tool_schema_invalid"]), faults
    a = got[slow.trace_id]
    assert (a["sieve.trace.class"], a["sieve.trace.reasons"]) == ("noisy", ["slow"])
    assert a["sieve.trace.duration_ratio"] > 1.5


# -- config ------------------------------------------------------------------------------------


def errors_of(raw: dict[str, Any]) -> list[str]:
    _, errs = decode(raw, CleanlinessConfig, "c")
    return errs


def test_default_config_is_valid():
    assert errors_of({}) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"reason_classes": {"flaky": "noisy"}}, "c::reason_classes: unknown reason 'flaky'"),
        (
            {"reason_classes": {"slow": "dirty"}},
            "c::reason_classes::slow: unknown class 'dirty' (valid: clean, noisy, corrupted, failed)",
        ),
        ({"timing": {"max_ratio": 0}}, "c::timing::max_ratio"),
        ({"timing": {"min_samples": 0}}, "c::timing::min_samples"),
        ({"tool_schemas": "/nonexistent/schemas"}, "'/nonexistent/schemas' does not exist"),
    ],
)
def test_config_errors_name_the_field(raw, expected):
    errs = errors_of(raw)
    assert any(expected in e for e in errs), errs


def test_a_broken_schema_file_is_named(tmp_path):
    (tmp_path / "ok.json").write_text('{"type": "object"}')
    (tmp_path / "typo.json").write_text('{"type": "objekt"}')
    (tmp_path / "trunc.json").write_text('{"type": ')
    (tmp_path / "list.json").write_text("[]")
    errs = errors_of({"tool_schemas": str(tmp_path)})
    assert len(errs) == 3, errs
    assert any(f"{tmp_path}/typo.json: invalid JSON Schema" in e for e in errs)
    assert any(f"{tmp_path}/trunc.json: not valid JSON" in e for e in errs)
    assert any(f"{tmp_path}/list.json: invalid JSON Schema" in e for e in errs)


def test_an_empty_schema_directory_is_refused(tmp_path):
    assert any(
        "holds no <tool name>.json schema" in e for e in errors_of({"tool_schemas": str(tmp_path)})
    )


def pipeline_config(processors: list[str]) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {"groupbytrace": {}, "batch": {}, "cleanliness": {}},
        "exporters": {"debug": {}},
        "service": {
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": processors, "exporters": ["debug"]}
            }
        },
    }


@pytest.mark.parametrize(
    "processors", [["cleanliness"], ["batch", "cleanliness"], ["cleanliness", "groupbytrace"]]
)
def test_pipeline_without_groupbytrace_before_cleanliness_is_refused(processors):
    with pytest.raises(ConfigError) as exc:
        config_mod.from_raw(pipeline_config(processors), REGISTRY)
    (err,) = exc.value.errors
    assert err.startswith(
        'service::pipelines::traces: processor "cleanliness" needs "groupbytrace" or '
        '"tail_sampling" before it'
    )
    assert "cleanliness classifies whole traces" in err


def test_pipeline_with_groupbytrace_before_cleanliness_is_accepted():
    cfg = config_mod.from_raw(pipeline_config(["groupbytrace", "batch", "cleanliness"]), REGISTRY)
    assert [p.type for p in cfg.pipelines["traces"].processors][-1] == "cleanliness"


async def test_the_enrichment_index_of_the_batch_is_shared_not_rebuilt():
    from processors import provider_reconciliation

    batch = await whole(TraceBuilder(1).llm(error=True).llm())
    mid = Sink(mutates_data=True)
    pr = provider_reconciliation.factory.create(
        settings(id="provider_reconciliation"),
        msgspec.convert({}, provider_reconciliation.factory.config_type),
        mid,
    )
    await pr.consume_traces(batch)
    (enriched,) = mid.batches
    built = enriched.genai_index("")
    assert isinstance(built, GenAIIndex) and built._facts is None
    p, sink = processor()
    await p.consume_traces(enriched)
    assert built._facts is not None  # cleanliness used the index the batch came with
    # ... and, the last stage that reads it, freed it (rebuilt if another stage asks)
    assert enriched.genai_index("") is None
    assert roots(sink)[tid(1)]["sieve.trace.reasons"] == ["llm_retry"]
    # with other hosts the index differs (another key): each config gets its own
    other = msgspec.convert({"hosts": {"llm.internal": "openai"}}, GenAIConfig)
    a, b = index_for(enriched), index_for(enriched, other)
    assert a is not b and index_for(enriched) is a and index_for(enriched, other) is b


async def test_task_classes_beyond_the_limit_are_forgotten_oldest_first():
    tel = Telemetry()
    p, sink = processor(tel=tel, timing={"min_samples": 1, "max_task_classes": 2})
    first = [clean_trace(n, seconds=10, task=t) for n, t in enumerate("abc", 1)]
    probes = [
        clean_trace(4, seconds=20, task="a", start=T0 + 100 * S),  # forgotten: no ratio
        clean_trace(5, seconds=20, task="c", start=T0 + 200 * S),
    ]
    await p.consume_traces(await whole(*first, *probes))
    got = roots(sink)
    assert "sieve.trace.duration_ratio" not in got[probes[0].trace_id]
    assert got[probes[1].trace_id]["sieve.trace.duration_ratio"] == pytest.approx(2.0, rel=0.03)
    labels = {"processor": "test", "pipeline": "traces"}
    assert tel.registry.get_sample_value("tracesieve_cleanliness_task_classes", labels) == 2


async def test_spans_whose_parents_loop_are_classified():
    t = tid(1)
    a, b = b"\x00" * 7 + b"\x01", b"\x00" * 7 + b"\x02"
    llm = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    spans = [
        make_span("chat gpt-4o", t, a, b, kind=CLIENT, attributes=llm),
        make_span("chat gpt-4o", t, b, a, kind=CLIENT, attributes=llm, status=ERROR),
        make_span("execute_tool x", t, b"\x00" * 7 + b"\x03", b"\x00" * 7 + b"\x03"),
    ]
    p, sink = processor()
    await p.consume_traces(make_traces(spans))
    classes = {attrs(s)["sieve.trace.class"] for s in sink.spans()}
    assert len(sink.spans()) == 3 and len(classes) == 1  # no root: every span, one verdict
