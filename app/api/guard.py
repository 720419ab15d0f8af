"""Who may talk to the local API: a token when one is set, no web pages, no rebinding.

The API writes to the bench's store, so three doors are closed in one small ASGI layer
(a pure ASGI middleware: it adds no per-request task or body buffering, unlike
Starlette's ``BaseHTTPMiddleware``):

* **Token.** With a token configured (required when the server listens beyond loopback)
  every request must carry it, as ``Authorization: Bearer <token>``, as the password of
  HTTP Basic auth (``http://bench:<token>@host:8004/`` — how MADSci's ``DataClient``
  passes it, since httpx turns a URL's user info into Basic auth), or as
  ``X-Bench-Token: <token>``.
* **Web pages.** A browser adds ``Origin`` to cross-site requests, and an HTML form may
  POST ``multipart/form-data`` to ``http://127.0.0.1:8004/datapoint`` from any site the
  operator visits. Scripts (httpx, requests, curl) send no ``Origin``; requests that do
  are refused unless their origin is explicitly allowed.
* **DNS rebinding.** On loopback, a ``Host`` header naming anything but a loopback
  address means a browser was tricked into treating a foreign name as ours: refused.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import ipaddress
import json
from collections.abc import Iterable
from typing import Optional

from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_HEADER = "x-bench-token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "localhost.localdomain"})


def host_of(host_header: str) -> str:
    """``"127.0.0.1:8004"`` -> ``"127.0.0.1"``; ``"[::1]:8004"`` -> ``"::1"``."""
    host = host_header.strip()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@functools.lru_cache(maxsize=256)
def _is_loopback_host_header(host_header: bytes) -> bool:
    # Every request is checked, and clients send the same few Host values over and over.
    return is_loopback_name(host_of(host_header.decode("latin-1")).lower())


def is_loopback_name(host: str) -> bool:
    """``localhost`` or any loopback address (127.0.0.0/8, ::1)."""
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_from_headers(headers: dict[bytes, bytes]) -> Optional[str]:
    """The token a request carries, by any of the accepted ways; None if none."""
    direct = headers.get(TOKEN_HEADER.encode())
    if direct:
        return direct.decode("latin-1").strip()
    authorization = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, _, password = decoded.partition(":")
        return password
    return None


class ApiGuard:
    """Refuses requests without the token, from web pages, or to a foreign host name."""

    def __init__(self, app: ASGIApp, *, token: Optional[str] = None,
                 loopback_only: bool = False, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self._loopback_only = loopback_only
        self._allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = self._refusal(headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        body = json.dumps({"detail": message, "message": message}).encode()
        response_headers = [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]
        if status == 401:
            response_headers.append((b"www-authenticate", b'Basic realm="benchdata"'))
        await send({"type": "http.response.start", "status": status,
                    "headers": response_headers})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, headers: dict[bytes, bytes]) -> Optional[tuple[int, str]]:
        host_header = headers.get(b"host", b"")
        if self._loopback_only and not _is_loopback_host_header(host_header):
            host = host_of(host_header.decode("latin-1")).lower()
            return 403, (f"this API answers to loopback addresses only, not to host "
                         f"{host!r}; connect to http://127.0.0.1:<port>/")
        origin = headers.get(b"origin")
        if origin is not None:
            text = origin.decode("latin-1").rstrip("/").lower()
            if text not in self._allowed_origins:
                return 403, ("requests from web pages (Origin header) are refused; scripts "
                             "send no Origin. Allow an origin explicitly with "
                             "BENCHDATA_API_ALLOWED_ORIGINS")
        if self._token is not None:
            given = token_from_headers(headers)
            if given is None or not hmac.compare_digest(given.encode(), self._token):
                return 401, ("this API needs its token: send 'Authorization: Bearer <token>', "
                             "or put it in the URL as http://bench:<token>@host:port/ (MADSci's "
                             "DataClient sends that as Basic auth)")
        return None
