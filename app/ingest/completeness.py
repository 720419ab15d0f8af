"""When is a file (or dataset folder) complete? Quiet periods, lock tests, marker files.

watchdog's "created" fires when writing *starts*, so an event never means "done". A unit is
complete when its signature — (size, mtime_ns) for a file, a listing fingerprint for a
dataset folder — has not changed for the rule's quiet period, measured on this machine's
monotonic clock from the moment we last *saw* it change (file mtimes on network shares
come from another clock and are compared for equality only). Optionally the file must also
be openable for exclusive access and/or a marker file must exist.
"""

from __future__ import annotations

import errno
import heapq
import logging
import os
import re
import sys
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Optional, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Candidate:
    signature: Optional[Hashable]
    since: float  # when the current signature was first seen (monotonic)
    due: float  # next time to look at it
    generation: int  # invalidates stale heap entries


class QuietTracker(Generic[K]):
    """Candidates waiting for their quiet period; only in-flight units are held.

    ``observe`` reports a fresh signature (from an event or a scan); ``touch`` says the unit
    changed without saying how (its signature is re-read when due); ``due`` pops the units
    whose quiet period may be over; ``confirm`` decides with a fresh signature.
    """

    def __init__(self, quiet_seconds: float) -> None:
        self.quiet = max(0.0, quiet_seconds)
        self._items: dict[K, _Candidate] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._generation = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def keys(self) -> list[K]:
        return list(self._items)

    def _schedule(self, key: K, candidate: _Candidate, due: float) -> None:
        self._generation += 1
        candidate.due = due
        candidate.generation = self._generation
        heapq.heappush(self._heap, (due, self._generation, key))

    def observe(self, key: K, signature: Hashable, now: float) -> None:
        """A unit was seen with ``signature``; (re)start its quiet period if it changed."""
        candidate = self._items.get(key)
        if candidate is None:
            candidate = _Candidate(signature, now, now, 0)
            self._items[key] = candidate
            self._schedule(key, candidate, now + self.quiet)
        elif candidate.signature != signature:
            candidate.signature = signature
            candidate.since = now
            self._schedule(key, candidate, now + self.quiet)
        elif candidate.generation == -1:
            # Popped but never rescheduled (an error mid-capture): look at it again.
            self._schedule(key, candidate, max(now, candidate.since + self.quiet))

    def touch(self, key: K, now: float) -> None:
        """A unit changed (an event); its signature is read again when it is due."""
        candidate = self._items.get(key)
        if candidate is None:
            candidate = _Candidate(None, now, now, 0)
            self._items[key] = candidate
        else:
            candidate.signature = None
            candidate.since = now
        self._schedule(key, candidate, now + self.quiet)

    def defer(self, key: K, until: float) -> None:
        """Look again at ``until`` (lock held, marker missing, retry after an error)."""
        candidate = self._items.get(key)
        if candidate is not None:
            self._schedule(key, candidate, until)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def next_due(self) -> Optional[float]:
        while self._heap:
            due, generation, key = self._heap[0]
            candidate = self._items.get(key)
            if candidate is None or candidate.generation != generation:
                heapq.heappop(self._heap)
                continue
            return due
        return None

    def pop_due(self, now: float, limit: int = 10_000) -> list[K]:
        """Units whose next look is due (each is rescheduled by ``confirm`` or ``defer``)."""
        keys: list[K] = []
        while self._heap and len(keys) < limit:
            due, generation, key = self._heap[0]
            candidate = self._items.get(key)
            if candidate is None or candidate.generation != generation:
                heapq.heappop(self._heap)
                continue
            if due > now:
                break
            heapq.heappop(self._heap)
            candidate.generation = -1  # no live heap entry until rescheduled
            keys.append(key)
        return keys

    def confirm(self, key: K, signature: Hashable, now: float) -> bool:
        """True when ``signature`` has been stable for the quiet period; else reschedules."""
        candidate = self._items.get(key)
        if candidate is None:
            return False
        if candidate.signature != signature:
            candidate.signature = signature
            candidate.since = now
            self._schedule(key, candidate, now + self.quiet)
            return False
        if now - candidate.since >= self.quiet:
            return True
        self._schedule(key, candidate, candidate.since + self.quiet)
        return False

    def restart(self, key: K, now: float) -> None:
        """Start a fresh quiet period (the file changed while it was being copied)."""
        self.touch(key, now)


