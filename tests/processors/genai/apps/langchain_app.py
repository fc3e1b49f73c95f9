"""A small LangChain agent, instrumented for real, against the fake LLM APIs:

    python tests/processors/genai/apps/langchain_app.py --instrumentation openinference \
        --otlp 127.0.0.1:4317 --openai http://127.0.0.1:P1 --anthropic http://127.0.0.1:P2

`--instrumentation`: `openinference` (openinference-instrumentation-langchain) or
`traceloop` (opentelemetry-instrumentation-langchain); httpx is instrumented too. One trace
per scenario, each one run of the agent (a `RunnableLambda` named after the scenario) under
an app root span, as a request handler's span would be (the callback-based instrumentations
do not make their spans current, so the HTTP spans land under that root, not in traces of
their own); prints {scenario: trace id hex} as JSON. The tool-calling agent is
LangGraph's prebuilt ReAct agent, whose ToolNode hands a tool's exception back to the model
as an error `ToolMessage`.

Scenarios, each with the framework's own feature:
- `plain`: one chat call.
- `sdk_retry`: the OpenAI SDK retries a 500 (`max_retries=2`).
- `framework_retry`: `.with_retry()` around a model whose SDK does not retry.
- `fallback`: `.with_fallbacks([ChatAnthropic])` around an OpenAI model that fails.
- `tool`: the agent calls a tool, then answers.
- `tool_retry`: the tool fails once, the model sees the error and calls it again.
- `swallowed`: the tool fails, the model answers without calling it again.
- `cache`: `set_llm_cache(InMemoryCache())`, the same prompt twice: the second call is
  served from LangChain's cache, no request.
- `failed`: the model fails after the SDK's retries; the run fails (the app root span,
  whose handler logs the error, stays OK).
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _otel import App


def main(argv: list[str] | None = None) -> int:
    app = App(__doc__.split("\n\n")[0], argv)
    instr = app.args.instrumentation or "openinference"
    if instr == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        LangChainInstrumentor().instrument(tracer_provider=app.provider)
    elif instr == "traceloop":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor

        LangchainInstrumentor().instrument(tracer_provider=app.provider)
    else:
        raise SystemExit(f"unknown instrumentation {instr!r}")

    from langchain_anthropic import ChatAnthropic
    from langchain_core.caches import InMemoryCache
    from langchain_core.globals import set_llm_cache
    from langchain_core.runnables import RunnableLambda
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import ToolNode, create_react_agent

    def gpt(scenario: str, retries: int = 2, model: str = "gpt-4o") -> ChatOpenAI:
        return ChatOpenAI(
            model=model,
            base_url=app.args.openai + "/v1",
            api_key="test",  # type: ignore[arg-type]
            max_retries=retries,
            default_headers={"x-fake-scenario": app.scenario(scenario)},
        )

    def claude(scenario: str) -> ChatAnthropic:
        return ChatAnthropic(  # type: ignore[call-arg]
            model="claude-sonnet-4-6",
            base_url=app.args.anthropic,
            api_key="test",  # type: ignore[arg-type]
            max_retries=0,
            default_headers={"x-fake-scenario": app.scenario(scenario)},
        )

    failures = {"left": 0}

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("weather service error: unavailable")
        return f"sunny in {city}"

    def agent_loop(model: Any, question: str) -> str:
        """LangGraph's prebuilt ReAct agent: model node, tools node, model node... A tool's
        exception goes back to the model as an error ToolMessage (`handle_tool_errors`)."""
        graph = create_react_agent(model, ToolNode([get_weather], handle_tool_errors=True))
        out = graph.invoke({"messages": [("user", question)]})
        return str(out["messages"][-1].content)

    def run(name: str, body: Any) -> None:
        with app.run(name):
            RunnableLambda(body).with_config(run_name=f"agent {name}").invoke({"q": "plan"})

    run("plain", lambda _: gpt("ok").invoke("plan the task").content)
    run("sdk_retry", lambda _: gpt("fail-once").invoke("plan the task").content)
    run(
        "framework_retry",
        lambda _: (
            gpt("fail-first:1", retries=0)
            .with_retry(stop_after_attempt=3, wait_exponential_jitter=False)
            .invoke("plan the task")
            .content
        ),
    )
    run(
        "fallback",
        lambda _: (
            gpt("always-500", retries=0)
            .with_fallbacks([claude("ok")])
            .invoke("plan the task")
            .content
        ),
    )
    run("tool", lambda _: agent_loop(gpt("ok"), "weather in Paris?"))

    def tool_retry(_: Any) -> str:
        failures["left"] = 1
        return agent_loop(gpt("ok"), "weather in Paris?")

    run("tool_retry", tool_retry)

    def swallowed(_: Any) -> str:
        failures["left"] = 1
        return agent_loop(gpt("give-up"), "weather in Paris?")

    run("swallowed", swallowed)

    def cached(_: Any) -> str:
        set_llm_cache(InMemoryCache())
        try:
            m = gpt("ok")
            m.invoke("plan the task")
            return str(m.invoke("plan the task").content)
        finally:
            set_llm_cache(None)

    run("cache", cached)
    run("failed", lambda _: agent_loop(gpt("always-500", retries=1), "weather in Paris?"))
    return app.finish()


if __name__ == "__main__":
    sys.exit(main())
