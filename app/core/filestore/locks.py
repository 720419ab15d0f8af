"""Advisory locks between processes on the store's files (POSIX flock).

A shared lock marks a file in use: a temp file being written, then (the same descriptor)
the capture's hold on the blob it became, or a capture note. An exclusive probe tells
cleanup and removal whether any process still uses a file. Windows has no flock, but
refuses to delete a file that is open, which gives the same protection.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows has no flock; open files cannot be deleted there
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)


def mark_in_use(fd: int) -> None:
    """A shared advisory lock held while a temp file is written (POSIX flock).

    Shared, not exclusive: cleanup and removal probe with an exclusive lock, which any
    holder blocks, and once the file becomes a blob the same lock is the capture's hold,
    which must not keep other processes from holding the same blob too."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # a filesystem without flock: fall back to age-less cleanup
            logger.debug("flock is not available on this file system")


def held_by_another_process(path: Path, *, if_unopenable: bool = False) -> bool:
    """True when some process holds ``path``'s advisory lock (a capture in flight, or its
    note); ``if_unopenable`` is the answer for a file that cannot be opened (vanished)."""
    if fcntl is None:
        return False  # Windows refuses to delete files that are open anyway
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return if_unopenable
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def still_linked(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open as ``fd`` (not unlinked or replaced)."""
    try:
        opened, named = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def open_shared_locked(path: Path) -> int:
    """Open ``path`` read-only with a shared flock (the mark of a hold), blocking while a
    removal holds it exclusively. On Windows the open handle itself blocks deletion."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                os.close(fd)
                raise
            logger.debug("flock is not available on this file system")
    return fd


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[bool | None]:
    """Lock a file (a blob against new holds while it is checked and unlinked; a capture
    note against a second retry): True if locked, False if some process holds it, None if
    it does not exist."""
    if fcntl is None:
        # Windows: nothing to lock; a blob another process holds is open there, and
        # deleting an open file fails (``layout.unlink_quietly`` then keeps it).
        yield True if path.exists() else None
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError:  # a file system without flock: in-process holds only
            logger.debug("flock is not available on this file system")
        yield True
    finally:
        os.close(fd)
