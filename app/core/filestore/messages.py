"""What a failed capture tells the operator: each error names the path and what to do.

One place for the wording, shared by the copy, the temp file and the placement of a blob.
"""

from __future__ import annotations

from pathlib import Path

from app.core.errors import (
    DISK_FULL_ERRNOS,
    CaptureError,
    DiskFullError,
    SourceChangedError,
    SourceIsDirectoryError,
    SourceMissingError,
    SourceUnreadableError,
)


def _disk_full(what: str, root: Path, exc: OSError) -> DiskFullError:
    return DiskFullError(
        f"could not capture {what}: the disk holding {root} is full "
        f"({exc.strerror or exc}): free space and capture again"
    )


def store_write_failed(what: str, root: Path, exc: OSError) -> CaptureError:
    if exc.errno in DISK_FULL_ERRNOS:
        return _disk_full(what, root, exc)
    return CaptureError(
        f"could not capture {what}: writing to the data folder {root} failed "
        f"({exc.strerror or exc}): check that the folder exists, is writable and its disk is "
        "healthy, then capture again"
    )


def source_missing(path: Path) -> SourceMissingError:
    return SourceMissingError(
        f"{path} does not exist: check the path (was the file moved or deleted?) and capture again"
    )


def source_unreadable(path: Path | str, exc: OSError | str) -> SourceUnreadableError:
    reason = exc if isinstance(exc, str) else (exc.strerror or str(exc))
    return SourceUnreadableError(
        f"{path} cannot be read ({reason}): check its permissions and that no other program "
        "holds it exclusively, then capture again"
    )


def source_changed(path: Path | str, detail: str) -> SourceChangedError:
    return SourceChangedError(
        f"{path} changed while it was being copied ({detail}); the copy was discarded: "
        "wait until the program writing it has finished, then capture again"
    )


def directory_given(path: Path) -> SourceIsDirectoryError:
    return SourceIsDirectoryError(
        f"{path} is a folder, not a file: choose the files inside it (or capture them one by one)"
    )
