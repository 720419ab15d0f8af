"""The errors the core raises, each with a message a person can act on."""

from __future__ import annotations

import errno
import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError as PydanticValidationError


class BenchDataError(Exception):
    """Base class of every error Bench Data Manager raises on purpose."""


class ValidationError(BenchDataError, ValueError):
    """A datapoint, value or argument is malformed; nothing was stored."""


class ValueNotJSONError(ValidationError):
    """A value cannot be represented as strict JSON (NaN, bytes, sets, ...)."""


class ValueTooLargeError(ValidationError):
    """A JSON value would not fit in one central MongoDB document."""


class QueryError(BenchDataError, ValueError):
    """A selector, sort or cursor is malformed or uses an unsupported operator."""


class QueryTimeoutError(QueryError):
    """A query ran past its time budget and was stopped (nothing else was held up)."""


class NotFoundError(BenchDataError, KeyError):
    """No datapoint with the given id exists (or it was deleted)."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else "not found"


class FileNotReachableError(NotFoundError):
    """A datapoint's file is neither on this bench nor anywhere this bench can fetch it
    from (only on another server's disk, no central copy, no central store configured)."""


class FileUnavailableError(BenchDataError):
    """A file's central copy cannot be fetched right now (network, server down, settings);
    trying again later may work."""


class CentralUnavailableError(BenchDataError):
    """A question for the central store (a central query) cannot be asked now: the
    central MongoDB is not reachable or refused it; trying again later may work."""


class CentralNotConfiguredError(CentralUnavailableError):
    """A central query on a bench with no central MongoDB configured."""


class FileDamagedError(BenchDataError):
    """A file's central copy did not verify against its record (SHA-256, size or ETag);
    none of its bytes were served."""


class ConflictError(BenchDataError):
    """A datapoint id is already used by a datapoint with different content."""


class CaptureError(BenchDataError, OSError):
    """A file could not be captured; nothing was stored for it."""


class SourceMissingError(CaptureError):
    """The file to capture does not exist (or vanished while it was copied)."""


class SourceIsDirectoryError(CaptureError):
    """A directory was given where a file was expected."""


class SourceUnreadableError(CaptureError):
    """The file to capture exists but cannot be read (permissions, locks, I/O)."""


class SourceRefusedError(CaptureError):
    """The file is never captured from where it is: inside the bench's own data or
    configuration folders, or behind a link that leaves a watched folder."""


class SourceChangedError(CaptureError):
    """The file changed while it was being copied; the copy was discarded."""


class DiskFullError(CaptureError):
    """The data directory's disk is full; nothing was stored (a partial copy was removed).

    The one error for "no space left" on every write path: the file store raises it for
    ENOSPC, the local store for SQLite's SQLITE_FULL. REST answers 507, the CLI and the
    window say its message."""


#: errno values that mean "no room left": a full disk, or the user's disk quota.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
#: SQLite's primary result code for "database or disk is full".
_SQLITE_FULL = 13


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says there is no space left (ENOSPC/EDQUOT, SQLITE_FULL)."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL_ERRNOS
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_FULL
    return False


class StoreError(BenchDataError):
    """The local store is unusable (corrupt, locked by another process, too new)."""


def describe_validation_error(exc: "PydanticValidationError") -> str:
    """One clause per problem in a pydantic error, without its URLs and type names."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "datapoint"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "; ".join(problems)
