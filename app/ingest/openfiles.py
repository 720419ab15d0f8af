"""Which processes hold a file open for writing (Linux ``/proc``), for the ``held-open``
completeness profile.

Some instruments keep their output file open for the whole acquisition and close it at
the end; on Linux the kernel shows every process's open descriptors under
``/proc/<pid>/fd`` (links to the files) and their open flags in ``/proc/<pid>/fdinfo``.
A file is still being written while some descriptor on it was opened ``O_WRONLY`` or
``O_RDWR``.

What cannot be known is said, never guessed: other platforms have no ``/proc``, a process
of another user cannot be looked into without privileges, and a writer on another
computer (a network share) is invisible. :func:`writers_of` then answers ``None`` with a
reason, and the profile falls back to the quiet period and says so in the folder's status.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Optional

log = logging.getLogger(__name__)

PROC: Final = Path("/proc")
#: One look at every process is shared by the checks made within this many seconds (a
#: watcher checks a batch of due files at once; each must not walk /proc again).
SNAPSHOT_TTL_S: Final = 0.25
_WRITE_MODES: Final = (os.O_WRONLY, os.O_RDWR)


@dataclass(frozen=True)
class Writer:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"process {self.pid} ({self.command})" if self.command else f"process {self.pid}"


@dataclass(frozen=True)
class OpenFiles:
    """One look at /proc: which files are open where, and whose processes could not be
    seen. Only the descriptors of files asked about have their flags read (cheap)."""

    opened: dict[str, list[tuple[str, str]]]  # real path -> (pid, fd) holding it open
    hidden_uids: frozenset[int]  # owners of processes whose descriptors were unreadable
    taken: float  # monotonic

    def writers(self, real_path: str) -> list[Writer]:
        return [Writer(int(pid), _command(pid)) for pid, fd in self.opened.get(real_path, [])
                if _opened_for_writing(PROC / pid / "fdinfo" / fd)]


def supported() -> Optional[str]:
    """None when open files can be seen here, else why not (one sentence)."""
    if not sys.platform.startswith("linux"):
        return f"open files cannot be seen on {sys.platform}"
    if not (PROC / "self" / "fd").is_dir():
        return "/proc is not mounted"
    return None


class OpenFileTable:
    """Cached looks at /proc (thread-safe)."""

    def __init__(self, ttl: float = SNAPSHOT_TTL_S) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._snapshot: Optional[OpenFiles] = None

    def snapshot(self) -> OpenFiles:
        with self._lock:
            now = time.monotonic()
            if self._snapshot is None or now - self._snapshot.taken > self._ttl:
                self._snapshot = take_snapshot(now)
            return self._snapshot

    def writers_of(self, paths: Iterable[Path]) -> tuple[Optional[list[tuple[Path, Writer]]], str]:
        """(held, "") with the files of ``paths`` held open for writing (empty: none is),
        or (None, why) when that cannot be known for one of them."""
        why = supported()
        if why is not None:
            return None, why
        snapshot = self.snapshot()
        held: list[tuple[Path, Writer]] = []
        for path in paths:
            try:
                owner = os.lstat(path).st_uid
            except FileNotFoundError:
                continue
            if owner in snapshot.hidden_uids:
                return None, (f"the processes of user {owner}, who owns "
                              f"{path.name}, cannot be looked into (no permission)")
            held.extend((path, writer) for writer in snapshot.writers(os.path.realpath(path)))
        return held, ""


def take_snapshot(now: Optional[float] = None) -> OpenFiles:
    """Every file descriptor of every process, by the file's real path."""
    opened: dict[str, list[tuple[str, str]]] = {}
    hidden: set[int] = set()
    try:
        pids = [entry.name for entry in os.scandir(PROC) if entry.name.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        fd_dir = PROC / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            try:
                hidden.add(os.stat(PROC / pid).st_uid)
            except OSError:
                pass  # it ended meanwhile
            continue
        except OSError:
            continue  # ended meanwhile
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if target.startswith("/"):  # a file, not a pipe or socket
                opened.setdefault(target, []).append((pid, fd))
    return OpenFiles(opened, frozenset(hidden), time.monotonic() if now is None else now)


def _opened_for_writing(fdinfo: Path) -> bool:
    try:
        with open(fdinfo, encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & os.O_ACCMODE in _WRITE_MODES
    except (OSError, ValueError, IndexError):
        pass
    return False


def _command(pid: str) -> str:
    try:
        return (PROC / pid / "comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
