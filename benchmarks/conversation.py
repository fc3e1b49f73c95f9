"""The conversation of a generated trace, and its content on the LLM spans in the form each
convention captures it (`Generator(content=True)`, `--content`).

One conversation per trace: a system prompt, the task, the planner's plan, each worker
call's tool calls (one per tool of its round) answered by the tools' results (as the tool
spans carry them), and the final answer. Each LLM span gets the messages its call sent
(the conversation so far) and, when it succeeded, the message it returned; a failed
attempt carries its input only.

Where and how, per convention (`STYLES`, `LLM_SPANS`): which spans of a call are LLM spans
that capture content, and in which form:

- `otel`: `gen_ai.system_instructions`, `gen_ai.input.messages`, `gen_ai.output.messages`,
  `gen_ai.tool.definitions`, JSON strings or (one trace in two) structured values;
  tool results under `response` or (one trace in two) `result`;
- `otel_event`: the same on a `gen_ai.client.inference.operation.details` span event;
- `old_events`: `gen_ai.system.message`, `gen_ai.user.message`, `gen_ai.assistant.message`,
  `gen_ai.tool.message`, `gen_ai.choice` span events, the body as `gen_ai.event.content`
  JSON (no tool definitions);
- `openinference`: `llm.input_messages.N.message.*`, `llm.output_messages.0.message.*`,
  `llm.tools.N.tool.json_schema` (the task in `message.contents` parts one trace in two);
- `openllmetry`: `gen_ai.prompt.N.*`, `gen_ai.completion.0.*`, `llm.request.functions.N.*`.

A new convention is one line in each table. The gateways' own spans carry the content
(LiteLLM V2's CLIENT attempt spans, Bifrost's attempt spans): the app's span above them has
none, as when only the gateway captures it.

Ground truth (`truth()`, the trace's `conversation`): `messages` (OpenAI chat shape, the
whole conversation), `tools` (as the style carries them: [] for `old_events`), `turns`
(per assistant message: the logical call's `span_id`, `served`, `fallback`) and `style`;
each LLM call's truth gets `input_messages` (its input is the first that many messages).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = ["LLM_SPANS", "STYLES", "Conversation"]

# convention -> content style ("otel" may become "otel_event" for one trace in four)
STYLES: dict[str, str] = {
    "otel_genai": "otel",
    "otel_genai_legacy": "old_events",
    "openinference": "openinference",
    "openllmetry": "openllmetry",
    "litellm": "openllmetry",
    "litellm_v2": "otel",
    "bifrost": "otel",
    "portkey": "otel",
    "langchain_oi": "openinference",
    "langchain_traceloop": "openllmetry",
    "llamaindex": "openinference",
    "pydantic_ai": "otel",
    "openai_agents": "openinference",
    "agent_guide": "otel",
}

# convention -> (scope, span name) -> whether the span is an LLM span that captures content
LLM_SPANS: dict[str, Callable[[str, str], bool]] = {
    "otel_genai": lambda sc, n: sc != "com.anthropic.sdk.python" and n.startswith("chat "),
    "otel_genai_legacy": lambda sc, n: n.startswith("chat "),
    "openinference": lambda sc, n: (
        sc.startswith("openinference.instrumentation.") and n in ("ChatCompletion", "Messages")
    ),
    "openllmetry": lambda sc, n: n in ("openai.chat", "anthropic.chat"),
    "litellm": lambda sc, n: sc == "litellm" and n == "litellm_request",
    "litellm_v2": lambda sc, n: sc == "litellm" and n.startswith("chat "),
    "bifrost": lambda sc, n: sc == "bifrost" and n in ("llm.call", "retry", "fallback"),
    "portkey": lambda sc, n: n.startswith("chat "),
    "langchain_oi": lambda sc, n: n.startswith("Chat") and "langchain" in sc,
    "langchain_traceloop": lambda sc, n: n.startswith("Chat") and n.endswith(".chat"),
    "llamaindex": lambda sc, n: n.endswith(".achat"),
    "pydantic_ai": lambda sc, n: sc == "pydantic-ai" and n.startswith("chat "),
    "openai_agents": lambda sc, n: n == "generation",
    # the guide's own LLM spans (not a second instrumentation's twin beside them)
    "agent_guide": lambda sc, n: n in ("llm.generate", "agent.step:respond"),
}

_TASKS = {
    "research": ["Find recent sources on {t} and summarise them.", "What is known about {t}?"],
    "code_fix": ["Fix the failing test in {t}.", "The build breaks in {t}: repair it."],
    "support": ["A customer asks about {t}. Help them.", "Answer the ticket about {t}."],
    "data_analysis": ["Compute the weekly totals of {t}.", "Chart the trend of {t}."],
}
_TOPICS = ["billing", "the search index", "login errors", "shipping delays", "the parser", "orders"]


def any_value(v: Any) -> AnyValue:
    """A Python value as an OTLP AnyValue (None entries of a dict left out)."""
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[any_value(x) for x in v]))
    if isinstance(v, dict):
        return AnyValue(
            kvlist_value=KeyValueList(
                values=[KeyValue(key=k, value=any_value(x)) for k, x in v.items() if x is not None]
            )
        )
    return AnyValue(string_value=str(v))


def key_values(d: dict[str, Any]) -> list[KeyValue]:
    """Attributes as OTLP KeyValues, None values left out."""
    return [KeyValue(key=k, value=any_value(v)) for k, v in d.items() if v is not None]


class Conversation:
    def __init__(
        self, convention: str, task_class: str, rounds: list[tuple[int, list[Any]]], trace_id: bytes
    ) -> None:
        r = self.r = random.Random(trace_id)  # its own stream: the trace's spans are unchanged
        self.convention = convention
        style = STYLES[convention]
        if style == "otel" and convention == "otel_genai" and r.random() < 0.25:
            style = "otel_event"
        self.style = style
        self.structured = r.random() < 0.5  # otel: structured values rather than JSON text
        self.result_key = "result" if r.random() < 0.5 else "response"
        self.parts = r.random() < 0.5  # openinference: the task as message_content parts
        self.rounds = dict(rounds)
        names = sorted({t.name for _, ts in rounds for t in ts})
        self.tools: list[dict[str, Any]] = [
            {
                "type": "function",
                "function": {
                    "name": n,
                    "description": f"The {n} tool.",
                    "parameters": {
                        "type": "object",
                        "properties": {"query": {"type": "string"}},
                        "required": ["query"],
                    },
                },
            }
            for n in names
        ]
        task = r.choice(_TASKS[task_class]).format(t=r.choice(_TOPICS))
        self.messages: list[dict[str, Any]] = [
            {"role": "system", "content": f"You are the {task_class} agent. Use the tools."},
            {"role": "user", "content": task},
        ]
        self.turns: list[dict[str, Any]] = []
        self.n_calls = 0

    # -- the conversation --------------------------------------------------------------------
    def _answer(self, ci: int) -> dict[str, Any]:
        r = self.r
        tools = self.rounds.get(ci)
        if tools is None:  # the planner's plan, or the final answer
            if not self.turns:
                return {"role": "assistant", "content": f"Plan: {r.randint(2, 5)} steps."}
            return {"role": "assistant", "content": f"Done: {r.choice(_TOPICS)} handled."}
        calls = []
        for t in tools:
            t.call_id = f"call_{r.getrandbits(48):012x}"
            t.args = json.dumps({"query": f"{t.name} {r.randint(1, 999)}"})
            calls.append(
                {
                    "id": t.call_id,
                    "type": "function",
                    "function": {"name": t.name, "arguments": t.args},
                }
            )
        msg: dict[str, Any] = {"role": "assistant", "tool_calls": calls}
        if r.random() < 0.3:
            msg["content"] = "Let me check."
        return msg

    def call(self, ci: int, truth: dict[str, Any], spans: list[tuple[str, Span]]) -> None:
        """The call `ci` was rendered as `spans` (those made for it): content on its LLM
        spans; its answer joins the conversation unless it failed (a failed run)."""
        inp = list(self.messages)
        out = self._answer(ci)
        is_llm = LLM_SPANS[self.convention]
        for scope, s in spans:
            if is_llm(scope, s.name):
                failed = s.status.code == 2  # ERROR: an attempt that got no answer
                self._attach(s, inp, None if failed else out)
        truth["input_messages"] = len(inp)
        if truth.get("failed"):
            return
        self.messages.append(out)
        self.turns.append(
            {"span_id": truth["span_id"], "served": truth["served"], "fallback": truth["fallback"]}
        )

    def tool_result(self, tool: Any, result: str) -> None:
        if tool.call_id:
            self.messages.append({"role": "tool", "tool_call_id": tool.call_id, "content": result})

    def truth(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "tools": [] if self.style == "old_events" else self.tools,
            "turns": self.turns,
            "style": self.style,
        }

    # -- on the spans --------------------------------------------------------------------------
    def _attach(self, s: Span, inp: list[dict[str, Any]], out: dict[str, Any] | None) -> None:
        style = self.style
        if style in ("otel", "otel_event"):
            attrs = self._otel(inp, out)
            if style == "otel":
                s.attributes.extend(key_values(attrs))
            else:
                ev = s.events.add()
                ev.name = "gen_ai.client.inference.operation.details"
                ev.time_unix_nano = s.end_time_unix_nano
                ev.attributes.extend(key_values(attrs))
        elif style == "old_events":
            self._old_events(s, inp, out)
        elif style == "openinference":
            s.attributes.extend(key_values(self._openinference(inp, out)))
        else:
            s.attributes.extend(key_values(self._openllmetry(inp, out)))

    def _value(self, v: Any) -> Any:
        return v if self.structured else json.dumps(v)

    def _otel(self, inp: list[dict[str, Any]], out: dict[str, Any] | None) -> dict[str, Any]:
        def parts(m: dict[str, Any]) -> list[dict[str, Any]]:
            if m["role"] == "tool":
                return [
                    {
                        "type": "tool_call_response",
                        "id": m["tool_call_id"],
                        self.result_key: m["content"],
                    }
                ]
            ps: list[dict[str, Any]] = []
            if m.get("content"):
                ps.append({"type": "text", "content": m["content"]})
            for c in m.get("tool_calls", ()):
                fn = c["function"]
                ps.append(
                    {
                        "type": "tool_call",
                        "id": c["id"],
                        "name": fn["name"],
                        "arguments": json.loads(fn["arguments"]),
                    }
                )
            return ps

        system = [m for m in inp if m["role"] == "system"]
        rest = [m for m in inp if m["role"] != "system"]
        attrs: dict[str, Any] = {
            "gen_ai.system_instructions": self._value(
                [{"type": "text", "content": m["content"]} for m in system]
            ),
            "gen_ai.input.messages": self._value(
                [{"role": m["role"], "parts": parts(m)} for m in rest]
            ),
            "gen_ai.tool.definitions": self._value(
                [{"type": "function", **t["function"]} for t in self.tools]
            ),
        }
        if out is not None:
            finish = "tool_calls" if out.get("tool_calls") else "stop"
            attrs["gen_ai.output.messages"] = self._value(
                [{"role": "assistant", "parts": parts(out), "finish_reason": finish}]
            )
        return attrs

    def _old_events(self, s: Span, inp: list[dict[str, Any]], out: dict[str, Any] | None) -> None:
        def add(name: str, body: dict[str, Any]) -> None:
            ev = s.events.add()
            ev.name = name
            ev.time_unix_nano = s.start_time_unix_nano
            ev.attributes.extend(
                key_values({"gen_ai.system": "openai", "gen_ai.event.content": json.dumps(body)})
            )

        for m in inp:
            role = m["role"]
            if role == "tool":
                add("gen_ai.tool.message", {"content": m["content"], "id": m["tool_call_id"]})
            elif role == "assistant":
                body = {k: v for k, v in m.items() if k in ("content", "tool_calls")}
                add("gen_ai.assistant.message", body)
            else:
                add(f"gen_ai.{role}.message", {"content": m["content"]})
        if out is not None:
            msg = {k: v for k, v in out.items() if k in ("content", "tool_calls")}
            finish = "tool_calls" if out.get("tool_calls") else "stop"
            add("gen_ai.choice", {"index": 0, "finish_reason": finish, "message": msg})

    def _openinference(
        self, inp: list[dict[str, Any]], out: dict[str, Any] | None
    ) -> dict[str, Any]:
        attrs: dict[str, Any] = {}

        def put(prefix: str, m: dict[str, Any]) -> None:
            attrs[f"{prefix}.message.role"] = m["role"]
            if m["role"] == "user" and self.parts:
                attrs[f"{prefix}.message.contents.0.message_content.type"] = "text"
                attrs[f"{prefix}.message.contents.0.message_content.text"] = m["content"]
            elif m.get("content") is not None:
                attrs[f"{prefix}.message.content"] = m["content"]
            if m["role"] == "tool":
                attrs[f"{prefix}.message.tool_call_id"] = m["tool_call_id"]
            for j, c in enumerate(m.get("tool_calls", ())):
                tc = f"{prefix}.message.tool_calls.{j}.tool_call"
                attrs[f"{tc}.id"] = c["id"]
                attrs[f"{tc}.function.name"] = c["function"]["name"]
                attrs[f"{tc}.function.arguments"] = c["function"]["arguments"]

        for i, m in enumerate(inp):
            put(f"llm.input_messages.{i}", m)
        if out is not None:
            put("llm.output_messages.0", out)
        for i, t in enumerate(self.tools):
            attrs[f"llm.tools.{i}.tool.json_schema"] = json.dumps(t)
        return attrs

    def _openllmetry(self, inp: list[dict[str, Any]], out: dict[str, Any] | None) -> dict[str, Any]:
        attrs: dict[str, Any] = {}

        def put(prefix: str, m: dict[str, Any]) -> None:
            attrs[f"{prefix}.role"] = m["role"]
            if m.get("content") is not None:
                attrs[f"{prefix}.content"] = m["content"]
            if m["role"] == "tool":
                attrs[f"{prefix}.tool_call_id"] = m["tool_call_id"]
            for j, c in enumerate(m.get("tool_calls", ())):
                attrs[f"{prefix}.tool_calls.{j}.id"] = c["id"]
                attrs[f"{prefix}.tool_calls.{j}.name"] = c["function"]["name"]
                attrs[f"{prefix}.tool_calls.{j}.arguments"] = c["function"]["arguments"]

        for i, m in enumerate(inp):
            put(f"gen_ai.prompt.{i}", m)
        if out is not None:
            put("gen_ai.completion.0", out)
            attrs["gen_ai.completion.0.finish_reason"] = (
                "tool_calls" if out.get("tool_calls") else "stop"
            )
        for i, t in enumerate(self.tools):
            fn = t["function"]
            attrs[f"llm.request.functions.{i}.name"] = fn["name"]
            attrs[f"llm.request.functions.{i}.description"] = fn["description"]
            attrs[f"llm.request.functions.{i}.parameters"] = json.dumps(fn["parameters"])
        return attrs
