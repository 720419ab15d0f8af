"""Interrupted captures: a note per capture in flight, left behind when its process dies.

Before a capture copies a file into the file store it writes a small JSON note to
``files/notes/<token>.json`` (source path, size, when, which front end, and the
datapoint it is meant to become) and keeps it open with a shared flock for as long as
the capture runs. A capture that finishes, fails or is cancelled removes its note. A
note nobody holds the lock of was therefore left by a process that died mid-capture:
the file store has already swept the half-copied ``.part`` file, and the note is what
tells the operator which capture was lost (``interrupted``), so it can be captured again
or dismissed. The lock, not a start-up sweep, is the proof of death, so a window, a CLI
command and ``benchdata run`` can capture side by side and none mistakes another's
capture for a crash leftover (the same rule as the file store's temp files).

A note survives a crash of its process as it is (the kernel has it). For sources of at
least :data:`DURABLE_NOTE_BYTES` (or of unknown size) it is also fsynced with its
directory, so a power cut in the middle of a long copy is reported too; for smaller files
the copy lasts milliseconds, and two fsyncs more would cost small-file capture about half
its rate (measured: +1.5 to 3 ms on 2.4 to 10 ms per 1 KB capture).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from app.core.atomic import fsync_dir
from app.core.errors import DiskFullError, is_disk_full
from app.core.filestore.locks import exclusive_lock, held_by_another_process
from app.core.timestamps import now_canonical

try:  # POSIX: flock marks a note whose capture is still running
    import fcntl
except ImportError:  # pragma: no cover - Windows: an open note cannot be deleted anyway
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

NOTE_SUFFIX = ".json"
#: Notes of captures at least this large are fsynced (see the module's docstring).
DURABLE_NOTE_BYTES = 8 * 1024 * 1024

#: Front ends, as a person reads them in the list of interrupted captures.
WINDOW = "window"
COMMAND_LINE = "command line"
SERVICE = "service (REST API)"
WATCHED_FOLDER = "watched folder"
PYTHON_API = "Python API"

_front_end = PYTHON_API


def set_front_end(name: str) -> None:
    """Name the front end this process captures for (set once by each entry point)."""
    global _front_end
    _front_end = name


def current_front_end() -> str:
    return _front_end


@dataclass(frozen=True)
class CaptureNote:
    """What one capture was about to store."""

    note_id: str
    source: str
    size_bytes: Optional[int]
    started_at: str  # canonical UTC
    front_end: str
    #: The datapoint (JSON) the capture was to become; None when the bytes came from a
    #: stream (an upload) and cannot be read again from here.
    datapoint: Optional[dict[str, Any]] = None

    @property
    def watched(self) -> bool:
        """Watched-folder captures are captured again by the watcher's next scan."""
        return self.front_end == WATCHED_FOLDER

    @property
    def datapoint_id(self) -> Optional[str]:
        return str(self.datapoint["datapoint_id"]) if self.datapoint else None

    def retry_hint(self) -> str:
        """Why this capture can or cannot be captured again, in one sentence."""
        if self.watched:
            return "the folder watcher captures it again by itself"
        if self.datapoint is None:
            return "it arrived as a stream (an upload); send it again"
        if not os.path.exists(self.source):
            return "the source file no longer exists"
        return "can be captured again"

    @property
    def can_retry(self) -> bool:
        return (not self.watched and self.datapoint is not None
                and os.path.exists(self.source))

    def as_json(self) -> dict[str, Any]:
        return {"id": self.note_id, "source": self.source, "size_bytes": self.size_bytes,
                "started_at": self.started_at, "front_end": self.front_end,
                "datapoint_id": self.datapoint_id, "can_retry": self.can_retry,
                "hint": self.retry_hint()}


class OpenNote:
    """The note of a capture in flight: the open descriptor carries its lock."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: Optional[int] = fd

    def end(self) -> None:
        """The capture is over (committed, failed or cancelled): forget it. Idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(fd)


