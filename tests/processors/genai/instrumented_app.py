"""An agent-like app, instrumented for real, run as a subprocess by the tests:

    python -m tests.processors.genai.instrumented_app --instrumentation openai-v2 \
        --otlp 127.0.0.1:4317 --openai http://127.0.0.1:P1 --anthropic http://127.0.0.1:P2

The `openai` SDK with `opentelemetry-instrumentation-openai-v2` or
`openinference-instrumentation-openai`, or both at once (`both`: each call traced twice,
OpenInference's span inside OTel's), httpx2 instrumented by
`opentelemetry-instrumentation-httpx`, the `anthropic` SDK (which traces itself). Spans go
through the OTel SDK's OTLP/gRPC exporter. One trace per scenario; prints
{scenario: trace id hex} as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def otel_setup(otlp: str, openai: Iterable[str]) -> TracerProvider:
    """The OTel SDK set up as the apps' users do: service `agent-app`, spans through the
    OTLP/gRPC exporter to `otlp` in one export at the end (force_flush: every trace reaches
    the collector in one batch), httpx2 instrumented, and the openai SDK instrumented by
    each of `openai` (`openai-v2`: OTel GenAI's; `openinference`: OpenInference's).
    Imports the SDK only when called: an app sets its environment first."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "agent-app"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=otlp, insecure=True),
            schedule_delay_millis=60_000,
            max_export_batch_size=10_000,
            max_queue_size=10_000,
        )
    )
    trace.set_tracer_provider(provider)
    HTTPX2ClientInstrumentor().instrument(tracer_provider=provider)
    if "openai-v2" in openai:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    if "openinference" in openai:
        from openinference.instrumentation.openai import OpenAIInstrumentor as OIInstrumentor

        OIInstrumentor().instrument(tracer_provider=provider)
    return provider


def run_app(module: str, *args: str) -> dict[str, str]:
    """Run an app (`python -m module args...`) in a subprocess from the repository's root,
    as the tests do; returns what it prints last: {scenario: trace id hex}."""
    app = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert app.returncode == 0, app.stderr
    trace_ids: dict[str, str] = json.loads(app.stdout.strip().splitlines()[-1])
    return trace_ids


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--instrumentation", choices=("openai-v2", "openinference", "both"), required=True
    )
    ap.add_argument("--otlp", required=True)
    ap.add_argument("--openai", required=True)
    ap.add_argument("--anthropic", required=True)
    args = ap.parse_args(argv)

    from opentelemetry import trace

    which = ("openai-v2", "openinference") if args.instrumentation == "both" else ()
    provider = otel_setup(args.otlp, which or (args.instrumentation,))

    import anthropic
    import openai

    oai = openai.OpenAI(base_url=args.openai + "/v1", api_key="test", max_retries=2)
    claude = anthropic.Anthropic(base_url=args.anthropic, api_key="test", max_retries=0)
    tracer = provider.get_tracer("agent-app")
    messages = [{"role": "user", "content": "plan the task"}]
    out: dict[str, str] = {}

    def chat(scenario: str, retries: int = 2) -> object:
        return oai.with_options(max_retries=retries).chat.completions.create(
            model="gpt-4o", messages=messages, extra_headers={"x-fake-scenario": scenario}
        )

    def task(name: str) -> trace.Span:
        return tracer.start_as_current_span(
            f"invoke_workflow {name}", attributes={"task.class": name}
        )

    with task("plain") as root:
        chat("ok")
        out["plain"] = f"{root.get_span_context().trace_id:032x}"
    with task("sdk_retry") as root:
        chat("fail-once")
        out["sdk_retry"] = f"{root.get_span_context().trace_id:032x}"
    with task("fallback") as root:
        try:
            chat("always-500", retries=0)
        except openai.InternalServerError:
            claude.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=messages)
        out["fallback"] = f"{root.get_span_context().trace_id:032x}"
    with task("cache") as root:
        chat("ok")
        chat("replay")
        out["cache"] = f"{root.get_span_context().trace_id:032x}"
    provider.force_flush()
    provider.shutdown()
    print(json.dumps(out))
    return 0


def run(instrumentation: str, otlp: str, openai_url: str, anthropic_url: str) -> dict[str, str]:
    """Run the app in a subprocess, as the tests do; returns {scenario: trace id hex}."""
    return run_app(
        "tests.processors.genai.instrumented_app",
        *("--instrumentation", instrumentation, "--otlp", otlp),
        *("--openai", openai_url, "--anthropic", anthropic_url),
    )


if __name__ == "__main__":
    sys.exit(main())
