"""live_view: the JSON API, the event stream, the bounds, auth and the guard, in-process
over real HTTP (aiohttp's client against the exporter's own server), on generator traces
classified by the real processors (groupbytrace, the enrichment processors, cleanliness).

The view is made with a long `interval` and read in by calling `take_in()`, so each test
decides when a batch is read in and when the pages are told."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.generator import (
    FRAMEWORK_CONVENTIONS,
    FaultRates,
    GeneratedTrace,
    Generator,
    LoadStream,
    batches,
    write_tool_schemas,
)
from pipeline.configtypes import decode
from pipeline.exporters.live_view import LiveViewConfig, LiveViewExporter
from pipeline.exporters.live_view.store import parse_attempt
from pipeline.pdata import Traces
from pipeline.registry import REGISTRY
from pipeline.telemetry import Telemetry
from pipeline.testing import FakeHost, Sink, metric, settings
from pipeline.wholetraces import split, trace_views

ENRICH = ("provider_reconciliation", "cache_tagging", "fallback_chain")


# -- helpers ---------------------------------------------------------------------------------


def generated(n: int, seed: int = 5, rates: str = "all=0.2,slow=0") -> list[GeneratedTrace]:
    # no `slow`: it needs 20 clean traces of a task class first (the cleanliness median)
    return list(Generator(seed, rates=FaultRates.parse(rates), warmup=3).traces(n))


async def classified(
    traces: list[GeneratedTrace], schemas: str, per_batch: int = 10
) -> list[Traces]:
    """The traces through groupbytrace, the enrichment processors and cleanliness, as the
    batches cleanliness passes on (trace-aligned, with their trace index and facts)."""
    sink = Sink()
    chain: Any = sink
    made = []
    for type_, raw in reversed(
        [
            ("groupbytrace", {}),
            *((p, {}) for p in ENRICH),
            ("cleanliness", {"tool_schemas": schemas}),
        ]
    ):
        f = REGISTRY.processors[type_]
        cfg, errs = decode(raw, f.config_type, type_)
        assert not errs, errs
        chain = f.create(settings(), cfg, chain)
        made.append(chain)
    for req, _ in batches(traces, per_batch):
        await chain.consume_traces(Traces(req))
    for p in reversed(made):  # upstream first: groupbytrace releases what it holds
        await p.shutdown()
    # cut into batches of `per_batch` traces, each with its part of the trace index
    out: list[Traces] = []
    for b in sink.batches:
        views = trace_views(b, settle=False)
        parts = split(b, views, [i // per_batch for i in range(len(views))])
        out += [parts[k] for k in sorted(parts)]
    return out


def make_view(tel: Telemetry | None = None, **raw: Any) -> LiveViewExporter:
    raw = {"endpoint": "127.0.0.1:0", "interval": "1h", **raw}
    cfg, errs = decode(raw, LiveViewConfig, "live_view")
    assert not errs and cfg is not None, errs
    return LiveViewExporter(settings("exporter", "live_view", telemetry=tel or Telemetry()), cfg)


async def feed(view: LiveViewExporter, batches_: list[Traces]) -> None:
    for b in batches_:
        await view.consume_traces(b)
    await view.take_in()


def counter(tel: Telemetry, name: str, **labels: str) -> float:
    values: dict[str, float] = {}
    for fam in text_string_to_metric_families(tel.exposition().decode()):
        for s in fam.samples:
            lab = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            values[f"{s.name}{{{lab}}}"] = s.value
    return metric(values, name, **labels)


class SSE:
    """A server-sent events reader over an aiohttp response."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self) -> tuple[str, Any]:
        name, data = "message", ""
        while True:
            line = (await self.resp.content.readline()).decode()
            if line == "":
                raise EOFError("the stream ended")
            line = line.rstrip("\n")
            if not line:
                if data:
                    return name, json.loads(data)
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data += value

    async def until(self, name: str) -> Any:
        while True:
            got, data = await self.next()
            if got == name:
                return data


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("schemas")
    write_tool_schemas(str(d))
    return str(d)


