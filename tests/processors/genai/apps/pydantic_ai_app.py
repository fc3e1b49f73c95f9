"""A small PydanticAI agent with PydanticAI's own OpenTelemetry instrumentation
(`Agent.instrument_all`), httpx instrumented, against the fake LLM APIs:

    python tests/processors/genai/apps/pydantic_ai_app.py \
        --otlp 127.0.0.1:4317 --openai http://127.0.0.1:P1 --anthropic http://127.0.0.1:P2

One trace per scenario, each one agent run (PydanticAI's `invoke_agent` span is the root);
prints {scenario: trace id hex} as JSON.

Scenarios, each with the framework's own feature:
- `plain`: one model request.
- `sdk_retry`: the OpenAI SDK retries a 500 (`max_retries=2` on the client).
- `fallback`: `FallbackModel(OpenAI that fails, Anthropic)`.
- `tool`: the agent calls a tool, then answers.
- `tool_retry`: the tool raises `ModelRetry` once; the model sees the retry prompt and
  calls it again.
- `swallowed`: the tool raises `ModelRetry`; the model answers without calling it again.
- `failed`: the model fails after the SDK's retries; the run fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _otel import App


def main(argv: list[str] | None = None) -> int:
    app = App(__doc__.split("\n\n")[0], argv)

    from anthropic import AsyncAnthropic
    from openai import AsyncOpenAI
    from pydantic_ai import Agent, ModelRetry
    from pydantic_ai.models import Model
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.models.fallback import FallbackModel
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.anthropic import AnthropicProvider
    from pydantic_ai.providers.openai import OpenAIProvider

    Agent.instrument_all(InstrumentationSettings(tracer_provider=app.provider))

    def gpt(scenario: str, retries: int = 2) -> Model:
        client = AsyncOpenAI(
            base_url=app.args.openai + "/v1",
            api_key="test",
            max_retries=retries,
            default_headers={"x-fake-scenario": app.scenario(scenario)},
        )
        return OpenAIChatModel("gpt-4o", provider=OpenAIProvider(openai_client=client))

    def claude(scenario: str) -> Model:
        client = AsyncAnthropic(
            base_url=app.args.anthropic,
            api_key="test",
            max_retries=0,
            default_headers={"x-fake-scenario": app.scenario(scenario)},
        )
        return AnthropicModel(
            "claude-sonnet-4-6",
            provider=AnthropicProvider(anthropic_client=client),
            settings={"max_tokens": 1024},  # else the SDK wants a stream for the model's max
        )

    failures = {"left": 0}

    def get_weather(city: str) -> str:
        """The weather in a city."""
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ModelRetry("weather service error: unavailable, try again")
        return f"sunny in {city}"

    def agent(model: Model, tools: bool = False) -> Agent[None, str]:
        return Agent(model, tools=[get_weather] if tools else [], name="weather_agent")

    def run(name: str, model: Callable[[], Model], tools: bool = False, fail_tool: int = 0) -> None:
        failures["left"] = fail_tool
        with app.run(name, root=False):
            agent(model(), tools).run_sync("weather in Paris?")

    run("plain", lambda: gpt("ok"))
    run("sdk_retry", lambda: gpt("fail-once"))
    run("fallback", lambda: FallbackModel(gpt("always-500", retries=0), claude("ok")))
    run("tool", lambda: gpt("ok"), tools=True)
    run("tool_retry", lambda: gpt("ok"), tools=True, fail_tool=1)
    run("swallowed", lambda: gpt("give-up"), tools=True, fail_tool=1)
    run("failed", lambda: gpt("always-500", retries=1), tools=True)
    return app.finish()


if __name__ == "__main__":
    sys.exit(main())
