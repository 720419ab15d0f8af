"""The file being captured: opened read-only, and refused if it changed during the copy.

The source is opened read-only and never modified, moved or locked. Its size and mtime are
compared before and after the copy (and with the bytes read) so a file the instrument is
still writing is refused rather than stored half-written.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

from app.core.errors import SourceMissingError, SourceRefusedError
from app.core.filestore.messages import (
    directory_given,
    source_changed,
    source_missing,
    source_unreadable,
)


def open_source(path: Path, follow_symlinks: bool = True) -> tuple[io.FileIO, os.stat_result]:
    """Open ``path`` read-only (never for writing, never locked) and check it is a file.

    ``follow_symlinks=False`` refuses a link as the last component, atomically where the
    platform has O_NOFOLLOW (a link swapped in after the caller's check is not followed)."""
    # O_NONBLOCK: opening a FIFO must not hang; it is refused below as not a regular file.
    flags = (os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_NONBLOCK", 0))
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
        if not hasattr(os, "O_NOFOLLOW") and path.is_symlink():  # pragma: no cover - Windows
            raise SourceRefusedError(f"{path} is a symbolic link; links are not followed here")
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        raise source_missing(path) from None
    except IsADirectoryError:
        raise directory_given(path) from None
    except PermissionError as exc:
        if path.is_dir():  # Windows refuses to open a directory with EACCES
            raise directory_given(path) from None
        raise source_unreadable(path, exc) from exc
    except OSError as exc:
        if not follow_symlinks and exc.errno == errno.ELOOP:
            raise SourceRefusedError(
                f"{path} is a symbolic link; links are not followed here") from None
        raise source_unreadable(path, exc) from exc
    try:
        before = os.fstat(fd)
        if stat.S_ISDIR(before.st_mode):
            raise directory_given(path)
        if not stat.S_ISREG(before.st_mode):
            raise source_unreadable(path, "not a regular file")
        return io.FileIO(fd, "rb", closefd=True), before
    except BaseException:
        os.close(fd)
        raise


def check_source_unchanged(path: Path, source: io.FileIO, before: os.stat_result,
                           copied: int) -> None:
    """Refuse a copy whose source changed, shrank, grew, vanished or was replaced meanwhile."""
    try:
        after = os.fstat(source.fileno())
    except OSError as exc:
        raise source_unreadable(path, exc) from exc
    if after.st_size != before.st_size or copied != before.st_size:
        raise source_changed(
            path, f"size was {before.st_size} bytes, {copied} were read, now {after.st_size}")
    if after.st_mtime_ns != before.st_mtime_ns:
        raise source_changed(path, "its modification time changed")
    try:
        current = os.stat(path)
    except FileNotFoundError:
        raise SourceMissingError(
            f"{path} vanished while it was being copied; the copy was discarded: "
            "check where it went and capture it from there") from None
    except OSError as exc:
        raise source_unreadable(path, exc) from exc
    if (current.st_dev, current.st_ino) != (before.st_dev, before.st_ino):
        raise source_changed(path, "another file was put in its place")
