"""The hot route, served as raw ASGI: ``POST /datapoint`` with a small form or JSON body.

Automation scripts post many small value datapoints (MADSci's ``DataClient`` sends each
as one urlencoded ``datapoint`` field). Through FastAPI such a request passes about a
dozen middleware and routing layers, a dependency solver and a trip through the
worker-thread pool before the commit, and those cost more CPU than parsing, validating
and storing the datapoint itself. Here a small body is read straight from the ASGI
``receive``, handled by ``handle`` on the event loop (microseconds of parsing and
validation; the commit itself waits on the group committer's thread, never on the
loop), and answered with one ``send`` pair.

Everything else — multipart bodies (files), bodies without a ``Content-Length`` or
larger than ``FAST_BODY_LIMIT`` (their parsing could hold the loop up), other content
types — goes to ``fallback``, the framework's own route, unchanged. ``handle`` uses the
same parsing, validation and error mapping as that route, so both answer alike.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final, Optional

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

#: Largest body handled on the event loop; parsing and validating this much JSON takes
#: well under a millisecond. Larger bodies are parsed on a worker thread by the route.
FAST_BODY_LIMIT: Final[int] = 64 * 1024
URLENCODED: Final[str] = "application/x-www-form-urlencoded"
JSON_BODY: Final[str] = "application/json"
FAST_KINDS: Final[frozenset[str]] = frozenset({URLENCODED, JSON_BODY})

#: ``handle(kind, body)`` -> (status, JSON body). Raising is a 500.
Handler = Callable[[str, bytes], Awaitable[tuple[int, bytes]]]

_SERVER_ERROR: Final[bytes] = b"Internal Server Error"


#: Content-Type values as clients usually spell them, recognised without parsing.
_PLAIN_KINDS: Final[dict[bytes, str]] = {b"application/x-www-form-urlencoded": URLENCODED,
                                         b"application/json": JSON_BODY}


def fast_kind(headers: list[tuple[bytes, bytes]]) -> Optional[str]:
    """The body's media type if this request belongs on the fast path, else None."""
    kind: Optional[str] = None
    length: Optional[int] = None
    for name, value in headers:
        if name == b"content-type":
            kind = _PLAIN_KINDS.get(value) or \
                value.decode("latin-1").split(";")[0].strip().lower()
        elif name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
        elif name == b"transfer-encoding":
            return None
    if kind not in FAST_KINDS or length is None or length > FAST_BODY_LIMIT:
        return None
    return kind


async def read_small_body(receive: Receive) -> Optional[bytes]:
    """The whole body (its Content-Length was checked to be small); None if the client
    went away before it was complete."""
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body  # the usual case: a small body arrives in one piece
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send: Send, status: int, body: bytes) -> None:
    await send(_start(status, b"application/json", body))
    await send({"type": "http.response.body", "body": body})


def _start(status: int, media_type: bytes, body: bytes) -> Message:
    return {"type": "http.response.start", "status": status,
            "headers": [(b"content-type", media_type),
                        (b"content-length", str(len(body)).encode())]}


class DatapointIngest:
    """ASGI app for ``POST /datapoint``: small form/JSON bodies here, the rest to
    ``fallback``."""

    def __init__(self, handle: Handler, fallback: ASGIApp) -> None:
        self._handle = handle
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = fast_kind(scope["headers"])
        if kind is None:
            await self._fallback(scope, receive, send)
            return
        body = await read_small_body(receive)
        if body is None:
            log.info("client disconnected before its request body was complete")
            return  # nobody is listening; nothing was stored
        try:
            status, answer = await self._handle(kind, body)
        except Exception:
            # What the framework's ServerErrorMiddleware answers; the trace goes to the log.
            log.exception("POST /datapoint failed")
            await send(_start(500, b"text/plain; charset=utf-8", _SERVER_ERROR))
            await send({"type": "http.response.body", "body": _SERVER_ERROR})
            return
        await send_json(send, status, answer)
