"""A TCP relay in front of a real server whose replies can be held back: a central store
that answers slowly, for tests of what a bench does when a write takes long (the server
has applied the write; its reply is late)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Optional

from tests.support.servers import free_port


class SlowReplies:
    """Listens on 127.0.0.1:``port`` and relays to ``target``; replies (server to client)
    wait ``delay_s`` before they are passed on, requests go through at once."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.delay_s = 0.0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="slow-replies").start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for source, sink, held in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._relay, args=(source, sink, held),
                                 daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, held: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if held and self.delay_s:
                    time.sleep(self.delay_s)
                sink.sendall(chunk)
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
        self._closed.set()
        self._listener.close()

    def __enter__(self) -> "SlowReplies":
        return self

    def __exit__(self, kind: Optional[type[BaseException]], value: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        self.close()
