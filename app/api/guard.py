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
* **CORS for allowed origins** (MADSci's dashboard): answers to an allowed origin carry
  ``Access-Control-Allow-Origin`` (that origin, never ``*``) and ``Vary: Origin``; a
  preflight ``OPTIONS`` from it is answered here (204) without the token, because browsers
  send none on a preflight. The request that follows still needs the token.
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

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_HEADER = "x-bench-token"
#: What an allowed page may do: the routes' methods, and the headers clients send.
CORS_METHODS = b"GET, POST, OPTIONS"
CORS_ALLOWED_HEADERS = frozenset({"authorization", "content-type", "range", TOKEN_HEADER})
#: Response headers a page may read (paging cursor, file facts).
CORS_EXPOSED_HEADERS = b"X-Next-Cursor, ETag, Content-Length, Content-Range, Content-Disposition"
CORS_MAX_AGE = b"600"
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


def normalize_origin(origin: str) -> str:
    """``"HTTP://Dash.Lab:3000/"`` -> ``"http://dash.lab:3000"`` (how browsers send it)."""
    return origin.strip().rstrip("/").lower()


def parse_origins(text: str) -> tuple[str, ...]:
    """A comma-separated list of origins (``BENCHDATA_API_ALLOWED_ORIGINS``)."""
    return tuple(normalize_origin(o) for o in text.split(",") if o.strip())


def check_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """Validated origins; ValueError with a sentence for one that is not
    ``scheme://host[:port]`` (a path, a wildcard, a missing scheme)."""
    checked = []
    for origin in origins:
        text = normalize_origin(str(origin))
        scheme, sep, rest = text.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or any(
                ch in rest for ch in "/?#*@ "):
            raise ValueError(f"allowed origin {origin!r} is not an origin such as "
                             "'http://dashboard.lab:3000' (scheme, host, optional port; no "
                             "path and no wildcard)")
        checked.append(text)
    return tuple(checked)


class ApiGuard:
    """Refuses requests without the token, from web pages, or to a foreign host name."""

    def __init__(self, app: ASGIApp, *, token: Optional[str] = None,
                 loopback_only: bool = False, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self._loopback_only = loopback_only
        self._allowed_origins = {normalize_origin(o) for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        refusal = self._refusal(headers, preflight=origin is not None and _is_preflight(
            scope, headers))
        if refusal is None and origin is None:
            await self.app(scope, receive, send)
            return
        if refusal is None:
            if _is_preflight(scope, headers):
                await _send_preflight(send, origin, headers)
            else:
                await self.app(scope, receive, _with_cors(send, origin))
            return
        status, message = refusal
        body = json.dumps({"detail": message, "message": message}).encode()
        response_headers = [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]
        if status == 401:
            response_headers.append((b"www-authenticate", b'Basic realm="benchdata"'))
            if origin is not None:  # an allowed page may read why it was refused
                response_headers.extend(_cors_headers(origin))
        await send({"type": "http.response.start", "status": status,
                    "headers": response_headers})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, headers: dict[bytes, bytes], *,
                 preflight: bool = False) -> Optional[tuple[int, str]]:
        host_header = headers.get(b"host", b"")
        if self._loopback_only and not _is_loopback_host_header(host_header):
            host = host_of(host_header.decode("latin-1")).lower()
            return 403, (f"this API answers to loopback addresses only, not to host "
                         f"{host!r}; connect to http://127.0.0.1:<port>/")
        origin = headers.get(b"origin")
        if origin is not None:
            text = normalize_origin(origin.decode("latin-1"))
            if text not in self._allowed_origins:
                return 403, ("requests from web pages (Origin header) are refused; scripts "
                             "send no Origin. Allow an origin explicitly with "
                             "BENCHDATA_API_ALLOWED_ORIGINS")
            if preflight:
                return None  # browsers send no credentials on a preflight
        if self._token is not None:
            given = token_from_headers(headers)
            if given is None or not hmac.compare_digest(given.encode(), self._token):
                return 401, ("this API needs its token: send 'Authorization: Bearer <token>', "
                             "or put it in the URL as http://bench:<token>@host:port/ (MADSci's "
                             "DataClient sends that as Basic auth)")
        return None


def _is_preflight(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    return scope.get("method") == "OPTIONS" and b"access-control-request-method" in headers


def _cors_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", origin), (b"vary", b"Origin"),
            (b"access-control-expose-headers", CORS_EXPOSED_HEADERS)]


async def _send_preflight(send: Send, origin: bytes, headers: dict[bytes, bytes]) -> None:
    """204 for a preflight from an allowed origin: the methods, and those of the requested
    headers clients of this API use."""
    requested = headers.get(b"access-control-request-headers", b"").decode("latin-1")
    allowed = ", ".join(h for h in (p.strip().lower() for p in requested.split(","))
                        if h in CORS_ALLOWED_HEADERS)
    response_headers = [(b"access-control-allow-origin", origin), (b"vary", b"Origin"),
                        (b"access-control-allow-methods", CORS_METHODS),
                        (b"access-control-max-age", CORS_MAX_AGE),
                        (b"content-length", b"0")]
    if allowed:
        response_headers.append((b"access-control-allow-headers", allowed.encode()))
    await send({"type": "http.response.start", "status": 204, "headers": response_headers})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send, origin: bytes) -> Send:
    """``send`` that adds the CORS headers to the response start."""

    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()),
                                              *_cors_headers(origin)]}
        await send(message)

    return send_with_cors
