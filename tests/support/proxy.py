"""A TCP relay in front of a real server: it can watch what passes (``bench/bench_fleet.py``
counts MongoDB messages and S3 requests with it) and hold the server's replies back — a
central store that answers slowly, for tests of what a bench does when a write takes long
(the server has applied the write; its reply is late)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Optional


class Watch:
    """What one relayed connection sees (a subclass counts or records it)."""

    def requested(self, data: bytes) -> None:
        """A chunk the client sent (already passed on)."""

    def replied(self, data: bytes) -> None:
        """A chunk the server sent (already passed on)."""


class Relay:
    """Listens on 127.0.0.1:``port`` (a free one) and relays to ``target``. Requests go
    through at once; replies wait ``reply_delay_s`` first. Each connection is watched by
    a :meth:`watch` of its own."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.reply_delay_s = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="relay").start()

    def watch(self) -> Watch:
        """The watch of a new connection."""
        return Watch()

    def _accept(self) -> None:
        while True:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            watch = self.watch()
            for source, sink, seen, replies in ((client, server, watch.requested, False),
                                                (server, client, watch.replied, True)):
                threading.Thread(target=self._relay, args=(source, sink, seen, replies),
                                 daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket,
               seen: Callable[[bytes], None], replies: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if replies and self.reply_delay_s:
                    time.sleep(self.reply_delay_s)
                sink.sendall(chunk)
                seen(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()

    def close(self) -> None:
        self._listener.close()

    def __enter__(self) -> "Relay":
        return self

    def __exit__(self, kind: Optional[type[BaseException]], value: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        self.close()
