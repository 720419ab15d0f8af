"""One capture service per store: an exclusive lock on ``<data_dir>/service.lock``.

The headless runner (``benchdata run``, and the desktop window, which hosts the same
runner) takes it before starting any component and keeps the file open for as long as it
runs; the operating system drops the lock when the process ends, even after a crash, so a
stale file never blocks a restart. One-shot CLI commands do not take it (SQLite serialises
their writes with the service's).

POSIX: ``fcntl.flock`` (advisory; the holder's pid, host and start time are readable by
the second process for its message). Windows: ``msvcrt.locking`` on one byte far beyond
the text, so the text stays readable while the byte is locked.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from app.core.errors import BenchDataError
from app.core.paths import BenchPaths

log = logging.getLogger(__name__)

LOCK_NAME = "service.lock"
#: Windows: the locked byte (beyond any text written to the file).
_WIN_LOCK_OFFSET = 1 << 20
#: The holder's note is padded with spaces to this size and blanked, not truncated, on
#: release (see ``_write_info``).
NOTE_BYTES = 4096


class ServiceLockedError(BenchDataError):
    """Another service holds the store's lock."""


def lock_path(paths: BenchPaths) -> Path:
    return paths.data_dir / LOCK_NAME


def _try_lock(handle: IO[str]) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        handle.seek(_WIN_LOCK_OFFSET)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            handle.seek(0)
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(handle: IO[str]) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        handle.seek(_WIN_LOCK_OFFSET)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
        return
    import fcntl

    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_info(handle: IO[str], info: dict[str, Any]) -> None:
    """Overwrite the note in place, padded to NOTE_BYTES: once the file has that size a
    new note needs no new disk space, so even a service started on a full disk can say
    what it is (and that it runs degraded)."""
    handle.seek(0)
    handle.write(json.dumps(info).ljust(NOTE_BYTES))
    handle.truncate()  # what a longer note left beyond this one
    handle.flush()


def _close_quietly(handle: IO[str]) -> None:
    """Close the lock file; text a full disk kept from being written is dropped."""
    try:
        handle.close()
    except OSError:
        pass


def read_holder(paths: BenchPaths) -> dict[str, Any] | None:
    """What the holder wrote into the lock file (pid, host, started), if readable."""
    try:
        text = lock_path(paths).read_text(encoding="utf-8").strip("\x00 \n")
        holder = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another Bench Data Manager service"
    where = f" on {holder['host']}" if holder.get("host") else ""
    return (f"another Bench Data Manager service (pid {holder.get('pid', '?')}{where}, "
            f"started {holder.get('started', '?')})")


class ServiceLock:
    """The exclusive lock; ``acquire`` raises ServiceLockedError naming the holder."""

    def __init__(self, paths: BenchPaths) -> None:
        self.paths = paths
        self.path = lock_path(paths)
        self._handle: IO[str] | None = None
        self._info: dict[str, Any] = {}

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> None:
        if self._handle is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Never truncate before we hold the lock (the holder's text is the message).
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        handle = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            if not _try_lock(handle):
                raise ServiceLockedError(
                    f"{describe_holder(read_holder(self.paths))} is already running on this "
                    f"store ({self.paths.data_dir}); stop it or use --data-dir")
            self._info = {"pid": os.getpid(), "host": socket.gethostname(),
                          "started": datetime.now(UTC).astimezone().isoformat(
                              timespec="seconds")}
            try:
                _write_info(handle, self._info)
            except OSError as exc:  # a full disk: the lock holds, only the note is lost
                log.warning("holding the service lock, but could not describe the "
                            "service in %s: %s", self.path, exc.strerror or exc)
        except BaseException:
            _close_quietly(handle)
            raise
        self._handle = handle

    def publish(self, **facts: Any) -> None:
        """Add facts for other processes to read (the running components, the API's
        address): the desktop window shows them when it attaches to this service."""
        if self._handle is None:
            return
        self._info.update(facts)
        try:
            _write_info(self._handle, self._info)
        except OSError as exc:  # only a courtesy to readers; the lock itself still holds
            log.warning("could not describe the service in %s: %s", self.path, exc)

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            handle.seek(0)
            handle.write(" " * NOTE_BYTES)  # blank, keeping the room (see _write_info)
            handle.truncate()
            handle.flush()
        except OSError:
            pass
        try:
            _unlock(handle)
        except OSError:
            pass
        finally:
            _close_quietly(handle)

    def __enter__(self) -> ServiceLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def is_locked(paths: BenchPaths) -> dict[str, Any] | None:
    """``None`` if no service holds the store; else what the holder wrote (maybe ``{}``)."""
    # A running holder has written its pid; a blank or missing note means none runs, so
    # there is no need to probe (a probe could make a service starting this instant fail).
    if read_holder(paths) is None:
        return None
    probe = ServiceLock(paths)
    try:
        probe.acquire()
    except ServiceLockedError:
        return read_holder(paths) or {}
    probe.release()
    return None
