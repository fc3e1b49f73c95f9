"""A small aiohttp server lifecycle shared by the OTLP/HTTP receiver, /metrics and health:
on host:port, or on a unix socket (`unix_path`)."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import stat

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
        unix_path: str | None = None,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._reuse_port = reuse_port
        self._unix_path = unix_path
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
        site: web.BaseSite
        if self._unix_path is not None:
            remove_stale_socket(self._unix_path)
            site = web.UnixSite(runner, self._unix_path, ssl_context=self._ssl)
            where = self._unix_path
        else:
            site = web.TCPSite(
                runner,
                self._host,
                self._port,
                ssl_context=self._ssl,
                reuse_port=self._reuse_port or None,
            )
            where = f"{self._host}:{self._port}"
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
        self._runner = runner
        if self._unix_path is not None:
            self.bound = (self._unix_path, 0)
            return self.bound
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
            if self._unix_path is not None:
                remove_stale_socket(self._unix_path)


def remove_stale_socket(path: str) -> None:
    """Remove a unix socket left by an earlier run (never a file of another kind)."""
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
