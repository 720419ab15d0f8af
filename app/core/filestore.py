"""The local content-addressed file store: every captured file, stored once, by SHA-256.

Why it looks like this (DESIGN.md, "Never lose data"):

* A capture streams the source once: each chunk is written to ``root/tmp/<random>.part``
  and hashed in the same pass, so a 10 GB file costs one read and flat memory (three
  preallocated 4 MiB buffers, whatever the file size).
* The temp file is flushed and ``fsync``-ed, atomically ``os.replace``-d to
  ``root/blobs/<sha[:2]>/<sha[2:4]>/<sha>`` and the directory is ``fsync``-ed, so after a
  crash a blob is either complete under its name or absent; leftover ``.part`` files are
  removed by :meth:`FileStore.cleanup_temp` at the next start.
* Identical content is stored once: a blob that is already present is kept and the new
  copy discarded. Stored blobs are read-only (0o444) to guard against accidental edits.
* The source is opened read-only and never modified, moved or locked. Its size and mtime
  are compared before and after the copy (and with the bytes read) so a file the
  instrument is still writing is refused rather than stored half-written.
* Every failure removes the temp file and leaves no blob behind; nothing already stored is
  touched. Each error names the path and what to do about it.

Speed: hashing runs on a helper thread (hashlib releases the GIL on large buffers) while
the caller's thread reads and writes the next chunk, and on Linux finished ranges of the
temp file are handed to the kernel for write-back as the copy goes (pages stay cached), so
the final ``fsync`` has little left to wait for. ``bench/bench_filestore.py`` measures it
against ``shutil.copyfile``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import logging
import os
import queue
import re
import secrets
import stat
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Protocol, Self, cast

from app.core.atomic import fsync_dir
from app.core.errors import (
    DISK_FULL_ERRNOS,
    CaptureError,
    DiskFullError,
    NotFoundError,
    SourceChangedError,
    SourceIsDirectoryError,
    SourceMissingError,
    SourceRefusedError,
    SourceUnreadableError,
    StoreError,
    ValidationError,
)

try:
    import fcntl
except ImportError:  # Windows has no flock; open files cannot be deleted there
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
"""Called as ``progress(bytes_done, bytes_total_or_None)`` about every 64 MiB and at the end."""

CHUNK_SIZE: Final = 4 * 1024 * 1024
"""Bytes per read/write/hash step; 1-8 MiB all measured alike, 4 MiB is the middle."""

NETWORK_CHUNK_SIZE: Final = 1024 * 1024
"""Bytes per step for a stream from a socket: a chunk filled by ``recv`` is written and
hashed while it is still in the CPU's cache (bench/bench_fetch.py: half the CPU of 4 MiB)."""

BUFFER_COUNT: Final = 3
"""Buffers in flight when hashing on the helper thread: one hashed, one filled, one spare."""

SMALL_BUFFER_SIZE: Final = 64 * 1024
"""Smallest buffer, used for small inputs (which may still grow while they are read)."""

CHECKPOINT_BYTES: Final = 64 * 1024 * 1024
"""How often progress is reported and written ranges are handed to the kernel's write-back."""

TEMP_SUFFIX: Final = ".part"
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
_BLOB_MODE: Final = 0o444

# Temp files being written by this process; cleanup_temp() must not delete them.
_active_temp_files: set[Path] = set()
_active_lock = threading.Lock()


@dataclass(frozen=True)
class BlobInfo:
    """A blob in the store."""

    sha256: str  # lowercase hex
    size_bytes: int
    path: Path  # final location inside the store


class _ReadInto(Protocol):
    def __call__(self, buffer: bytearray) -> int: ...


def _write_chunk(fd: int, data: memoryview) -> None:
    """Write all of ``data`` to ``fd``.

    This is the only place chunks reach the store's disk, on purpose: tests replace it
    (``monkeypatch.setattr(filestore, "_write_chunk", ...)``) to simulate a full disk
    (raise ``OSError(errno.ENOSPC, ...)``) or a source changing mid-copy.
    """
    while data:
        written = os.write(fd, data)
        data = data[written:]


# --------------------------------------------------------------------------- messages


def _disk_full(what: str, root: Path, exc: OSError) -> DiskFullError:
    return DiskFullError(
        f"could not capture {what}: the disk holding {root} is full "
        f"({exc.strerror or exc}): free space and capture again"
    )


