"""A multi-turn, tool-calling agent, instrumented for real with message content capture on,
run as a subprocess by the tests:

    python -m tests.dataset.agent_app --instrumentation openai-v2 \
        --otlp 127.0.0.1:4317 --openai http://127.0.0.1:P

The `openai` SDK with `opentelemetry-instrumentation-openai-v2` (the latest GenAI
conventions, content on the span: `gen_ai.input.messages`, ...) or
`openinference-instrumentation-openai` (`llm.input_messages.N.*`, ...), httpx instrumented,
spans through the OTel SDK's OTLP/gRPC exporter. The fake API
(`tests.processors.genai.fake_llm.FakeLLM`) answers what the app scripts in
`x-fake-reply`. One trace per scenario; prints {scenario: trace id hex} as JSON.

- `weather`: system prompt, a question, two parallel tool calls answered by the tools, the
  answer, a follow-up question and its answer (3 calls, one conversation).
- `two_agents`: a researcher agent (one tool call, then its answer) and a writer agent (one
  call) under one workflow: two conversations in one trace.
- `fallback`: a tool call on gpt-4o; the next call fails (500) and the app falls back to
  gpt-4o-mini, which answers; a follow-up answered by gpt-4o again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}


def _call(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instrumentation", choices=("openai-v2", "openinference"), required=True)
    ap.add_argument("--otlp", required=True)
    ap.add_argument("--openai", required=True)
    args = ap.parse_args(argv)
    # content capture on, on the span (set before the instrumentation reads them)
    os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "span_only"

    from tests.processors.genai.instrumented_app import otel_setup

    provider = otel_setup(args.otlp, (args.instrumentation,))

    import openai

    oai = openai.OpenAI(base_url=args.openai + "/v1", api_key="test", max_retries=0)
    tracer = provider.get_tracer("agent-app")
    out: dict[str, str] = {}

    def chat(
        messages: list[dict[str, Any]],
        reply: dict[str, Any],
        tools: list[dict[str, Any]] | None = None,
        model: str = "gpt-4o",
        scenario: str = "ok",
    ) -> None:
        """One call; the reply (as the fake returns it) appended to `messages`."""
        kw: dict[str, Any] = {"tools": tools} if tools else {}
        resp = oai.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            extra_headers={"x-fake-reply": json.dumps(reply), "x-fake-scenario": scenario},
            **kw,
        )
        msg = resp.choices[0].message
        turn: dict[str, Any] = {"role": "assistant", "content": msg.content}
        if msg.tool_calls:
            turn["tool_calls"] = [tc.model_dump() for tc in msg.tool_calls]
        messages.append(turn)

    def tool(name: str, call: dict[str, Any], result: str) -> dict[str, Any]:
        with tracer.start_as_current_span(
            f"execute_tool {name}",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": call["id"],
            },
        ):
            return {"role": "tool", "tool_call_id": call["id"], "content": result}

    def span(name: str, task: str = "") -> Any:
        attributes = {"task.class": task} if task else {}
        return tracer.start_as_current_span(name, attributes=attributes)

    # -- weather: one agent, three calls ----------------------------------------------------
    with span("invoke_agent weather", "weather") as root:
        paris = _call("call_paris", "get_weather", {"city": "Paris"})
        lyon = _call("call_lyon", "get_weather", {"city": "Lyon"})
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a weather assistant. Use the tools."},
            {"role": "user", "content": "What is the weather in Paris and in Lyon?"},
        ]
        chat(messages, {"content": None, "tool_calls": [paris, lyon]}, [WEATHER_TOOL])
        messages.append(tool("get_weather", paris, '{"temp_c": 18, "sky": "cloudy"}'))
        messages.append(tool("get_weather", lyon, '{"temp_c": 21, "sky": "sunny"}'))
        chat(messages, {"content": "Paris: 18°C, cloudy. Lyon: 21°C, sunny."}, [WEATHER_TOOL])
        messages.append({"role": "user", "content": "Which one is warmer?"})
        chat(messages, {"content": "Lyon, by 3 degrees."}, [WEATHER_TOOL])
        out["weather"] = f"{root.get_span_context().trace_id:032x}"

    # -- two agents in one workflow ---------------------------------------------------------
    with span("invoke_workflow report", "report") as root:
        with span("invoke_agent researcher"):
            q = _call("call_q1", "search", {"query": "tracesieve license"})
            research: list[dict[str, Any]] = [
                {"role": "system", "content": "You research facts."},
                {"role": "user", "content": "Find the license of tracesieve."},
            ]
            chat(research, {"content": None, "tool_calls": [q]}, [SEARCH_TOOL])
            research.append(tool("search", q, "Apache-2.0, per its repository"))
            chat(research, {"content": "It is Apache-2.0."}, [SEARCH_TOOL])
        with span("invoke_agent writer"):
            writing: list[dict[str, Any]] = [
                {"role": "user", "content": "Write one sentence: tracesieve is Apache-2.0."}
            ]
            chat(writing, {"content": "tracesieve is released under Apache-2.0."})
        out["two_agents"] = f"{root.get_span_context().trace_id:032x}"

    # -- a fallback in the middle of a conversation -----------------------------------------
    with span("invoke_agent weather", "weather") as root:
        call = _call("call_oslo", "get_weather", {"city": "Oslo"})
        fb: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a weather assistant. Use the tools."},
            {"role": "user", "content": "Weather in Oslo?"},
        ]
        chat(fb, {"content": None, "tool_calls": [call]}, [WEATHER_TOOL])
        fb.append(tool("get_weather", call, '{"temp_c": 4, "sky": "snow"}'))
        try:
            chat(fb, {"content": "unused"}, [WEATHER_TOOL], scenario="always-500")
        except openai.InternalServerError:
            chat(fb, {"content": "Oslo: 4°C and snowing."}, [WEATHER_TOOL], model="gpt-4o-mini")
        fb.append({"role": "user", "content": "Should I take a coat?"})
        chat(fb, {"content": "Yes, a warm one."}, [WEATHER_TOOL])
        out["fallback"] = f"{root.get_span_context().trace_id:032x}"

    provider.force_flush()
    provider.shutdown()
    print(json.dumps(out))
    return 0


def run(instrumentation: str, otlp: str, openai_url: str) -> dict[str, str]:
    """Run the app in a subprocess, as the tests do; returns {scenario: trace id hex}."""
    from tests.processors.genai.instrumented_app import run_app

    return run_app(
        "tests.dataset.agent_app",
        *("--instrumentation", instrumentation, "--otlp", otlp, "--openai", openai_url),
    )


if __name__ == "__main__":
    sys.exit(main())
