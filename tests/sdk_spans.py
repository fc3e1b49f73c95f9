"""Spans made with the OpenTelemetry SDK's tracer, as an instrumented agent app makes them."""

from __future__ import annotations

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer


def llm(tracer: Tracer, *, fail: bool = False) -> None:
    """One OTel GenAI chat call to OpenAI's gpt-4o: answered, or failed with a 500."""
    with tracer.start_as_current_span(
        "chat gpt-4o",
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "server.address": "api.openai.com",
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        if fail:
            span.set_attribute("error.type", "InternalServerError")
            span.set_status(Status(StatusCode.ERROR, "500"))
        else:
            span.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
