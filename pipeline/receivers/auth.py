"""Bearer-token authentication for receivers (`auth:` under a protocol).

    auth:
      bearer_token: ${env:TRACESIEVE_TOKEN}    # or
      bearer_token_file: /run/secrets/token    # re-read when the file changes

A request without `Authorization: Bearer <token>` matching the token is refused with
gRPC UNAUTHENTICATED / HTTP 401 and counted.

The OTel Collector's form, `auth: {authenticator: <extension id>}`, names an authenticator
extension; tracesieve has none yet, so it is refused with a message saying so.
"""

from __future__ import annotations

import hmac
import os

from pipeline.configtypes import Config

AUTHENTICATOR_REFUSED = (
    "authenticator extensions (the OTel Collector's auth: {{authenticator: {name}}}) are not "
    "supported: tracesieve has no {name!r} extension"
)


class AuthConfig(Config):
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    authenticator: str | None = None  # the Collector's form: refused (see the docstring)

    def validate(self) -> list[str]:
        if self.authenticator is not None:
            return [
                "authenticator: "
                + AUTHENTICATOR_REFUSED.format(name=self.authenticator)
                + "; check bearer tokens with auth: {bearer_token: ...} or "
                "{bearer_token_file: ...} instead"
            ]
        if (self.bearer_token is None) == (self.bearer_token_file is None):
            return ["set exactly one of bearer_token, bearer_token_file"]
        if self.bearer_token is not None and not self.bearer_token.strip():
            return ["bearer_token: is empty"]
        if self.bearer_token_file is not None and not os.path.isfile(self.bearer_token_file):
            return [f"bearer_token_file: cannot read {self.bearer_token_file!r}"]
        return []


class BearerAuth:
    def __init__(self, cfg: AuthConfig) -> None:
        self._cfg = cfg
        self._token = (cfg.bearer_token or "").encode()
        self._mtime = -1.0

    def _current(self) -> bytes:
        path = self._cfg.bearer_token_file
        if path is None:
            return self._token
        try:
            mtime = os.stat(path).st_mtime
            if mtime != self._mtime:
                with open(path, "rb") as fh:
                    self._token = fh.read().strip()
                self._mtime = mtime
        except OSError:
            pass  # keep the last token read
        return self._token

    def check(self, header: str | None) -> str | None:
        """None when authorized, else what is wrong (for the client)."""
        if not header:
            return "missing Authorization header (want: Bearer <token>)"
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "invalid Authorization header (want: Bearer <token>)"
        expected = self._current()
        if not expected or not hmac.compare_digest(token.strip().encode(), expected):
            return "invalid bearer token"
        return None
