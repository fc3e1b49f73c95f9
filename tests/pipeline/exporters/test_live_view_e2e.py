"""live_view end to end: a collector started through the CLI with the agent pipeline and
the view, generator traces sent over OTLP/gRPC, and the pages opened in a real browser
(Debian's chromium, tests/browser.py: a console error fails the test). Screenshots of
both pages are kept in test-artifacts/."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.generator import FaultRates, GeneratedTrace, Generator, batches, write_tool_schemas
from pipeline.exporters.live_view.store import parse_attempt
from pipeline.testing import export_grpc, kv, make_span, metric, scrape, wait_for
from tests.browser import page_screenshot

PROCESSORS = [
    "groupbytrace",
    "provider_reconciliation",
    "cache_tagging",
    "fallback_chain",
    "cleanliness",
]


def config(schemas: str, **view: Any) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {
            "groupbytrace": {"wait_duration": "200ms", "wait_duration_after_root": "50ms"},
            "provider_reconciliation": {},
            "cache_tagging": {},
            "fallback_chain": {},
            "cleanliness": {"tool_schemas": schemas},
        },
        "exporters": {"live_view": {"endpoint": "127.0.0.1:0", **view}},
        "service": {
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": PROCESSORS,
                    "exporters": ["live_view"],
                }
            },
            "telemetry": {"metrics": {"address": "127.0.0.1:0"}},
        },
    }


@pytest.fixture
def schemas(tmp_path) -> str:
    d = tmp_path / "schemas"
    write_tool_schemas(str(d))
    return str(d)


def traffic(n: int = 60) -> tuple[list[GeneratedTrace], GeneratedTrace]:
    """Generator traces of every convention and fault (no `slow`: the cleanliness median
    needs 20 clean traces of a class first), and one with a fallback for sure."""
    gen = Generator(21, rates=FaultRates.parse("all=0.15,slow=0"), warmup=3)
    made = list(gen.traces(n))
    fallback = gen.trace("otel_genai", ["fallback"])
    return [*made, fallback], fallback


def send(endpoint: str, traces: list[GeneratedTrace], per_request: int = 10) -> None:
    for req, _ in batches(traces, per_request):
        export_grpc(endpoint, req)


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_list_fills_filters_and_opens_a_fallback_chain(
    collector_factory, browser_page, schemas
):
    c = collector_factory(config(schemas))
    view = f"http://{c.endpoints['exporters::live_view/http']}/"
    traces, fallback = traffic()
    page = browser_page
    page.goto(view)
    page.locator("#status[data-state=live]").wait_for()  # the stream is open before traces come
    send(c.endpoints["receivers::otlp/grpc"], traces)

    # the list fills, live
    rows = page.locator("tr.trace-row")
    assert wait_for(lambda: rows.count() == len(traces), timeout=30), rows.count()
    truth = {t.trace_id.hex(): t.truth for t in traces}
    for tid, t in truth.items():
        row = page.locator(f'tr.trace-row[data-trace-id="{tid}"]')
        assert row.get_attribute("data-class") == t["expected"]["class"]
    # the chart counts them (its numbers come every second while traces come in)
    noisy_n = sum(1 for t in truth.values() if t["expected"]["class"] == "noisy")
    legend = page.locator("#legend")
    assert wait_for(lambda: f"noisy {noisy_n}" in legend.inner_text()), legend.inner_text()
    assert page.locator("#chart rect.seg.cls-noisy").count() == 3  # 1, 5 and 15 minutes
    page_screenshot(page, "live_view_list", full_page=False)

    # filtering to noisy shows only noisy traces, every one of them
    page.select_option("#f-class", "noisy")
    assert wait_for(lambda: page.locator("tr.trace-row:not([data-class=noisy])").count() == 0)
    assert wait_for(lambda: rows.count() == noisy_n), rows.count()
    assert "class=noisy" in page.url
    page_screenshot(page, "live_view_list_noisy")

    # the fallback trace: its chain, each attempt with its outcome
    page.click(f'tr.trace-row[data-trace-id="{fallback.trace_id.hex()}"] td.name a')
    page.locator(".chain .attempt").first.wait_for()
    assert page.url.endswith(f"/trace/{fallback.trace_id.hex()}")
    calls = [call for call in fallback.truth["llm_calls"] if call["fallback"]]
    blocks = page.locator(".chain-block")
    assert blocks.count() == len(calls)
    for call in calls:
        block = page.locator(f'.chain-block[data-span-id="{call["span_id"]}"]')
        attempts = block.locator(".attempt")
        expected = [parse_attempt(e) for e in call["chain"]]
        assert attempts.count() == len(expected)
        for i, a in enumerate(expected):
            one = attempts.nth(i)
            assert one.locator(".target").inner_text() == f"{a['provider']}/{a['model']}"
            assert one.locator(".outcome").inner_text() == a["outcome"]
            assert ("ok" if a["ok"] else "error") in (one.get_attribute("class") or "")
        assert block.locator(".arrow.fallback").count() >= 1
    # the span tree, and a click shows the span's raw attributes
    assert page.locator(".wf-row").count() == fallback.truth["spans"]
    span_id = calls[0]["span_id"]
    page.click(f'.wf-row[data-span-id="{span_id}"]')
    details = page.locator("#details")
    details.locator("th", has_text="sieve.fallback.chain").wait_for()
    assert "gen_ai.request.model" in details.inner_text()
    page.evaluate("window.scrollTo(0, 0)")
    page_screenshot(page, "live_view_trace", full_page=False)

    # a tool result that broke its schema: the failing span says where; a cache hit, why
    bad = next(t for t in traces if t.truth["tool_schema_invalid"])
    page.goto(f"{view}trace/{bad.trace_id.hex()}")
    for span_id in bad.truth["tool_schema_invalid"]:
        chip = page.locator(f'.wf-row[data-span-id="{span_id}"] .chip.schema')
        assert chip.inner_text().startswith("schema error at /") or "(the whole result)" in (
            chip.inner_text()
        )
    assert page.locator(".chip.schema").count() == len(bad.truth["tool_schema_invalid"])
    hit = next(t for t in traces if any(c["cache_hit"] for c in t.truth["llm_calls"]))
    page.goto(f"{view}trace/{hit.trace_id.hex()}")
    for call in hit.truth["llm_calls"]:
        if call["cache_hit"]:
            chip = page.locator(f'.wf-row[data-span-id="{call["span_id"]}"] .chip.cache')
            assert call["cache_evidence"] in chip.inner_text()


HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def hostile_trace() -> tuple[bytes, ExportTraceServiceRequest]:
    tid = bytes(range(16))
    root = make_span(
        HOSTILE,
        tid,
        b"\x01" * 8,
        attributes={"task.class": '"><svg onload="window.__xss=3">', "note": HOSTILE},
        duration_ns=2_000_000_000,
    )
    child = make_span(
        "chat <b>gpt-4o</b>",
        tid,
        b"\x02" * 8,
        b"\x01" * 8,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "<script>window.__xss=4</script>",
            "<i>key</i>": "</td></tr><tr><td>injected",
        },
        kind=3,
    )
    ev = child.events.add()
    ev.name = "<iframe src=javascript:window.__xss=5>"
    ev.attributes.append(kv("html", "<u>under</u>"))
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "<marquee>svc</marquee>"))
    rs.scope_spans.add().spans.extend([root, child])
    return tid, req


def test_names_and_values_with_html_are_shown_as_text(collector_factory, browser_page, schemas):
    c = collector_factory(config(schemas))
    view = f"http://{c.endpoints['exporters::live_view/http']}/"
    tid, req = hostile_trace()
    export_grpc(c.endpoints["receivers::otlp/grpc"], req)
    page = browser_page
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(view)
    row = page.locator(f'tr.trace-row[data-trace-id="{tid.hex()}"]')
    row.wait_for()
    assert row.locator("td.name").inner_text() == HOSTILE
    assert row.locator("td.task").inner_text() == '"><svg onload="window.__xss=3">'

    def untouched() -> None:
        assert page.evaluate("window.__xss") is None
        assert page.locator("img, iframe, marquee, i, u, svg[onload]").count() == 0
        assert page.locator("script:not([src])").count() == 0
        assert page.locator("tr td", has_text="injected").count() <= 1

    untouched()
    row.locator("td.name a").click()
    page.locator(".wf-row").first.wait_for()
    assert page.locator("h1").first.inner_text().startswith(HOSTILE)
    page.click(f'.wf-row[data-span-id="{"02" * 8}"]')
    details = page.locator("#details")
    details.locator("th", has_text="<i>key</i>").wait_for()
    text = details.inner_text()
    for shown in ("</td></tr><tr><td>injected", "<script>window.__xss=4</script>", "<u>under</u>"):
        assert shown in text
    assert "<iframe src=javascript:window.__xss=5>" in text
    assert "null" not in text.split("\n")  # nothing missing is shown as "null"
    untouched()
    assert dialogs == []
    page_screenshot(page, "live_view_hostile_text")


def test_through_the_cli_bounds_metrics_and_token(collector_factory, schemas):
    c = collector_factory(config(schemas, max_traces=10, auth={"bearer_token": "tok"}))
    view = f"http://{c.endpoints['exporters::live_view/http']}"
    assert "live view on http://" in c.output and "?token=<token>" in c.output
    traces, _ = traffic(29)
    send(c.endpoints["receivers::otlp/grpc"], traces)
    auth = {"Authorization": "Bearer tok"}
    assert wait_for(lambda: get_json(f"{view}/api/stats", auth)[1]["seq"] == len(traces), 30)
    status, body = get_json(f"{view}/api/traces", auth)
    assert status == 200 and body["held"] == 10
    newest = {t.trace_id.hex() for t in traces}
    assert {t["trace_id"] for t in body["traces"]} <= newest
    status, body = get_json(f"{view}/api/traces")
    assert status == 401 and "missing Authorization header" in body["error"]
    m = scrape(c.endpoints["telemetry/http"])
    assert metric(m, "tracesieve_live_view_evicted_traces_total", bound="max_traces") == 20
    assert metric(m, "tracesieve_live_view_traces") == 10
    spans = sum(t.truth["spans"] for t in traces)
    assert metric(m, "otelcol_exporter_sent_spans_total", exporter="live_view") == spans
    assert metric(m, "otelcol_exporter_enqueue_failed_spans_total", exporter="live_view") == 0
