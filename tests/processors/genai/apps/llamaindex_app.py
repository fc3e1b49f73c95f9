"""A small LlamaIndex agent (`FunctionAgent`), instrumented with
`openinference-instrumentation-llama-index`, httpx instrumented, against the fake APIs.
LlamaIndex's OpenAI integration pins `openai<3`, so this runs in a virtualenv of its own
(`tests/processors/genai/apps/requirements-llamaindex.txt`), as a user's app would:

    <venv>/bin/python tests/processors/genai/apps/llamaindex_app.py \
        --otlp 127.0.0.1:4317 --openai http://127.0.0.1:P1 --anthropic http://127.0.0.1:P2

One trace per scenario, each one agent run under an app root span; prints
{scenario: trace id hex} as JSON.

Scenarios, each with the framework's own feature:
- `plain`: one chat call.
- `sdk_retry`: LlamaIndex's OpenAI LLM retries a 500 (`max_retries=2`).
- `fallback`: LlamaIndex has none: the app catches the error of an agent on `gpt-4o` and
  runs it again on `gpt-4o-mini`, in the same trace.
- `tool`: the agent calls a tool, then answers.
- `tool_retry`: the tool fails once (the agent hands the error to the model), the model
  calls it again.
- `swallowed`: the tool fails, the model answers without calling it again.
- `failed`: the model fails after the retries; the run fails (the app root is left OK).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _otel import App


def main(argv: list[str] | None = None) -> int:
    app = App(__doc__.split("\n\n")[0], argv)

    from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

    LlamaIndexInstrumentor().instrument(tracer_provider=app.provider)

    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.llms import ChatMessage
    from llama_index.core.tools import FunctionTool
    from llama_index.llms.openai import OpenAI

    def llm(scenario: str, retries: int = 2, model: str = "gpt-4o") -> OpenAI:
        return OpenAI(
            model=model,
            api_base=app.args.openai + "/v1",
            api_key="test",
            max_retries=retries,
            default_headers={"x-fake-scenario": app.scenario(scenario)},
        )

    failures = {"left": 0}

    def get_weather(city: str) -> str:
        """The weather in a city."""
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("weather service error: unavailable")
        return f"sunny in {city}"

    weather = FunctionTool.from_defaults(get_weather)

    def agent(model: OpenAI) -> FunctionAgent:
        return FunctionAgent(
            name="weather_agent",
            tools=[weather],
            llm=model,
            system_prompt="Answer questions about the weather.",
            streaming=False,
        )

    async def ask(a: FunctionAgent) -> str:
        return str(await a.run("weather in Paris?"))

    def run(name: str, model: Callable[[], OpenAI], fail_tool: int = 0) -> None:
        failures["left"] = fail_tool
        with app.run(name):
            asyncio.run(ask(agent(model())))

    with app.run("plain"):
        llm("ok").chat([ChatMessage(role="user", content="plan the task")])
    with app.run("sdk_retry"):
        llm("fail-once").chat([ChatMessage(role="user", content="plan the task")])

    async def fallback() -> str:
        try:
            return await ask(agent(llm("always-500", retries=0)))
        except Exception:  # the app falls back to another model
            return await ask(agent(llm("ok", model="gpt-4o-mini")))

    with app.run("fallback"):
        asyncio.run(fallback())
    run("tool", lambda: llm("ok"))
    run("tool_retry", lambda: llm("ok"), fail_tool=1)
    run("swallowed", lambda: llm("give-up"), fail_tool=1)
    run("failed", lambda: llm("always-500", retries=1))
    return app.finish()


if __name__ == "__main__":
    sys.exit(main())
