"""The live view's HTTP side (aiohttp): the two pages and their scripts, the JSON API and
the server-sent events stream, behind a guard (loopback host names, optional bearer token).

Routes:
    GET /                        the list page
    GET /trace/{trace_id}        the trace page
    GET /static/{name}           the pages' scripts, styles and icon (shipped in the package)
    GET /api/traces              summaries, newest first: ?class=&reason=&task_class=
                                 &provider=&q=&limit=
    GET /api/traces/{trace_id}   one trace: every span, its attributes, events, annotations
    GET /api/stats               class counts over 1/5/15 minutes, bounds, drops, facets
    GET /api/stream              server-sent events: `traces` (summaries matching the same
                                 filters as /api/traces), `stats` (each second while traces
                                 come in, else every 5 s), `gap` when the
                                 page fell behind and events were dropped (it refetches)

Streams never hold the pipeline up: `Hub.publish` only appends to each page's bounded
queue; a page whose queue is full loses what was queued (counted) and is told (`gap`).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import web

from pipeline.exporters.live_view.store import Filter, Held, Summary, detail
from pipeline.receivers.auth import BearerAuth

if TYPE_CHECKING:
    from pipeline.exporters.live_view import LiveViewExporter

__all__ = ["STATIC", "Hub", "Site", "Stream", "event"]

STATIC: Final = Path(__file__).resolve().parent / "static"
COOKIE: Final = "tracesieve_live_view"
KEEPALIVE: Final = 15.0  # seconds between comments on an idle stream
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
# the pages load only their own scripts and styles, and talk only to this server
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_ENCODE = msgspec.json.Encoder().encode


def event(name: str, data: Any, id: int | None = None) -> bytes:
    """One server-sent event (msgspec's JSON has no newlines: one `data:` line)."""
    head = f"id: {id}\nevent: {name}\n" if id is not None else f"event: {name}\n"
    return head.encode() + b"data: " + _ENCODE(data) + b"\n\n"


class Stream:
    """One connected page: its filter and its bounded queue of events."""

    __slots__ = ("closed", "dropped", "filter", "pending", "task", "wake")

    def __init__(self, filter: Filter) -> None:
        self.filter = filter
        self.pending: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.dropped = 0  # events lost since the page was last told
        self.closed = False
        self.task: asyncio.Task[Any] | None = asyncio.current_task()


class Hub:
    """The connected pages. `publish` never waits: a page that does not keep up loses the
    events queued for it (counted) and gets a `gap` event to resynchronise."""

    def __init__(self, buffer: int, on_drop: Callable[[int], None]) -> None:
        self.buffer = buffer
        self.streams: set[Stream] = set()
        self._on_drop = on_drop

    def push(self, s: Stream, data: bytes) -> None:
        if len(s.pending) >= self.buffer:
            n = len(s.pending) + 1
            s.pending.clear()
            s.dropped += n
            self._on_drop(n)
        else:
            s.pending.append(data)
        s.wake.set()

    def publish(self, data: bytes) -> None:
        for s in self.streams:
            self.push(s, data)

    def publish_traces(self, held: list[Held]) -> None:
        """Each page gets the summaries its filter matches (encoded once per filter)."""
        encoded: dict[Filter, bytes | None] = {}
        for s in self.streams:
            f = s.filter
            if f not in encoded:
                rows = [h.summary for h in held if f.empty or f.match(h)]
                encoded[f] = event("traces", rows, rows[-1].seq) if rows else None
            data = encoded[f]
            if data is not None:
                self.push(s, data)

    def close(self) -> None:
        for s in list(self.streams):
            s.closed = True
            s.wake.set()
            if s.task is not None and not s.task.done():
                s.task.cancel()


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Site:
    """The aiohttp application of one live view."""

    def __init__(self, view: LiveViewExporter, bind_host: str) -> None:
        self.view = view
        self.auth = BearerAuth(view.cfg.auth) if view.cfg.auth is not None else None
        # bound to loopback: only loopback host names (a page elsewhere cannot reach it
        # by DNS rebinding)
        self.loopback_only = _is_loopback(bind_host)
        self.files = self._load_static()
        app = web.Application(middlewares=[self._guard])
        app.on_response_prepare.append(self._headers)
        r = app.router
        r.add_get("/", self._page("index.html"))
        r.add_get("/trace/{trace_id}", self._page("trace.html"))
        r.add_get("/static/{name}", self._static)
        r.add_get("/api/traces", self._traces)
        r.add_get("/api/traces/{trace_id}", self._trace)
        r.add_get("/api/stats", self._stats)
        r.add_get("/api/stream", self._stream)
        self.app = app

    @staticmethod
    def _load_static() -> dict[str, tuple[bytes, str]]:
        if not STATIC.is_dir():
            raise OSError(f"live_view: its page files are missing ({STATIC}): reinstall tracesieve")
        return {
            p.name: (p.read_bytes(), _TYPES.get(p.suffix, "application/octet-stream"))
            for p in STATIC.iterdir()
            if p.is_file()
        }

    # -- guard ----------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.loopback_only and not _is_loopback(_host_name(request.host)):
            return web.Response(
                status=403,
                text=f"403: this view answers on loopback names only (Host: {request.host})\n",
            )
        if self.auth is not None:
            problem = self._authorize(request)
            if problem is not None:
                token = request.query.get("token")
                api = request.path.startswith("/api/")
                if token and not api and self.auth.check(f"Bearer {token}") is None:
                    # a browser: the token once in the address, then in a cookie
                    query = request.rel_url.query.copy()
                    del query["token"]
                    resp = web.Response(
                        status=303, headers={"Location": str(request.rel_url.with_query(query))}
                    )
                    resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
                    return resp
                headers = {"WWW-Authenticate": 'Bearer realm="tracesieve live view"'}
                if api:
                    return web.Response(
                        status=401,
                        body=_ENCODE({"error": problem}),
                        content_type="application/json",
                        headers=headers,
                    )
                return web.Response(
                    status=401,
                    text=f"401: {problem}\nIn a browser, open this address with ?token=<token> once.\n",
                    headers=headers,
                )
        return await handler(request)

    def _authorize(self, request: web.Request) -> str | None:
        assert self.auth is not None
        header = request.headers.get("Authorization")
        if header is None:
            cookie = request.cookies.get(COOKIE)
            if cookie:
                header = f"Bearer {cookie}"
        return self.auth.check(header)

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(_HEADERS)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"

    # -- pages -----------------------------------------------------------------------------
    def _page(self, name: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            body, ctype = self.files[name]
            return web.Response(body=body, headers={"Content-Type": ctype})

        return handle

    async def _static(self, request: web.Request) -> web.StreamResponse:
        got = self.files.get(request.match_info["name"])
        if got is None:
            raise web.HTTPNotFound()
        body, ctype = got
        return web.Response(body=body, headers={"Content-Type": ctype})

    # -- the API -----------------------------------------------------------------------------
    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        return web.Response(status=status, body=_ENCODE(data), content_type="application/json")

    async def _traces(self, request: web.Request) -> web.StreamResponse:
        store = self.view.store
        f, errors = Filter.parse(request.query)
        limit = 100
        raw = request.query.get("limit")
        if raw is not None:
            if not raw.isdigit() or not 1 <= int(raw) <= store.max_traces:
                errors.append(f"limit: want a whole number from 1 to {store.max_traces}")
            else:
                limit = int(raw)
        if errors:
            return self._json({"error": "; ".join(errors)}, 400)
        rows: list[Summary] = []
        matched = 0
        for h in store.newest():
            if f.empty or f.match(h):
                matched += 1
                if len(rows) < limit:
                    rows.append(h.summary)
        return self._json(
            {"seq": store.seq, "held": len(store), "matched": matched, "traces": rows}
        )

    async def _trace(self, request: web.Request) -> web.StreamResponse:
        text = request.match_info["trace_id"].lower()
        try:
            tid = bytes.fromhex(text)
        except ValueError:
            tid = b""
        if len(tid) != 16:
            return self._json({"error": f"invalid trace id {text!r}: want 32 hex digits"}, 400)
        h = self.view.store.get(tid)
        if h is None:
            return self._json(
                {
                    "error": f"trace {text} is not held: not seen yet, or evicted (the view "
                    "keeps the newest max_traces traces within max_bytes)"
                },
                404,
            )
        return self._json(detail(h))

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return self._json(self.view.stats())

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        f, errors = Filter.parse(request.query)
        after_text = request.headers.get("Last-Event-ID") or request.query.get("after", "")
        if after_text and not after_text.isdigit():
            errors.append("after: want a whole number (a seq of /api/traces)")
        if errors:
            return self._json({"error": "; ".join(errors)}, 400)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        view, hub = self.view, self.view.hub
        # joined and caught up in one step: nothing published in between is missed or sent
        # twice
        s = Stream(f)
        hub.streams.add(s)
        view.streams_changed()
        try:
            backlog: list[Summary] = []
            if after_text:
                backlog = [h.summary for h in view.store.since(int(after_text)) if f.match(h)]
            hub.push(s, event("hello", view.stats(), view.store.seq))
            if backlog:
                hub.push(s, event("traces", backlog, backlog[-1].seq))
            while not s.closed:
                if not s.pending:
                    s.wake.clear()
                    try:
                        await asyncio.wait_for(s.wake.wait(), KEEPALIVE)
                    except TimeoutError:
                        await resp.write(b": keep-alive\n\n")
                    continue
                if s.dropped:
                    n, s.dropped = s.dropped, 0
                    await resp.write(event("gap", {"dropped": n}))
                    continue
                await resp.write(s.pending.popleft())
        except ConnectionResetError:
            pass  # the page went away
        finally:
            hub.streams.discard(s)
            view.streams_changed()
        return resp