def _store_write_failed(what: str, root: Path, exc: OSError) -> CaptureError:
    if exc.errno in DISK_FULL_ERRNOS:
        return _disk_full(what, root, exc)
    return CaptureError(
        f"could not capture {what}: writing to the data folder {root} failed "
        f"({exc.strerror or exc}): check that the folder exists, is writable and its disk is "
        "healthy, then capture again"
    )


def _source_missing(path: Path) -> SourceMissingError:
    return SourceMissingError(
        f"{path} does not exist: check the path (was the file moved or deleted?) and capture again"
    )


def _source_unreadable(path: Path | str, exc: OSError | str) -> SourceUnreadableError:
    reason = exc if isinstance(exc, str) else (exc.strerror or str(exc))
    return SourceUnreadableError(
        f"{path} cannot be read ({reason}): check its permissions and that no other program "
        "holds it exclusively, then capture again"
    )


def _source_changed(path: Path | str, detail: str) -> SourceChangedError:
    return SourceChangedError(
        f"{path} changed while it was being copied ({detail}); the copy was discarded: "
        "wait until the program writing it has finished, then capture again"
    )


# --------------------------------------------------------------------------- hashing


class _InlineHasher:
    """Hash on the caller's thread with one buffer: for inputs that fit in one chunk."""

    def __init__(self, buffer_size: int) -> None:
        self._buffer = bytearray(buffer_size)
        self._hash = hashlib.sha256()

    def buffer(self) -> bytearray:
        return self._buffer

    def submit(self, buffer: bytearray, length: int) -> None:
        with memoryview(buffer) as view:
            self._hash.update(view[:length])

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        pass


