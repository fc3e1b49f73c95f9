"""A small OpenAI Agents SDK agent, instrumented with
`openinference-instrumentation-openai-agents`, httpx instrumented, against the fake APIs:

    python tests/processors/genai/apps/openai_agents_app.py \
        --otlp 127.0.0.1:4317 --openai http://127.0.0.1:P1 --anthropic http://127.0.0.1:P2

One trace per scenario, each an Agents SDK `trace()` (the instrumentation's root span);
prints {scenario: trace id hex} as JSON. Models are `OpenAIChatCompletionsModel`s; the
Anthropic one talks to Anthropic's OpenAI-compatible endpoint.

Scenarios, each with the framework's own feature:
- `plain`: one model call.
- `sdk_retry`: the OpenAI SDK retries a 500 (`max_retries=2` on the client).
- `framework_retry`: the runner's own retry (`ModelSettings(retry=ModelRetrySettings)`)
  with a client that does not retry.
- `fallback`: the SDK has none: the app catches the OpenAI model's error and runs the agent
  again with the Anthropic model, in the same trace.
- `tool`: the agent calls a function tool, then answers.
- `tool_retry`: the tool fails once (the SDK hands the error text to the model), the
  model calls it again.
- `swallowed`: the tool fails, the model answers without calling it again.
- `failed`: the model fails after the SDK's retries; the run fails (the trace's root span,
  the SDK's trace, is left OK).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _otel import App


def main(argv: list[str] | None = None) -> int:
    app = App(__doc__.split("\n\n")[0], argv)

    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    OpenAIAgentsInstrumentor().instrument(tracer_provider=app.provider)

    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        Runner,
        function_tool,
        trace,
    )
    from agents.retry import ModelRetrySettings, retry_policies
    from openai import AsyncOpenAI

    def model(scenario: str, retries: int = 2, name: str = "gpt-4o") -> OpenAIChatCompletionsModel:
        base = app.args.anthropic if name.startswith("claude") else app.args.openai
        client = AsyncOpenAI(
            base_url=base + "/v1",
            api_key="test",
            max_retries=retries,
            default_headers={"x-fake-scenario": app.scenario(scenario)},
        )
        return OpenAIChatCompletionsModel(model=name, openai_client=client)

    failures = {"left": 0}

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("weather service error: unavailable")
        return f"sunny in {city}"

    def agent(m: OpenAIChatCompletionsModel, tools: bool = False, **settings: object) -> Agent:
        return Agent(
            name="weather_agent",
            instructions="Answer questions about the weather.",
            model=m,
            tools=[get_weather] if tools else [],
            model_settings=ModelSettings(**settings),  # type: ignore[arg-type]
        )

    def run(name: str, a: Callable[[], Agent], fail_tool: int = 0) -> None:
        failures["left"] = fail_tool
        with app.run(name, root=False), trace(name):
            Runner.run_sync(a(), "weather in Paris?")

    run("plain", lambda: agent(model("ok")))
    run("sdk_retry", lambda: agent(model("fail-once")))
    retry = ModelRetrySettings(
        max_retries=2,
        backoff={"initial_delay": 0.01, "max_delay": 0.01, "jitter": False},
        policy=retry_policies.http_status([500]),
    )
    run("framework_retry", lambda: agent(model("fail-first:1", retries=0), retry=retry))

    with app.run("fallback", root=False), trace("fallback"):
        try:
            Runner.run_sync(agent(model("always-500", retries=0)), "weather in Paris?")
        except Exception:  # the app falls back to another model
            Runner.run_sync(agent(model("ok", name="claude-sonnet-4-6")), "weather in Paris?")
    run("tool", lambda: agent(model("ok"), tools=True))
    run("tool_retry", lambda: agent(model("ok"), tools=True), fail_tool=1)
    run("swallowed", lambda: agent(model("give-up"), tools=True), fail_tool=1)
    run("failed", lambda: agent(model("always-500", retries=1), tools=True))
    return app.finish()


if __name__ == "__main__":
    sys.exit(main())
