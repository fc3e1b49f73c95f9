"""A small aiohttp server lifecycle shared by the OTLP/HTTP receiver, /metrics and health."""

from __future__ import annotations

import socket
import ssl

from aiohttp import web


class HTTPServer:
    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._reuse_port = reuse_port
        self._runner: web.AppRunner | None = None
        self.bound: tuple[str, int] | None = None

    async def start(self) -> tuple[str, int]:
        # bodies are decompressed by the handler, under its own size limit
        runner = web.AppRunner(
            self._app,
            access_log=None,
            handle_signals=False,
            auto_decompress=False,
            shutdown_timeout=5.0,
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            self._host,
            self._port,
            ssl_context=self._ssl,
            reuse_port=self._reuse_port or None,
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno, f"cannot listen on {self._host}:{self._port}: {exc.strerror}"
            ) from None
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        addr = next(
            (s.getsockname() for s in sockets if s.family in (socket.AF_INET, socket.AF_INET6)),
            None,
        )
        self.bound = (self._host, addr[1] if addr else self._port)
        return self.bound

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
