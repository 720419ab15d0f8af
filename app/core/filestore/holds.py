"""Holds: blobs a capture in flight has produced or matched but not yet recorded.

A capture that puts a blob and commits the row using it later holds the blob in between,
so a concurrent failing capture of the same content cannot remove it (DEVELOPING.md
"Blobs in flight"). Holds work across processes: the first hold in this process keeps an
open descriptor with a shared flock, which other processes' ``remove`` respects (on
Windows an open file cannot be deleted).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

from app.core.errors import StoreError
from app.core.filestore.locks import open_shared_locked, still_linked
from app.core.filestore.temp import TempFile


class BlobHolds:
    """This process's holds, counted per blob, each blob's first with its locked descriptor.

    ``lock`` is the file store's: its "already stored?" check, rename and hold, and its
    removals, run under it, so a blob is never removed between "it is already stored" and
    the hold that protects it.
    """

    def __init__(self) -> None:
        #: Blobs a capture in flight has produced or matched but not yet recorded in a
        #: committed row; ``FileStore.remove`` leaves them alone (``put_file(hold=True)``).
        self._holds: Counter[str] = Counter()
        #: One open descriptor per held blob, carrying a shared lock that other processes'
        #: ``remove`` respects (POSIX flock; on Windows an open file cannot be deleted).
        self._hold_files: dict[str, int] = {}
        self.lock = threading.Lock()

    def held(self, sha256: str) -> bool:
        """True while a capture in this process holds the blob (caller holds ``lock``)."""
        return bool(self._holds.get(sha256))

    def take(self, sha256: str, dest: Path) -> bool:
        """Hold the blob at ``dest`` (caller holds ``lock``); False if it is gone.

        The first hold in this process opens the blob and takes a shared lock on it, so a
        ``remove`` in another process (the service beside a CLI command or the window)
        leaves it alone. A removal that won the race has unlinked the file by the time the
        shared lock is granted: then the caller must place its own copy.
        """
        if self._holds[sha256]:
            self._holds[sha256] += 1
            return True
        try:
            fd = open_shared_locked(dest)  # waits out a removal in progress
        except FileNotFoundError:
            return False
        if not still_linked(fd, dest):
            os.close(fd)
            return False
        self._add_hold(sha256, fd)
        return True

    def take_placed(self, sha256: str, temp: TempFile, dest: Path, root: Path) -> None:
        """Hold a blob this capture just placed (caller holds ``lock``).

        POSIX: the temp file's descriptor, whose shared flock kept other processes'
        cleanup away, becomes the hold, so no removal can slip in between the rename and
        the hold. Windows closed it to rename; a fresh handle blocks deletion from then on."""
        if temp.fd is not None:
            fd, temp.fd = temp.fd, None
            self._add_hold(sha256, fd)
        elif not self.take(sha256, dest):
            raise StoreError(f"the blob {sha256} vanished right after it was stored in "
                             f"{root}; capture again")

    def _add_hold(self, sha256: str, fd: int) -> None:
        """Count a hold; keep ``fd`` if it is this process's first (caller holds the lock)."""
        if self._holds[sha256]:
            os.close(fd)
        else:
            self._hold_files[sha256] = fd
        self._holds[sha256] += 1

    def release(self, sha256: str) -> None:
        """End a hold taken by ``put_*(hold=True)`` (after the row is committed, or not)."""
        with self.lock:
            if self._holds[sha256] > 1:
                self._holds[sha256] -= 1
                return
            self._holds.pop(sha256, None)
            fd = self._hold_files.pop(sha256, None)
        if fd is not None:
            os.close(fd)  # drops the shared lock
