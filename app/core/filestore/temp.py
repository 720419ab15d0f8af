"""Temp files a capture writes before its blob exists: ``root/tmp/<random>.part``.

Every failure removes the temp file and leaves no blob behind; nothing already stored is
touched. A crash can leave ``.part`` files: :func:`remove_leftover_temp_files` removes them
at the next start, but never one a capture (in this or another process) is still writing.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Final, Self

from app.core.filestore.layout import BLOB_MODE, unlink_quietly
from app.core.filestore.locks import held_by_another_process, mark_in_use
from app.core.filestore.messages import store_write_failed

logger = logging.getLogger(__name__)

TEMP_SUFFIX: Final = ".part"

# Temp files being written by this process; cleanup must not delete them.
_active_temp_files: set[Path] = set()
_active_lock = threading.Lock()


class TempFile:
    """A ``root/tmp/<random>.part`` file that is removed unless it was committed."""

    def __init__(self, tmp_dir: Path, what: str, root: Path) -> None:
        self.path = tmp_dir / f"{secrets.token_hex(16)}{TEMP_SUFFIX}"
        self.what = what
        self.root = root
        self.fd: int | None = None
        self.finished = False
        self.committed = False

    def __enter__(self) -> Self:
        flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
                 | getattr(os, "O_CLOEXEC", 0))
        with _active_lock:
            _active_temp_files.add(self.path)
        try:
            self.fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            self._forget()
            raise store_write_failed(self.what, self.root, exc) from exc
        mark_in_use(self.fd)  # tells other processes' cleanup_temp it is in use
        return self

    def finish(self) -> None:
        """Flush to disk and make read-only: the data is durable under the temp name.

        On POSIX the file stays open (and locked) until ``__exit__``, after the rename,
        so another process's ``cleanup_temp`` never mistakes it for a crash leftover;
        Windows cannot rename an open file, so there it is closed here.
        Idempotent: a second call does nothing."""
        if self.fd is None or self.finished:
            return
        self.finished = True
        try:
            os.fsync(self.fd)
            if hasattr(os, "fchmod"):
                os.fchmod(self.fd, BLOB_MODE)
            if os.name != "posix":
                fd, self.fd = self.fd, None
                os.close(fd)
                os.chmod(self.path, BLOB_MODE)
        except OSError as exc:
            raise store_write_failed(self.what, self.root, exc) from exc

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            if not self.committed:
                unlink_quietly(self.path)
        finally:
            self._forget()

    def _forget(self) -> None:
        with _active_lock:
            _active_temp_files.discard(self.path)


def remove_leftover_temp_files(tmp_dir: Path) -> int:
    """Remove ``.part`` files a crash left in ``tmp_dir``; returns how many were removed.

    Temp files of captures still running are left alone: this process's by name,
    other processes' (a CLI command beside ``benchdata run``) by their flock.
    """
    removed = 0
    with _active_lock:
        active = set(_active_temp_files)
    try:
        entries = list(tmp_dir.iterdir())
    except FileNotFoundError:
        return 0
    for entry in entries:
        leftover = entry.name.endswith(TEMP_SUFFIX) and entry not in active
        if leftover and entry.is_file() and not held_by_another_process(entry) \
                and unlink_quietly(entry):
            removed += 1
    if removed:
        logger.info("removed %d unfinished capture(s) from %s", removed, tmp_dir)
    return removed
