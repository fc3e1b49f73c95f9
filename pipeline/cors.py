"""CORS for the HTTP servers, as the OTel Collector's `confighttp` does it (with the
`rs/cors` library): browsers on allowed origins may POST to the receiver.

- `allowed_origins`: exact origins or patterns with one `*` (`https://*.example.com`);
  `*` alone allows any origin. Matching ignores case. Empty: CORS is off.
- Preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
  here with 204: for an allowed origin, method and headers it carries
  `Access-Control-Allow-Origin` (the origin), `-Allow-Methods`, `-Allow-Headers`,
  `-Allow-Credentials: true` and `-Max-Age` (when `max_age` > 0); otherwise no CORS
  headers, so the browser refuses.
- Other requests from an allowed origin get `Access-Control-Allow-Origin` and
  `-Allow-Credentials`; every answer varies by `Origin`.
- Allowed request headers: `allowed_headers` (`*`: any) plus what rs/cors always allows
  (`Origin`, `Accept`, `Content-Type`, `X-Requested-With`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

ALLOWED_METHODS = ("GET", "POST", "HEAD")
DEFAULT_HEADERS = ("origin", "accept", "content-type", "x-requested-with")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CORS:
    def __init__(
        self, allowed_origins: Sequence[str], allowed_headers: Sequence[str], max_age: int
    ) -> None:
        origins = [o.lower() for o in allowed_origins]
        self.any_origin = "*" in origins
        self.exact = {o for o in origins if "*" not in o}
        self.patterns = [tuple(o.split("*", 1)) for o in origins if "*" in o and o != "*"]
        headers = [h.lower() for h in allowed_headers]
        self.any_header = "*" in headers
        self.headers = set(headers) | set(DEFAULT_HEADERS)
        self.max_age = max_age

    def origin_allowed(self, origin: str) -> bool:
        o = origin.lower()
        if self.any_origin or o in self.exact:
            return True
        return any(
            len(o) >= len(pre) + len(suf) and o.startswith(pre) and o.endswith(suf)
            for pre, suf in self.patterns
        )

    def _headers_allowed(self, requested: list[str]) -> bool:
        return self.any_header or all(h in self.headers for h in requested)

    def preflight(self, request: web.Request) -> web.Response:
        resp = web.Response(status=204)
        resp.headers.add("Vary", "Origin")
        resp.headers.add("Vary", "Access-Control-Request-Method")
        resp.headers.add("Vary", "Access-Control-Request-Headers")
        origin = request.headers.get("Origin", "")
        method = request.headers.get("Access-Control-Request-Method", "").upper()
        raw = request.headers.get("Access-Control-Request-Headers", "")
        requested = [h.strip().lower() for h in raw.split(",") if h.strip()]
        if (
            not self.origin_allowed(origin)
            or method not in ALLOWED_METHODS
            or not self._headers_allowed(requested)
        ):
            return resp
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers["Access-Control-Allow-Methods"] = method
        if requested:
            resp.headers["Access-Control-Allow-Headers"] = ", ".join(requested)
        resp.headers["Access-Control-Allow-Credentials"] = "true"
        if self.max_age > 0:
            resp.headers["Access-Control-Max-Age"] = str(self.max_age)
        return resp

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if (
            request.method == "OPTIONS"
            and origin is not None
            and "Access-Control-Request-Method" in request.headers
        ):
            return self.preflight(request)
        resp = await handler(request)
        resp.headers.add("Vary", "Origin")
        if origin is not None and self.origin_allowed(origin):
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Allow-Credentials"] = "true"
        return resp
