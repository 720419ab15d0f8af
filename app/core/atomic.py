"""Write a file so that it appears complete or not at all: temp file, fsync, rename."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_writer(target: Path, *, shared: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write; on success it is fsynced and renamed onto ``target``,
    on failure removed. The temp file sits beside the target (same filesystem).

    ``shared``: the file is for people (a saved copy), so it gets the permissions any new
    file of this user gets (0666 less the umask); otherwise only this user may read it
    (settings, secrets)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = (_open_shared_temp(target) if shared else
                         tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                          dir=target.parent))
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _open_shared_temp(target: Path) -> tuple[int, str]:
    """Like mkstemp, but created 0666 so that the kernel applies the process umask (Python
    cannot read the umask without changing it for every thread)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _attempt in range(100):
        name = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.part")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside {target}")


def fsync_file(path: Path) -> None:
    """Flush a file's data to the disk (a file written by someone else: a copy, SQLite)."""
    # Windows flushes only a handle open for writing; POSIX accepts a read-only one, which
    # also works for read-only files (the file store's blobs).
    mode = os.O_RDWR | getattr(os, "O_BINARY", 0) if os.name == "nt" else os.O_RDONLY
    fd = os.open(path, mode)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (renames, new files) durable. POSIX only: Windows
    cannot open a directory, and NTFS journals its metadata itself."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
