"""`oauth2client` extension: OAuth2 access tokens by the client-credentials grant (the OTel
Collector's `oauth2clientauth` extension), for the kafka components' SASL `OAUTHBEARER`
(`auth.sasl.oauthbearer_token_source: oauth2client`).

    extensions:
      oauth2client:
        client_id: agent-gateway            # or client_id_file
        client_secret: ${env:CLIENT_SECRET}  # or client_secret_file
        token_url: https://idp.example.com/oauth2/token
        scopes: [kafka]
        endpoint_params: {audience: kafka}
        timeout: 10s
        expiry_buffer: 5m                    # refresh this long before a token expires

A token is fetched when first asked for and reused until `expiry_buffer` before it
expires; concurrent askers share one fetch. A failed fetch raises, so the Kafka client
retries its connection.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import msgspec

from pipeline.component import ExtensionFactory, Host, Settings
from pipeline.configtypes import Config, Duration, TLSClientConfig


class OAuth2ClientConfig(Config):
    client_id: str = ""
    client_id_file: str = ""
    client_secret: str = ""
    client_secret_file: str = ""
    token_url: str = ""
    scopes: list[str] = []
    endpoint_params: dict[str, str] = {}
    timeout: Duration = msgspec.field(default_factory=lambda: Duration(0.0))
    expiry_buffer: Duration = msgspec.field(default_factory=lambda: Duration(300.0))
    tls: TLSClientConfig | None = None

    def validate(self) -> list[str]:
        errs = []
        if not (self.client_id or self.client_id_file):
            errs.append("client_id: no client_id or client_id_file provided")
        if not (self.client_secret or self.client_secret_file):
            errs.append("client_secret: no client_secret or client_secret_file provided")
        if not self.token_url:
            errs.append("token_url: no TokenURL provided")
        elif not self.token_url.startswith(("http://", "https://")):
            errs.append(f"token_url: {self.token_url!r} must start with http:// or https://")
        return errs


def _secret(value: str, path: str) -> str:
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    return value


class OAuth2Client:
    def __init__(self, settings: Settings, cfg: OAuth2ClientConfig) -> None:
        self.cfg = cfg
        self._log = settings.logger
        self._token = ""
        self._expires = 0.0  # monotonic time the token is refreshed at
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def start(self, host: Host) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def token(self) -> str:
        """A valid access token (fetched when none is, or it is about to expire)."""
        if self._token and time.monotonic() < self._expires:
            return self._token
        async with self._lock:
            if self._token and time.monotonic() < self._expires:
                return self._token
            await self._fetch()
            return self._token

    async def _fetch(self) -> None:
        cfg = self.cfg
        form = {
            "grant_type": "client_credentials",
            "client_id": _secret(cfg.client_id, cfg.client_id_file),
            "client_secret": _secret(cfg.client_secret, cfg.client_secret_file),
            **cfg.endpoint_params,
        }
        if cfg.scopes:
            form["scope"] = " ".join(cfg.scopes)
        ssl_ctx: object = None
        if cfg.tls is not None and cfg.token_url.startswith("https://"):
            from pipeline.exporters.otlp_http import client_ssl_context

            ssl_ctx = client_ssl_context(cfg.tls)
        timeout = aiohttp.ClientTimeout(total=cfg.timeout.seconds or None)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(cfg.token_url, data=form, ssl=ssl_ctx) as resp,  # type: ignore[arg-type]
        ):
            body = await resp.read()
            if resp.status != 200:
                raise ConnectionError(
                    f"oauth2client: token endpoint answered {resp.status}: {body[:200]!r}"
                )
        doc = msgspec.json.decode(body)
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise ConnectionError("oauth2client: the token endpoint sent no access_token")
        lifetime = float(doc.get("expires_in") or 3600)
        self._token = token
        self._expires = time.monotonic() + max(0.0, lifetime - cfg.expiry_buffer.seconds)
        self.fetches += 1

    def kafka_provider(self) -> object:
        """This client as aiokafka's SASL/OAUTHBEARER token provider."""
        from aiokafka.abc import AbstractTokenProvider

        client = self

        class Provider(AbstractTokenProvider):  # type: ignore[misc]
            async def token(self) -> str:
                return await client.token()

        return Provider()


factory = ExtensionFactory(
    type="oauth2client",
    config_type=OAuth2ClientConfig,
    create=OAuth2Client,
    stability="alpha",
    description="OAuth2 client-credentials tokens (SASL/OAUTHBEARER for Kafka)",
)
