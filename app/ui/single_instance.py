"""One window per store: a second start brings the first window to the front and exits.

The first window listens on a local socket (QLocalServer) named after its store; a second
start connects, asks it to raise itself, and ends. A socket left behind by a window that
crashed answers nothing, so it is removed and this start becomes the first.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QObject
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

_RAISE = b"raise\n"
_CONNECT_TIMEOUT_MS = 1000


def server_name(data_dir: Path) -> str:
    """A name that is the same for every start on this store by this user."""
    key = f"{getpass.getuser()}\0{data_dir.resolve()}".encode("utf-8", "surrogateescape")
    return "benchdata-window-" + hashlib.sha256(key).hexdigest()[:20]


def raise_running_window(data_dir: Path) -> bool:
    """Ask a window already open on this store to come to the front; False if none is."""
    socket = QLocalSocket()
    socket.connectToServer(server_name(data_dir))
    if not socket.waitForConnected(_CONNECT_TIMEOUT_MS):
        return False
    socket.write(_RAISE)
    socket.flush()
    socket.waitForBytesWritten(_CONNECT_TIMEOUT_MS)
    socket.disconnectFromServer()
    return True


class WindowServer(QObject):
    """Listens for later starts on the same store and calls ``on_raise`` for each."""

    def __init__(self, data_dir: Path, on_raise: Callable[[], None],
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._on_raise = on_raise
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        name = server_name(data_dir)
        if not self._server.listen(name):
            QLocalServer.removeServer(name)  # left by a window that crashed
            if not self._server.listen(name):
                log.warning("a second start cannot find this window: %s",
                            self._server.errorString())
        if self._server.isListening():
            log.info("this window is the one for its store; a second start raises it")
        self._server.newConnection.connect(self._accept)

    def _accept(self) -> None:
        while (connection := self._server.nextPendingConnection()) is not None:
            connection.readyRead.connect(lambda c=connection: self._read(c))
            connection.disconnected.connect(connection.deleteLater)

    def _read(self, connection: QLocalSocket) -> None:
        if bytes(connection.readAll().data()).startswith(_RAISE.strip()):
            log.info("a second start asked this window to come to the front")
            self._on_raise()

    def close(self) -> None:
        self._server.close()
