"""The copy loop: bytes streamed once into a temp file and hashed in the same pass.

A capture streams the source once: each chunk is written to the temp file and hashed in
the same pass, so a 10 GB file costs one read and flat memory (three preallocated 4 MiB
buffers, whatever the file size).

Speed: hashing runs on a helper thread (hashlib releases the GIL on large buffers) while
the caller's thread reads and writes the next chunk, and on Linux finished ranges of the
temp file are handed to the kernel for write-back as the copy goes, so the final ``fsync``
has little left to wait for. ``bench/bench_filestore.py`` measures it against
``shutil.copyfile``.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable
from typing import BinaryIO, Final, Protocol

from app.core.filestore.messages import source_unreadable, store_write_failed
from app.core.filestore.temp import TempFile

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


class ReadInto(Protocol):
    """Fills ``buffer`` from the source; returns the bytes read, 0 at the end."""

    def __call__(self, buffer: bytearray) -> int: ...


def _write_chunk(fd: int, data: memoryview) -> None:
    """Write all of ``data`` to ``fd``.

    This is the only place chunks reach the store's disk, on purpose: tests replace it
    (``monkeypatch.setattr(streamcopy, "_write_chunk", ...)``) to simulate a full disk
    (raise ``OSError(errno.ENOSPC, ...)``) or a source changing mid-copy.
    """
    while data:
        written = os.write(fd, data)
        data = data[written:]


def copy_to_temp(read_into: ReadInto, temp: TempFile, total: int | None,
                 progress: ProgressCallback | None,
                 chunk_size: int = CHUNK_SIZE) -> tuple[str, int]:
    """Stream everything from ``read_into`` into ``temp``, hashing on the way; returns
    the SHA-256 (hex) and the number of bytes copied. Nothing is fsynced here."""
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
                    raise store_write_failed(temp.what, temp.root, exc) from exc
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


def stream_reader(stream: BinaryIO, what: str) -> ReadInto:
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
            raise source_unreadable(what, exc) from exc
        if length is None:
            raise source_unreadable(what, "a non-blocking stream had no data ready")
        if length > len(buffer):
            raise source_unreadable(what, "the stream returned more data than asked for")
        return length

    return read_into


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a finished range of the temp file to disk now.

    On Linux ``POSIX_FADV_DONTNEED`` starts asynchronous write-back of the range's dirty
    pages (pages still being written stay cached), so the disk works while we copy instead
    of all at the final ``fsync``: measured ~25% faster for 2 GiB. A hint: errors ignored.
    """
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


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