class CaptureNotes:
    """The notes under ``<file store root>/notes``."""

    def __init__(self, files_root: Path) -> None:
        self.dir = Path(files_root) / "notes"

    def begin(self, source: str, size_bytes: Optional[int], *,
              datapoint: Optional[Mapping[str, Any]] = None,
              front_end: Optional[str] = None) -> OpenNote:
        """Write (durably) and lock the note of a capture that is about to start.

        A full disk is the capture's DiskFullError (REST 507, one sentence elsewhere):
        the note is the first thing a capture writes."""
        try:
            return self._begin(source, size_bytes, datapoint=datapoint, front_end=front_end)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise DiskFullError(f"could not capture {source}: the disk holding {self.dir} is "
                                f"full ({exc.strerror or exc}): free space and capture "
                                "again") from exc

    def _begin(self, source: str, size_bytes: Optional[int], *,
               datapoint: Optional[Mapping[str, Any]],
               front_end: Optional[str]) -> OpenNote:
        note_id = secrets.token_hex(12)
        path = self.dir / f"{note_id}{NOTE_SUFFIX}"
        body = {"source": source, "size_bytes": size_bytes, "started_at": now_canonical(),
                "front_end": front_end or _front_end,
                "datapoint": dict(datapoint) if datapoint is not None else None}
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:  # the first note of this store
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o600)
        try:
            if fcntl is not None:
                with contextlib.suppress(OSError):  # no flock here: notes live until dismissed
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            os.write(fd, json.dumps(body).encode())  # ASCII: keeps a path's undecodable bytes
            if size_bytes is None or size_bytes >= DURABLE_NOTE_BYTES:
                os.fsync(fd)
                fsync_dir(self.dir)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return OpenNote(path, fd)

    def interrupted(self) -> list[CaptureNote]:
        """Notes whose capture's process is gone, oldest first."""
        found = []
        for path in self._paths():
            if _held(path):
                continue
            note = _read(path)
            if note is not None:
                found.append(note)
        return sorted(found, key=lambda n: (n.started_at, n.note_id))

    def get(self, note_id: str) -> Optional[CaptureNote]:
        path = self._path(note_id)
        if path is None or _held(path):
            return None
        return _read(path)

    @contextlib.contextmanager
    def claimed(self, note_id: str) -> Iterator[Optional[CaptureNote]]:
        """The interrupted note, locked against a second retry or dismissal meanwhile;
        None if it is not (or no longer) an interrupted capture."""
        path = self._path(note_id)
        if path is None:
            yield None
            return
        with exclusive_lock(path) as locked:  # False: a capture in flight, or a retry
            yield _read(path) if locked else None

    def discard(self, note_id: str) -> bool:
        """Remove a note (the caller holds it through :meth:`claimed`)."""
        path = self._path(note_id)
        if path is None:
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def _paths(self) -> list[Path]:
        try:
            return [p for p in self.dir.iterdir() if p.name.endswith(NOTE_SUFFIX)]
        except FileNotFoundError:
            return []

    def _path(self, note_id: str) -> Optional[Path]:
        """The note's path; None for an id that is not one of ours (hex only)."""
        if not note_id or not all(c in "0123456789abcdef" for c in note_id):
            return None
        return self.dir / f"{note_id}{NOTE_SUFFIX}"


def _held(path: Path) -> bool:
    """True while the capture that wrote the note still runs (it holds the lock); a note
    that vanished or cannot be read is not ours to report."""
    return held_by_another_process(path, if_unopenable=True)


def _read(path: Path) -> Optional[CaptureNote]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        return CaptureNote(note_id=path.name[:-len(NOTE_SUFFIX)], source=str(body["source"]),
                           size_bytes=body.get("size_bytes"),
                           started_at=str(body["started_at"]),
                           front_end=str(body.get("front_end") or PYTHON_API),
                           datapoint=body.get("datapoint"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # Killed between creating the note and writing it: nothing to tell anyone.
        logger.info("removing an unreadable capture note %s (%s)", path.name, exc)
        path.unlink(missing_ok=True)
        return None
