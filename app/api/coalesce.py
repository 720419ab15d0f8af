"""One socket write per small response, instead of one for the head and one for the body.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and the body at ``http.response.body``: two ``send`` system
calls and two TCP segments for every small JSON answer, each waking the client. Under
load that second write is a tenth of the server's CPU per request. Here the protocol's
transport holds small writes until the end of the current event-loop step (or until
more than ``HOLD_LIMIT`` bytes are held) and then writes them as one. Nothing is
reordered or dropped: a close writes what is held first; large writes (file
downloads) go straight through after what is held.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Optional

#: Writes up to this size are held briefly; a larger one flushes and goes out at once.
HOLD_LIMIT: Final[int] = 64 * 1024


class CoalescingTransport:
    """Wraps an asyncio transport; ``write`` joins what one event-loop step writes."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: Optional[bytes] = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is None:
            if len(data) >= HOLD_LIMIT:
                self._transport.write(data)
                return
            self._held = data if type(data) is bytes else bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._held += data
        if len(self._held) >= HOLD_LIMIT:
            self.flush()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        # Everything else (reading, extra info, buffer limits ...) is the transport's own.
        return getattr(self._transport, name)


def coalescing_protocol() -> Optional[type[asyncio.Protocol]]:
    """uvicorn's httptools protocol with coalesced writes; None without httptools (the
    server then uses uvicorn's own choice)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is optional in uvicorn; h11 works, unchanged
        return None

    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    return CoalescingHttpToolsProtocol