def file_signature(stat: os.stat_result) -> tuple[int, int, int]:
    """What must not change during the quiet period: size, mtime, identity (inode)."""
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino)


def marker_present(marker: Optional[Path]) -> bool:
    """A marker exists (a link counts as present: it is a signal, never followed)."""
    return marker is None or os.path.lexists(marker)


_MARKER_FIELDS = re.compile(r"(\{name\}|\{stem\})")


def marker_path(template: str, unit: Path) -> Path:
    """Where the marker ``template`` (``{name}.done``, ``{stem}.ok`` ...) of ``unit`` is,
    relative to the unit's folder (a dataset folder's marker is relative to its parent)."""
    stem = unit.stem if unit.suffix else unit.name
    return unit.parent / template.replace("{name}", unit.name).replace("{stem}", stem)


def marker_name_regex(template: str) -> re.Pattern[str]:
    """Matches the names of the marker files ``template`` produces (never captured)."""
    last = template.replace("\\", "/").rsplit("/", 1)[-1]
    parts = _MARKER_FIELDS.split(last)
    pattern = "".join(".+" if part in ("{name}", "{stem}") else re.escape(part) for part in parts)
    return re.compile(pattern, re.IGNORECASE)


def check_marker_template(value: str) -> str:
    """A marker template relative to the unit's folder, or a ValueError saying what is wrong."""
    value = value.strip()
    if not value or value.startswith(("/", "\\")) or ".." in Path(value).parts:
        raise ValueError("the marker must be relative to the file's folder, e.g. '{name}.done'")
    leftover = _MARKER_FIELDS.sub("", value)
    if "{" in leftover or "}" in leftover:
        raise ValueError("the marker may only use {name} and {stem}, e.g. '{name}.done'")
    return value


if sys.platform == "win32":  # pragma: no cover - exercised on Windows CI only
    import ctypes
    from ctypes import wintypes

    _kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _CreateFileW = _kernel32.CreateFileW
    _CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID,
                             wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]
    _CreateFileW.restype = wintypes.HANDLE
    _CloseHandle = _kernel32.CloseHandle
    _GENERIC_READ = 0x80000000
    _OPEN_EXISTING = 3
    _INVALID_HANDLE = wintypes.HANDLE(-1).value
    _SHARING_VIOLATION = 32
    _LOCK_VIOLATION = 33

    def is_unlocked(path: Path) -> bool:
        """True when no other process has the file open (share mode 0 succeeds)."""
        handle = _CreateFileW(str(path), _GENERIC_READ, 0, None, _OPEN_EXISTING, 0, None)
        if handle == _INVALID_HANDLE:
            error = ctypes.get_last_error()
            if error in (_SHARING_VIOLATION, _LOCK_VIOLATION):
                return False
            raise ctypes.WinError(error)
        _CloseHandle(handle)
        return True

else:
    import fcntl

    def is_unlocked(path: Path) -> bool:
        """True when no other process holds a lock on the file.

        POSIX has no mandatory share modes. Writers that lock their output are detected:
        ``flock`` locks (an exclusive flock is tried) and POSIX record locks (a read lock
        is tried; Samba takes those for Windows clients). Writers that lock nothing are
        not detected — the quiet period still covers them.
        """
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
        try:
            for take, release in ((lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB),
                                   lambda: fcntl.flock(fd, fcntl.LOCK_UN)),
                                  (lambda: fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB),
                                   lambda: fcntl.lockf(fd, fcntl.LOCK_UN))):
                try:
                    take()
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        return False
                    raise
                release()
            return True
        finally:
            os.close(fd)