class _ThreadedHasher:
    """Hash filled buffers on a helper thread while the caller reads and writes the next.

    Buffers cycle ``free -> caller fills and writes -> filled -> hashed -> free``, so at most
    ``BUFFER_COUNT`` chunks exist and a buffer is never refilled before it has been hashed.
    """

    def __init__(self, chunk_size: int = CHUNK_SIZE) -> None:
        self._hash = hashlib.sha256()
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._filled: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        for _ in range(BUFFER_COUNT):
            self._free.put(bytearray(chunk_size))
        self._thread = threading.Thread(target=self._run, name="filestore-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._filled.get()) is not None:
            buffer, length = item
            try:
                if self._error is None:
                    with memoryview(buffer) as view:
                        self._hash.update(view[:length])
            except BaseException as exc:  # noqa: BLE001 - re-raised by hexdigest(); keep
                # draining so the caller never waits forever for a free buffer
                self._error = exc
            finally:
                self._free.put(buffer)

    def buffer(self) -> bytearray:
        return self._free.get()

    def submit(self, buffer: bytearray, length: int) -> None:
        self._filled.put((buffer, length))

    def hexdigest(self) -> str:
        self.close()
        if self._error is not None:
            raise self._error
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._filled.put(None)
            self._thread.join()


def _make_hasher(total: int | None,
                 chunk_size: int = CHUNK_SIZE) -> _InlineHasher | _ThreadedHasher:
    # A thread is only worth starting when there is more than one chunk to overlap, and a
    # small input needs no 4 MiB buffer (+1: the read that finds the end fits too).
    if total is not None and total < chunk_size:
        return _InlineHasher(max(total + 1, SMALL_BUFFER_SIZE))
    return _ThreadedHasher(chunk_size)


# --------------------------------------------------------------------------- OS helpers


_SYNC_FILE_RANGE_WRITE: Final = 2
"""``<linux/fs.h>``: start write-out of the range's dirty pages, do not wait for it."""


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux; ``os`` has no binding), None where there is none.

    Looked up on first use, so importing the store does not import ctypes."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], function)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a finished range of the temp file to disk now, so
    the disk works while we copy instead of all at the final ``fsync``: measured ~25%
    faster for 2 GiB. A hint: errors ignored (the ``fsync`` decides).

    Linux: ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` starts the write-back and leaves the
    pages cached, so reading the blob right after it is stored (a fetched file is served
    at once) comes from memory. Elsewhere, or where that call fails, ``POSIX_FADV_DONTNEED``:
    on Linux it starts the write-back too, but drops the pages already written, which on a
    machine whose background flusher keeps up sends that first read to the disk.
    """
    sync_file_range = _sync_file_range()
    if sync_file_range is not None and \
            sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE) == 0:
        return
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def _make_dirs_durably(directory: Path, stop: Path) -> None:
    """Create ``directory`` (below ``stop``) and fsync each parent that gained an entry."""
    if directory == stop or directory.is_dir():
        return
    _make_dirs_durably(directory.parent, stop)
    try:
        directory.mkdir()
    except FileExistsError:
        return  # another capture created it; its creator makes it durable
    fsync_dir(directory.parent)


def _open_source(path: Path, follow_symlinks: bool = True) -> tuple[io.FileIO, os.stat_result]:
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
        raise _source_missing(path) from None
    except IsADirectoryError:
        raise _directory_given(path) from None
    except PermissionError as exc:
        if path.is_dir():  # Windows refuses to open a directory with EACCES
            raise _directory_given(path) from None
        raise _source_unreadable(path, exc) from exc
    except OSError as exc:
        if not follow_symlinks and exc.errno == errno.ELOOP:
            raise SourceRefusedError(
                f"{path} is a symbolic link; links are not followed here") from None
        raise _source_unreadable(path, exc) from exc
    try:
        before = os.fstat(fd)
        if stat.S_ISDIR(before.st_mode):
            raise _directory_given(path)
        if not stat.S_ISREG(before.st_mode):
            raise _source_unreadable(path, "not a regular file")
        return io.FileIO(fd, "rb", closefd=True), before
    except BaseException:
        os.close(fd)
        raise


def _directory_given(path: Path) -> SourceIsDirectoryError:
    return SourceIsDirectoryError(
        f"{path} is a folder, not a file: choose the files inside it (or capture them one by one)"
    )


def _check_source_unchanged(path: Path, source: io.FileIO, before: os.stat_result,
                            copied: int) -> None:
    """Refuse a copy whose source changed, shrank, grew, vanished or was replaced meanwhile."""
    try:
        after = os.fstat(source.fileno())
    except OSError as exc:
        raise _source_unreadable(path, exc) from exc
    if after.st_size != before.st_size or copied != before.st_size:
        raise _source_changed(
            path, f"size was {before.st_size} bytes, {copied} were read, now {after.st_size}")
    if after.st_mtime_ns != before.st_mtime_ns:
        raise _source_changed(path, "its modification time changed")
    try:
        current = os.stat(path)
    except FileNotFoundError:
        raise SourceMissingError(
            f"{path} vanished while it was being copied; the copy was discarded: "
            "check where it went and capture it from there") from None
    except OSError as exc:
        raise _source_unreadable(path, exc) from exc
    if (current.st_dev, current.st_ino) != (before.st_dev, before.st_ino):
        raise _source_changed(path, "another file was put in its place")


# --------------------------------------------------------------------------- temp files


class _TempFile:
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
            raise _store_write_failed(self.what, self.root, exc) from exc
        _mark_in_use(self.fd)  # tells other processes' cleanup_temp it is in use
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
                os.fchmod(self.fd, _BLOB_MODE)
            if os.name != "posix":
                fd, self.fd = self.fd, None
                os.close(fd)
                os.chmod(self.path, _BLOB_MODE)
        except OSError as exc:
            raise _store_write_failed(self.what, self.root, exc) from exc

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            if not self.committed:
                _unlink_quietly(self.path)
        finally:
            self._forget()

    def _forget(self) -> None:
        with _active_lock:
            _active_temp_files.discard(self.path)


def _mark_in_use(fd: int) -> None:
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


def _still_linked(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open as ``fd`` (not unlinked or replaced)."""
    try:
        opened, named = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _open_shared_locked(path: Path) -> int:
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
        # deleting an open file fails (``_unlink_quietly`` then keeps it).
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


def _unlink_quietly(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except PermissionError:
        try:  # Windows will not delete a read-only file
            os.chmod(path, 0o600)
            path.unlink()
            return True
        except OSError as exc:
            logger.warning("could not remove %s: %s", path, exc)
            return False
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc)
        return False


# --------------------------------------------------------------------------- the store


class FileStore:
    """Content-addressed files under ``root``: ``blobs/aa/bb/<sha256>`` plus ``tmp/``.

    Thread-safe: captures share nothing but the directories, and concurrent captures of the
    same content both end in the same, identical blob.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        #: Blobs a capture in flight has produced or matched but not yet recorded in a
        #: committed row; ``remove`` leaves them alone (see ``put_file(hold=True)``).
        self._holds: Counter[str] = Counter()
        #: One open descriptor per held blob, carrying a shared lock that other processes'
        #: ``remove`` respects (POSIX flock; on Windows an open file cannot be deleted).
        self._hold_files: dict[str, int] = {}
        self._holds_lock = threading.Lock()
        self.blobs_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        try:
            self.blobs_dir.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the file store in {self.root} ({exc.strerror or exc}): "
                "check that the data folder is writable") from exc
        self.cleanup_temp()

    # ----------------------------------------------------------------- capture

    def put_file(self, source: str | os.PathLike[str], *,
                 progress: ProgressCallback | None = None, hold: bool = False,
                 follow_symlinks: bool = True) -> BlobInfo:
        """Copy the file at ``source`` into the store (once per content) and return its blob.

        With ``hold=True`` the blob is held from the instant it is in place until
        :meth:`release`: a concurrent failing capture of the same content cannot remove
        it before the caller has committed the row that uses it. ``follow_symlinks=False``
        refuses a source that is a symbolic link (SourceRefusedError).
        """
        path = Path(os.fspath(source))
        reader, before = _open_source(path, follow_symlinks)
        # Read at most one byte past the size seen at open: a file an instrument keeps
        # appending to would otherwise be chased forever. One extra byte is enough for
        # the unchanged-check below to see that it grew.
        budget = [before.st_size + 1]
        with reader:
            def read_into(buffer: bytearray) -> int:
                if budget[0] <= 0:
                    return 0
                try:
                    with memoryview(buffer) as view:
                        length = reader.readinto(view[:min(len(buffer), budget[0])]) or 0
                except OSError as exc:
                    raise _source_unreadable(path, exc) from exc
                budget[0] -= length
                return length

            with _TempFile(self.tmp_dir, str(path), self.root) as temp:
                sha256, size = self._copy(read_into, temp, before.st_size, progress)
                _check_source_unchanged(path, reader, before, size)
                return self._commit(temp, sha256, size, hold)

    def put_stream(self, stream: BinaryIO, *, expected_size: int | None = None,
                   progress: ProgressCallback | None = None, hold: bool = False,
                   chunk_size: int = CHUNK_SIZE) -> BlobInfo:
        """Copy a readable binary stream to its end into the store.

        With ``expected_size``, a stream that ends early or runs long is refused
        (:class:`SourceChangedError`) and nothing is stored. ``chunk_size``: bytes per
        read (``NETWORK_CHUNK_SIZE`` for a socket).
        """
        what = getattr(stream, "name", None) or "the stream"
        read_into = _stream_reader(stream, str(what))
        with _TempFile(self.tmp_dir, str(what), self.root) as temp:
            sha256, size = self._copy(read_into, temp, expected_size, progress, chunk_size)
            if expected_size is not None and size != expected_size:
                raise _source_changed(what, f"expected {expected_size} bytes, got {size}")
            return self._commit(temp, sha256, size, hold)

    def put_bytes(self, data: bytes, *, hold: bool = False) -> BlobInfo:
        """Store ``data`` (bytes-like) and return its blob."""
        with memoryview(data) as view:
            size = view.nbytes
        return self.put_stream(io.BytesIO(data), expected_size=size, hold=hold)

    def _copy(self, read_into: _ReadInto, temp: _TempFile, total: int | None,
              progress: ProgressCallback | None,
              chunk_size: int = CHUNK_SIZE) -> tuple[str, int]:
        """Stream everything from ``read_into`` into ``temp``, hashing on the way."""
        assert temp.fd is not None
        hasher = _make_hasher(total, chunk_size)
        done = checkpoint = 0
        try:
            while True:
                buffer = hasher.buffer()
                length = read_into(buffer)
                if not length:
                    hasher.submit(buffer, 0)  # returns the buffer to the pool
                    break
                with memoryview(buffer) as view:
                    try:
                        _write_chunk(temp.fd, view[:length])
                    except OSError as exc:
                        raise _store_write_failed(temp.what, self.root, exc) from exc
                hasher.submit(buffer, length)
                done += length
                if done - checkpoint >= CHECKPOINT_BYTES:
                    _start_writeback(temp.fd, checkpoint, done - checkpoint)
                    checkpoint = done
                    if progress is not None:
                        progress(done, total)
            sha256 = hasher.hexdigest()
        finally:
            hasher.close()
        already_reported = 0 < done == checkpoint
        if progress is not None and not already_reported:
            progress(done, total)
        return sha256, done

    def _commit(self, temp: _TempFile, sha256: str, size: int, hold: bool) -> BlobInfo:
        """Make the temp file durable and move it to its blob path (or drop it as a dupe).

        The final existence check, the rename and taking the hold happen under one lock
        that :meth:`remove` also takes, so a blob is never removed between "it is already
        stored" and the hold that protects it.
        """
        dest = self.path_for(sha256)
        info = BlobInfo(sha256=sha256, size_bytes=size, path=dest)
        if _existing_size(dest) != size:
            temp.finish()  # fsync the data outside the lock
        with self._holds_lock:
            existing = _existing_size(dest)
            if existing == size and (not hold or self._take_hold(sha256, dest)):
                logger.debug("blob %s already stored; discarding the new copy", sha256)
                return info
            if existing is not None and existing != size:
                logger.warning("blob %s was damaged (%d bytes, expected %d); replacing it",
                               sha256, existing, size)
            self._place(temp, dest)
            if hold:
                self._hold_placed(sha256, temp, dest)
        logger.debug("stored blob %s (%d bytes)", sha256, size)
        return info  # a discarded duplicate temp file is removed when ``temp`` exits

    def _place(self, temp: _TempFile, dest: Path) -> None:
        temp.finish()
        try:
            _make_dirs_durably(dest.parent, self.blobs_dir)
            _replace(temp.path, dest)
            # From here the blob is complete and correct (its data was fsynced); if the
            # directory fsync fails the caller gets an error and records nothing, and the
            # blob stays, as it may already serve a concurrent capture of the same content.
            temp.committed = True
            fsync_dir(dest.parent)
        except OSError as exc:
            raise _store_write_failed(temp.what, self.root, exc) from exc

    def _take_hold(self, sha256: str, dest: Path) -> bool:
        """Hold the blob at ``dest`` (caller holds ``_holds_lock``); False if it is gone.

        The first hold in this process opens the blob and takes a shared lock on it, so a
        ``remove`` in another process (the service beside a CLI command or the window)
        leaves it alone. A removal that won the race has unlinked the file by the time the
        shared lock is granted: then the caller must place its own copy.
        """
        if self._holds[sha256]:
            self._holds[sha256] += 1
            return True
        try:
            fd = _open_shared_locked(dest)  # waits out a removal in progress
        except FileNotFoundError:
            return False
        if not _still_linked(fd, dest):
            os.close(fd)
            return False
        self._add_hold(sha256, fd)
        return True

    def _hold_placed(self, sha256: str, temp: _TempFile, dest: Path) -> None:
        """Hold a blob this capture just placed (caller holds ``_holds_lock``).

        POSIX: the temp file's descriptor, whose shared flock kept other processes'
        cleanup away, becomes the hold, so no removal can slip in between the rename and
        the hold. Windows closed it to rename; a fresh handle blocks deletion from then on."""
        if temp.fd is not None:
            fd, temp.fd = temp.fd, None
            self._add_hold(sha256, fd)
        elif not self._take_hold(sha256, dest):
            raise StoreError(f"the blob {sha256} vanished right after it was stored in "
                             f"{self.root}; capture again")

    def _add_hold(self, sha256: str, fd: int) -> None:
        """Count a hold; keep ``fd`` if it is this process's first (caller holds the lock)."""
        if self._holds[sha256]:
            os.close(fd)
        else:
            self._hold_files[sha256] = fd
        self._holds[sha256] += 1

    def release(self, sha256: str) -> None:
        """End a hold taken by ``put_*(hold=True)`` (after the row is committed, or not)."""
        with self._holds_lock:
            if self._holds[sha256] > 1:
                self._holds[sha256] -= 1
                return
            self._holds.pop(sha256, None)
            fd = self._hold_files.pop(sha256, None)
        if fd is not None:
            os.close(fd)  # drops the shared lock

    # ----------------------------------------------------------------- lookup

    def path_for(self, sha256: str) -> Path:
        """The blob path for ``sha256``; ValueError unless it is 64 lowercase hex digits."""
        if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
            raise ValidationError(
                f"{sha256!r} is not a SHA-256 digest (64 lowercase hexadecimal digits)")
        return self.blobs_dir / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        """Open a stored blob for reading (binary); NotFoundError if it is not stored."""
        path = self.path_for(sha256)
        try:
            return cast(BinaryIO, open(path, "rb"))
        except FileNotFoundError:
            raise NotFoundError(
                f"no file with SHA-256 {sha256} is in the file store {self.root}") from None

    def verify(self, sha256: str) -> bool:
        """Re-hash the stored blob: True if intact, False if damaged or missing."""
        path = self.path_for(sha256)
        digest = hashlib.sha256()
        buffer = bytearray(CHUNK_SIZE)
        try:
            with open(path, "rb", buffering=0) as blob, memoryview(buffer) as view:
                while length := blob.readinto(buffer):
                    digest.update(view[:length])
        except FileNotFoundError:
            logger.warning("blob %s is missing from %s", sha256, self.root)
            return False
        intact = digest.hexdigest() == sha256
        if not intact:
            logger.error("blob %s in %s is damaged (content hash differs)", sha256, self.root)
        return intact

    # ----------------------------------------------------------------- housekeeping

    def remove(self, sha256: str, still_unused: Callable[[], bool] | None = None) -> bool:
        """Delete a blob if present and not held by any process; True if it was removed.

        ``still_unused`` is the caller's "no committed row needs it" check. It runs while
        the blob is locked against new holds, so a capture that commits a row using the
        blob between the caller's decision and the unlink is seen and the blob kept.
        """
        path = self.path_for(sha256)
        with self._holds_lock:
            if self._holds.get(sha256):
                logger.debug("blob %s is held by a capture in flight; not removed", sha256)
                return False
            with exclusive_lock(path) as locked:
                if locked is None:
                    return False  # already gone
                if not locked:
                    logger.debug("blob %s is held by another process; not removed", sha256)
                    return False
                if still_unused is not None and not still_unused():
                    return False
                return _unlink_quietly(path)

    def set_aside_damaged(self, sha256: str) -> Path | None:
        """Move a blob whose bytes no longer hash to its name out of the way (into
        ``damaged/``, kept for inspection), so a verified copy can take its place: a copy
        of the same size would otherwise be taken for the blob already stored. Returns
        where it went (None if it was gone)."""
        path = self.path_for(sha256)
        damaged = self.root / "damaged"
        with self._holds_lock:
            try:
                damaged.mkdir(exist_ok=True)
                target = damaged / f"{sha256}.{secrets.token_hex(4)}"
                os.replace(path, target)  # a rename: the read-only mode does not matter
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise StoreError(f"could not move the damaged blob {sha256} aside in "
                                 f"{self.root} ({exc.strerror or exc}): check that the data "
                                 "folder is writable") from exc
        logger.warning("damaged blob %s moved to %s", sha256, target)
        return target

    def cleanup_temp(self) -> int:
        """Remove ``.part`` files a crash left in ``tmp/``; returns how many were removed.

        Temp files of captures still running are left alone: this process's by name,
        other processes' (a CLI command beside ``benchdata run``) by their flock.
        """
        removed = 0
        with _active_lock:
            active = set(_active_temp_files)
        try:
            entries = list(self.tmp_dir.iterdir())
        except FileNotFoundError:
            return 0
        for entry in entries:
            leftover = entry.name.endswith(TEMP_SUFFIX) and entry not in active
            if leftover and entry.is_file() and not held_by_another_process(entry) \
                    and _unlink_quietly(entry):
                removed += 1
        if removed:
            logger.info("removed %d unfinished capture(s) from %s", removed, self.tmp_dir)
        return removed


def _stream_reader(stream: BinaryIO, what: str) -> _ReadInto:
    """A ``read_into(buffer)`` over any binary stream (readinto when it has one)."""
    readinto = getattr(stream, "readinto", None)

    def read_into(buffer: bytearray) -> int:
        length: int | None
        try:
            if readinto is not None:
                length = readinto(buffer)
            else:
                data = stream.read(len(buffer))
                length = None if data is None else len(data)
                if length and length <= len(buffer):
                    buffer[:length] = data
        except OSError as exc:
            raise _source_unreadable(what, exc) from exc
        if length is None:
            raise _source_unreadable(what, "a non-blocking stream had no data ready")
        if length > len(buffer):
            raise _source_unreadable(what, "the stream returned more data than asked for")
        return length

    return read_into


def _existing_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _replace(source: Path, dest: Path) -> None:
    """Atomically move ``source`` to ``dest``, also over a damaged read-only blob on Windows."""
    try:
        os.replace(source, dest)
    except PermissionError:
        if os.name == "posix" or not dest.exists():
            raise
        os.chmod(dest, 0o600)
        os.replace(source, dest)