@pytest.fixture(scope="module")
def sample() -> list[GeneratedTrace]:
    return generated(60)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def started(view: LiveViewExporter) -> LiveViewExporter:
    await view.start(FakeHost())
    return view


# -- the JSON API ---------------------------------------------------------------------------------


async def test_the_list_holds_every_trace_newest_first_as_cleanliness_saw_it(http, schemas, sample):
    view = await started(make_view())
    try:
        await feed(view, await classified(sample, schemas))
        async with http.get(f"{view.url}api/traces?limit=1000") as r:
            assert r.status == 200
            body = await r.json()
        assert body["held"] == body["matched"] == len(sample)
        rows = body["traces"]
        assert [t["seq"] for t in rows] == sorted((t["seq"] for t in rows), reverse=True)
        truth = {t.trace_id.hex(): t.truth for t in sample}
        for row in rows:
            t = truth[row["trace_id"]]
            assert row["class"] == t["expected"]["class"], row
            assert row["reasons"] == t["expected"]["reasons"], row
            assert row["task_class"] == t["task_class"]
            assert row["providers"] == t["served"]["providers"]
            assert row["spans"] == t["spans"]
            assert row["root"] and row["name"]
            assert row["duration_ms"] == pytest.approx(t["root_duration_ns"] / 1e6)
            # the root span's own status: a framework's failed run leaves its root OK (all
            # but PydanticAI's, whose agent run is the root)
            root_error = "root_failure" in t["faults"] and (
                t["convention"] not in FRAMEWORK_CONVENTIONS or t["convention"] == "pydantic_ai"
            )
            assert row["error"] == root_error
    finally:
        await view.shutdown()


async def test_filters_select_exactly_the_matching_traces(http, schemas, sample):
    view = await started(make_view())
    try:
        await feed(view, await classified(sample, schemas))
        truth = {t.trace_id.hex(): t for t in sample}

        async def ids(query: str) -> set[str]:
            async with http.get(f"{view.url}api/traces?limit=1000&{query}") as r:
                assert r.status == 200, await r.text()
                body = await r.json()
            assert body["matched"] == len(body["traces"])
            return {t["trace_id"] for t in body["traces"]}

        def where(pred: Any) -> set[str]:
            return {k for k, t in truth.items() if pred(t)}

        noisy = await ids("class=noisy")
        assert noisy and noisy == where(lambda t: t.truth["expected"]["class"] == "noisy")
        fallback = await ids("reason=fallback")
        assert fallback == where(lambda t: "fallback" in t.truth["expected"]["reasons"])
        assert fallback
        assert await ids("task_class=support") == where(
            lambda t: t.truth["task_class"] == "support"
        )
        assert await ids("provider=anthropic") == where(
            lambda t: "anthropic" in t.truth["served"]["providers"]
        )
        # the search: any span's name, ignoring case
        names = {
            k: {
                s.name.lower() for rs in t.resource_spans for ss in rs.scope_spans for s in ss.spans
            }
            for k, t in truth.items()
        }
        found = await ids("q=WEB_SEARCH")
        assert found and found == {k for k, n in names.items() if any("web_search" in x for x in n)}
        some = next(iter(truth))
        assert await ids(f"q={some[:12]}") == {some}  # part of a trace id
        both = await ids("class=noisy&reason=fallback")
        assert both == noisy & fallback
        async with http.get(f"{view.url}api/traces?limit=2") as r:
            body = await r.json()
        assert len(body["traces"]) == 2 and body["matched"] == len(sample)
    finally:
        await view.shutdown()


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("api/traces?class=dirty", 400, "class: unknown class 'dirty' (valid: clean, noisy"),
        ("api/traces?reason=flaky", 400, "reason: unknown reason 'flaky'"),
        ("api/traces?limit=0", 400, "limit: want a whole number from 1 to 1000"),
        ("api/traces?limit=ten", 400, "limit: want a whole number"),
        ("api/traces/xyz", 400, "invalid trace id 'xyz': want 32 hex digits"),
        ("api/traces/" + "ab" * 16, 404, "is not held"),
        ("api/stream?after=-1", 400, "after: want a whole number"),
    ],
)
async def test_bad_requests_get_a_clear_answer(http, path, status, message):
    view = await started(make_view())
    try:
        async with http.get(view.url + path) as r:
            assert r.status == status
            assert message in (await r.json())["error"]
    finally:
        await view.shutdown()


