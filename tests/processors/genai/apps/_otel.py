"""What every framework app shares: the OTel SDK set up as a user would (OTLP/gRPC to the
collector, httpx instrumented), one root span per scenario, the trace ids printed as JSON.

Run as a script's sibling (`python apps/<framework>_app.py ...`): the apps run in the test
venv or in a framework's own venv, which has no tracesieve, so this imports only the OTel
SDK, its exporter and the httpx instrumentation.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)


class JsonLinesExporter(SpanExporter):
    """`--dump FILE`: every span as one JSON line (to study a framework's span tree)."""

    def __init__(self, path: str) -> None:
        self.fh = open(path, "w")  # noqa: SIM115

    def export(self, spans: Any) -> SpanExportResult:
        for s in spans:
            self.fh.write(json.dumps(_plain(s), default=str) + "\n")
        self.fh.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.fh.close()


def _plain(s: ReadableSpan) -> dict[str, Any]:
    ctx = s.get_span_context()
    return {
        "trace": f"{ctx.trace_id:032x}" if ctx else "",
        "id": f"{ctx.span_id:016x}" if ctx else "",
        "parent": f"{s.parent.span_id:016x}" if s.parent else "",
        "name": s.name,
        "kind": s.kind.name,
        "scope": s.instrumentation_scope.name if s.instrumentation_scope else "",
        "start": s.start_time,
        "end": s.end_time,
        "status": s.status.status_code.name,
        "attrs": dict(s.attributes or {}),
        "events": [e.name for e in s.events],
    }


class _Roots(SpanProcessor):
    """Trace ids of the root spans started, in order."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if span.parent is None:
            self.ids.append(f"{span.get_span_context().trace_id:032x}")


class App:
    """Parses the common arguments and sets the OTel SDK up."""

    def __init__(self, description: str, argv: list[str] | None = None) -> None:
        ap = argparse.ArgumentParser(description=description)
        ap.add_argument("--otlp", help="collector OTLP/gRPC endpoint host:port")
        ap.add_argument("--dump", help="write the spans as JSON lines here instead")
        ap.add_argument("--openai", required=True, help="base URL of the OpenAI-compatible API")
        ap.add_argument("--anthropic", required=True, help="base URL of the Anthropic API")
        ap.add_argument("--instrumentation", default="", help="which instrumentation to use")
        ap.add_argument("--tag", default="", help="added to every scenario header")
        self.args = ap.parse_args(argv)
        self.provider = TracerProvider(resource=Resource.create({"service.name": "agent-app"}))
        if self.args.otlp:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            # one export at the end (force_flush): every trace reaches the collector whole
            self.provider.add_span_processor(
                BatchSpanProcessor(
                    OTLPSpanExporter(endpoint=self.args.otlp, insecure=True),
                    schedule_delay_millis=60_000,
                    max_export_batch_size=10_000,
                    max_queue_size=10_000,
                )
            )
        else:
            self.provider.add_span_processor(
                SimpleSpanProcessor(JsonLinesExporter(self.args.dump or "/dev/stderr"))
            )
        self._roots = _Roots()
        self.provider.add_span_processor(self._roots)
        trace.set_tracer_provider(self.provider)
        from opentelemetry.instrumentation import httpx as httpx_instr

        httpx_instr.HTTPXClientInstrumentor().instrument(tracer_provider=self.provider)
        if hasattr(httpx_instr, "HTTPX2ClientInstrumentor"):  # openai 3, anthropic 2: httpx2
            # (fails where httpx2 is not installed: a framework's own venv)
            with suppress(Exception):
                httpx_instr.HTTPX2ClientInstrumentor().instrument(tracer_provider=self.provider)
        self.tracer = self.provider.get_tracer("agent-app")
        self.trace_ids: dict[str, str] = {}
        self.current = ""  # the scenario running

    def scenario(self, kind: str) -> str:
        """The `x-fake-scenario` header value for a fake's behaviour `kind`, tagged with the
        run's tag and the scenario running (`<kind>#<tag>:<scenario>`): the fakes' logs
        tell each scenario's requests apart."""
        return f"{kind}#{self.args.tag}:{self.current}"

    @contextmanager
    def run(self, name: str, root: bool = True) -> Iterator[None]:
        """One scenario, one trace: under an app root span (`root`, named
        `invoke_workflow <name>`, left OK whatever happens below it, as a request handler
        that logs a failure would), or with the framework's own outermost span as the root.
        A failing scenario's exception is swallowed here (the app goes on to the next)."""
        self.current = name
        if root:
            with self.tracer.start_as_current_span(
                f"invoke_workflow {name}", attributes={"task.class": name}
            ) as span:
                self.trace_ids[name] = f"{span.get_span_context().trace_id:032x}"
                # the app logs a failure and goes on: its root span stays OK
                with suppress(Exception):
                    yield
            return
        # no app root: the first span the framework opens is the trace's root
        before = len(self._roots.ids)
        with suppress(Exception):  # the app logs the failure; no span of its own says so
            yield
        self.trace_ids[name] = self._roots.ids[before] if len(self._roots.ids) > before else ""

    def finish(self) -> int:
        self.provider.force_flush()
        self.provider.shutdown()
        print(json.dumps(self.trace_ids))
        sys.stdout.flush()
        return 0