async def test_a_trace_page_gets_every_span_with_its_chain_and_schema_errors(http, schemas):
    gen = Generator(11, warmup=0)
    fb = gen.trace("otel_genai", ["fallback"])
    bad = gen.trace("openinference", ["schema_invalid"])
    view = await started(make_view())
    try:
        await feed(view, await classified([fb, bad], schemas))
        async with http.get(f"{view.url}api/traces/{fb.trace_id.hex()}") as r:
            assert r.status == 200
            got = await r.json()
        assert got["summary"]["reasons"] == ["fallback"]
        spans = {s["span_id"]: s for s in got["spans"]}
        assert len(spans) == fb.truth["spans"]
        chains = 0
        for call in fb.truth["llm_calls"]:
            s = spans[call["span_id"]]
            assert s["sieve"]["fallback"]["chain"] == [parse_attempt(e) for e in call["chain"]]
            assert s["sieve"]["fallback"]["fired"] == call["fallback"]
            assert s["sieve"]["provider"]["served"] == call["served"].split("/")[0]
            if call["fallback"]:
                chains += 1
                attempts = s["sieve"]["fallback"]["chain"]
                assert len(attempts) >= 2 and attempts[-1]["ok"]
                assert not any(a["ok"] for a in attempts[:-1])
        assert chains >= 1
        # times from the trace's start, parents kept: the page draws the tree from them
        root = next(s for s in got["spans"] if not s["parent_span_id"])
        assert root["start_ms"] == 0
        assert all(s["parent_span_id"] in spans for s in got["spans"] if s is not root)

        async with http.get(f"{view.url}api/traces/{bad.trace_id.hex()}") as r:
            got = await r.json()
        flagged = {
            s["span_id"]: s["sieve"]["schema_error"]
            for s in got["spans"]
            if "schema_error" in s["sieve"]
        }
        assert set(flagged) == set(bad.truth["tool_schema_invalid"])
        for err in flagged.values():
            assert err["message"] and isinstance(err["path"], str)
    finally:
        await view.shutdown()


async def test_stats_count_classes_and_name_the_facets(http, schemas, sample):
    view = await started(make_view())
    try:
        await feed(view, await classified(sample, schemas))
        async with http.get(f"{view.url}api/stats") as r:
            stats = await r.json()
        by_class: dict[str, int] = {}
        for t in sample:
            c = t.truth["expected"]["class"]
            by_class[c] = by_class.get(c, 0) + 1
        for window in ("1m", "5m", "15m"):
            assert {c: n for c, n in stats["windows"][window].items() if n} == by_class
        assert stats["held"] == len(sample)
        assert stats["facets"]["task_class"] == sorted({t.truth["task_class"] for t in sample})
    finally:
        await view.shutdown()


# -- the event stream -----------------------------------------------------------------------------


async def test_a_stream_gets_new_traces_its_filter_matches(http, schemas, sample):
    view = await started(make_view())
    try:
        batches_ = await classified(sample, schemas)
        async with (
            http.get(f"{view.url}api/stream") as all_r,
            http.get(f"{view.url}api/stream?class=noisy") as noisy_r,
        ):
            assert all_r.headers["Content-Type"] == "text/event-stream"
            everything, noisy = SSE(all_r), SSE(noisy_r)
            hello = await everything.until("hello")
            assert hello["held"] == 0
            await noisy.until("hello")
            await feed(view, batches_)
            got = await everything.until("traces")
            assert {t["trace_id"] for t in got} == {t.trace_id.hex() for t in sample}
            only = await noisy.until("traces")
            expected = {t.trace_id.hex() for t in sample if t.truth["expected"]["class"] == "noisy"}
            assert {t["trace_id"] for t in only} == expected
            assert all(t["class"] == "noisy" for t in only)
    finally:
        await view.shutdown()


async def test_a_stream_opened_after_a_seq_first_gets_what_came_since(http, schemas, sample):
    view = await started(make_view())
    try:
        await feed(view, await classified(sample[:20], schemas))
        async with http.get(f"{view.url}api/traces") as r:
            seq = (await r.json())["seq"]
        assert seq == 20
        await feed(view, await classified(sample[20:], schemas))
        async with http.get(f"{view.url}api/stream?after={seq}") as r:
            backlog = await SSE(r).until("traces")
        assert [t["seq"] for t in backlog] == list(range(seq + 1, view.store.seq + 1))
    finally:
        await view.shutdown()


async def test_a_page_that_falls_behind_loses_events_counted_and_is_told(http, schemas, sample):
    tel = Telemetry()
    view = await started(make_view(tel, stream_buffer=2))
    try:
        batches_ = await classified(sample, schemas, per_batch=5)
        async with http.get(f"{view.url}api/stream") as r:
            sse = SSE(r)
            await sse.until("hello")
            # read in without giving the stream's handler a turn: its queue (2 events)
            # overflows; what was queued and the event that did not fit are lost
            for b in batches_[:4]:
                await view.consume_traces(b)
                await view.take_in()
            dropped = counter(tel, "tracesieve_live_view_stream_dropped_events_total")
            assert dropped >= 3
            gap = await sse.until("gap")
            assert gap == {"dropped": dropped}
            await feed(view, batches_[4:5])
            seqs: list[int] = []
            while not seqs or seqs[-1] < view.store.seq:  # and it goes on
                seqs += [t["seq"] for t in await sse.until("traces")]
            assert seqs[-5:] == list(range(view.store.seq - 4, view.store.seq + 1))
    finally:
        await view.shutdown()


async def test_a_stuck_page_never_holds_the_pipeline_up(http):
    tel = Telemetry()
    view = await started(make_view(tel, stream_buffer=4, max_traces=100_000, max_bytes=1 << 30))
    stream = LoadStream(3, templates=50).requests(1 << 40, 512)  # fresh trace ids
    host, port = view.url.split("//")[1].rstrip("/").split(":")
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(stuck, (host, int(port)))
        await loop.sock_sendall(stuck, f"GET /api/stream HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        async with http.get(f"{view.url}api/stream") as r:
            reader = SSE(r)
            await reader.until("hello")
            rounds = spans = 0
            # a page that never reads: the view goes on reading in, drops what that page
            # cannot take, and a page that reads gets everything
            while counter(tel, "tracesieve_live_view_stream_dropped_events_total") == 0:
                rounds += 1
                assert rounds < 500, "the stuck page never lost an event"
                for _ in range(10):
                    raw, n = next(stream)
                    await view.consume_traces(Traces.decode(raw))  # returns at once
                    spans += n
                await view.take_in()
                got = await reader.until("traces")
                assert got[-1]["seq"] == view.store.seq
                await asyncio.sleep(0.01)  # the stuck page's handler gets its turns
            assert counter(tel, "otelcol_exporter_enqueue_failed_spans_total") == 0
            assert counter(tel, "otelcol_exporter_sent_spans_total") == spans
            assert sum(h.summary.spans for h in view.store.newest()) == spans
    finally:
        stuck.close()
        await view.shutdown()


# -- bounds and the hand-off ----------------------------------------------------------------------


async def test_the_oldest_traces_go_first_beyond_max_traces_counted(schemas, sample):
    tel = Telemetry()
    view = await started(make_view(tel, max_traces=7))
    try:
        await feed(view, await classified(sample, schemas))
        held = [h.summary.trace_id for h in view.store.newest()]
        assert len(held) == 7
        assert held == [
            s.trace_id
            for s in sorted((h.summary for h in view.store.newest()), key=lambda s: -s.seq)
        ]
        assert view.store.seq == len(sample)
        n = counter(tel, "tracesieve_live_view_evicted_traces_total", bound="max_traces")
        assert n == len(sample) - 7
        assert counter(tel, "tracesieve_live_view_traces", exporter="live_view") == 7
    finally:
        await view.shutdown()


async def test_max_bytes_bounds_what_is_held_counted(schemas, sample):
    tel = Telemetry()
    batches_ = await classified(sample, schemas)
    one = max(len(b.to_bytes()) for b in batches_)
    view = await started(make_view(tel, max_bytes=one * 2))
    try:
        for b in batches_:
            await feed(view, [b])
        assert counter(tel, "otelcol_exporter_enqueue_failed_spans_total") == 0
        assert 0 < len(view.store) < len(sample)
        assert view.store.bytes <= one * 2
        assert counter(tel, "tracesieve_live_view_bytes") == view.store.bytes
        n = counter(tel, "tracesieve_live_view_evicted_traces_total", bound="max_bytes")
        assert n == len(sample) - len(view.store)
    finally:
        await view.shutdown()


async def test_when_the_view_is_behind_batches_are_dropped_counted_never_refused(schemas, sample):
    tel = Telemetry()
    view = await started(make_view(tel, queue_size=2))
    try:
        batches_ = await classified(sample, schemas, per_batch=10)
        for b in batches_:
            await view.consume_traces(b)  # never raises, never waits
        lost = sum(b.span_count for b in batches_[2:])
        assert counter(tel, "otelcol_exporter_enqueue_failed_spans_total") == lost
        await view.take_in()
        assert counter(tel, "otelcol_exporter_sent_spans_total") == sum(
            b.span_count for b in batches_[:2]
        )
    finally:
        await view.shutdown()


async def test_batches_without_a_trace_index_are_cut_by_trace(schemas):
    """A batch straight from a receiver (no groupbytrace, no cleanliness): traces are cut
    on the wire and shown unclassified; a later fragment of a trace joins it; a batch
    classified upstream (sieve.trace.* on its root span) is read from its attributes."""
    traces = generated(6, seed=8)
    view = await started(make_view())
    try:
        req, _ = next(batches(traces[:4], 4))
        await feed(view, [Traces(req)])
        rows = {h.summary.trace_id: h.summary for h in view.store.newest()}
        assert set(rows) == {t.trace_id.hex() for t in traces[:4]}
        for t in traces[:4]:
            row = rows[t.trace_id.hex()]
            assert row.cls == "unclassified" and row.spans == t.truth["spans"]
            assert row.task_class == t.truth["task_class"]  # its task.class attribute
        # a trace in two parts: the root's part later
        t = traces[4]
        spans = [s for rs in t.resource_spans for ss in rs.scope_spans for s in ss.spans]
        root = next(s for s in spans if not s.parent_span_id)
        from pipeline.testing import make_traces

        await feed(view, [make_traces([s for s in spans if s is not root])])
        part = view.store.get(t.trace_id)
        assert part is not None and not part.summary.root
        await feed(view, [make_traces([root])])
        whole = view.store.get(t.trace_id)
        assert whole is not None and whole.summary.root and whole.summary.spans == len(spans)
        assert whole.summary.name == root.name
        assert view.stats()["windows"]["1m"]["unclassified"] == 5  # counted once
        # classified by an upstream tracesieve: the batch as it left it, decoded afresh
        (done,) = await classified([traces[5]], schemas)
        await feed(view, [Traces.decode(done.to_bytes())])
        row = view.store.get(traces[5].trace_id)
        assert row is not None
        assert row.summary.cls == traces[5].truth["expected"]["class"]
        assert list(row.summary.reasons) == traces[5].truth["expected"]["reasons"]
        assert row.summary.task_class == traces[5].truth["task_class"]
    finally:
        await view.shutdown()


# -- auth and the guard ------------------------------------------------------------------------------


async def test_a_token_is_required_when_configured(http, tmp_path):
    view = await started(make_view(auth={"bearer_token": "s3cret"}))
    try:
        for path in ("api/traces", "api/stream", "api/stats", "", "trace/" + "ab" * 16):
            async with http.get(view.url + path) as r:
                assert r.status == 401, path
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.get(f"{view.url}api/traces") as r:
            assert "missing Authorization header" in (await r.json())["error"]
        async with http.get(f"{view.url}api/traces", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401 and (await r.json())["error"] == "invalid bearer token"
        async with http.get(
            f"{view.url}api/traces", headers={"Authorization": "Bearer s3cret"}
        ) as r:
            assert r.status == 200
        # a browser: the token in the address once, then a cookie for the pages and the API
        # (a jar that keeps cookies of IP-address hosts, as browsers do)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(f"{view.url}?token=nope", allow_redirects=False) as r:
                assert r.status == 401
            async with browser.get(
                f"{view.url}?token=s3cret&class=noisy", allow_redirects=False
            ) as r:
                assert r.status == 303
                assert r.headers["Location"] == "/?class=noisy"  # the token leaves the address
                cookie = r.cookies["tracesieve_live_view"]
                assert cookie["httponly"] and cookie["samesite"] == "Strict"
            async with browser.get(f"{view.url}?class=noisy") as r:
                assert r.status == 200 and "<title>" in await r.text()
            async with browser.get(f"{view.url}api/traces") as r:
                assert r.status == 200
    finally:
        await view.shutdown()


async def test_on_loopback_only_loopback_host_names_are_answered(http):
    view = await started(make_view())
    try:
        port = view.url.rstrip("/").rsplit(":", 1)[1]
        for host, status in (
            (f"localhost:{port}", 200),
            (f"127.0.0.1:{port}", 200),
            (f"evil.example:{port}", 403),  # a page elsewhere, by DNS rebinding
            ("10.0.0.1", 403),
        ):
            async with http.get(f"{view.url}api/stats", headers={"Host": host}) as r:
                assert r.status == status, host
    finally:
        await view.shutdown()


async def test_pages_and_scripts_are_served_with_a_strict_policy(http):
    view = await started(make_view())
    try:
        for path, ctype in (
            ("", "text/html"),
            ("trace/" + "ab" * 16, "text/html"),
            ("static/list.js", "text/javascript"),
            ("static/trace.js", "text/javascript"),
            ("static/common.js", "text/javascript"),
            ("static/view.css", "text/css"),
            ("static/favicon.svg", "image/svg+xml"),
        ):
            async with http.get(view.url + path) as r:
                assert r.status == 200, path
                assert r.headers["Content-Type"].startswith(ctype)
                csp = r.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "default-src 'none'" in csp
                assert r.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(f"{view.url}static/../__init__.py") as r:
            assert r.status == 404
        # the pages load nothing from elsewhere
        for page in ("index.html", "trace.html"):
            html = (
                Path(__file__).parents[3] / "pipeline/exporters/live_view/static" / page
            ).read_text()
            assert "http://" not in html and "https://" not in html
    finally:
        await view.shutdown()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"endpoint": "55680"}, "live_view::endpoint: invalid endpoint '55680'"),
        ({"interval": "0s"}, "live_view::interval: must be greater than 0"),
        ({"max_traces": 0}, "live_view::max_traces"),
        ({"auth": {}}, "live_view::auth: set exactly one of bearer_token, bearer_token_file"),
        ({"colour": "blue"}, "unknown field 'colour'"),
    ],
)
def test_config_errors_name_the_field(raw, expected):
    _, errs = decode(raw, LiveViewConfig, "live_view")
    assert any(expected in e for e in errs), errs
