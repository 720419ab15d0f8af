"""Early write-back of a capture's temp file: started on Linux by ``sync_file_range``,
which leaves the pages cached (a fetched file is read right after it is stored), with
``posix_fadvise`` where that call is missing or fails. A hint either way: the data is
made durable by the fsync before the rename, whatever the hint did.

Real files in tmp_path; the page cache is observed with mincore(2).
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.core.filestore import streamcopy as filestore
from app.core.filestore import FileStore
from app.core.filestore.streamcopy import CHUNK_SIZE

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="sync_file_range and mincore are Linux calls")


def cached_pages(path: Path) -> tuple[int, int]:
    """(pages of ``path`` in the page cache, all its pages), by mincore(2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    vector = (ctypes.c_ubyte * pages)()
    with open(path, "r+b") as file, mmap.mmap(file.fileno(), size) as mapped:
        start = ctypes.c_char.from_buffer(mapped)  # mapping touches no page
        try:
            if libc.mincore(ctypes.addressof(start), size, vector) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
        finally:
            del start  # the mapping cannot close while its address is exported
    return sum(byte & 1 for byte in vector), pages


def written_and_flushed(path: Path, size: int) -> int:
    """A read-write descriptor of ``path`` holding ``size`` bytes already on disk: clean
    pages, as the kernel's background flusher leaves a slow or long copy's."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, os.urandom(size))
    os.fsync(fd)
    return fd


@linux_only
def test_writeback_leaves_the_written_pages_cached(tmp_path: Path) -> None:
    path = tmp_path / "copy.part"
    fd = written_and_flushed(path, 8 * 1024 * 1024)
    try:
        cached, pages = cached_pages(path)
        if cached != pages:
            pytest.skip("this file system does not keep the file in the page cache")
        filestore._start_writeback(fd, 0, 8 * 1024 * 1024)
        # POSIX_FADV_DONTNEED would have dropped every one of these clean pages.
        assert cached_pages(path) == (pages, pages)
    finally:
        os.close(fd)


@linux_only
def test_linux_writeback_goes_through_sync_file_range(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = filestore._sync_file_range()
    assert real is not None  # glibc and musl both have it
    calls: list[tuple[int, int, int, int]] = []

    def recording(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append((fd, offset, length, flags))
        return int(real(fd, offset, length, flags))

    monkeypatch.setattr(filestore, "_sync_file_range", lambda: recording)
    monkeypatch.setattr(filestore, "CHECKPOINT_BYTES", CHUNK_SIZE)
    monkeypatch.setattr(os, "posix_fadvise", lambda *args: pytest.fail("fadvise used"))
    source = tmp_path / "run.bin"
    data = os.urandom(2 * CHUNK_SIZE + 5)
    source.write_bytes(data)
    blob = FileStore(tmp_path / "store").put_file(source)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.path.read_bytes() == data
    assert [(offset, length, flags) for _fd, offset, length, flags in calls] == [
        (0, CHUNK_SIZE, 2), (CHUNK_SIZE, CHUNK_SIZE, 2)]  # SYNC_FILE_RANGE_WRITE


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")
@pytest.mark.parametrize("sync_file_range", [lambda: None, lambda: lambda *args: -1],
                         ids=["missing", "failing"])
def test_writeback_without_a_working_sync_file_range_falls_back_to_fadvise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        sync_file_range: Callable[[], Any]) -> None:
    monkeypatch.setattr(filestore, "_sync_file_range", sync_file_range)
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(os, "posix_fadvise", lambda *args: calls.append(args))
    fd = written_and_flushed(tmp_path / "copy.part", 4096)
    try:
        filestore._start_writeback(fd, 0, 4096)
    finally:
        os.close(fd)
    assert calls == [(fd, 0, 4096, os.POSIX_FADV_DONTNEED)]


@linux_only
def test_writeback_errors_are_ignored() -> None:
    """A descriptor neither call accepts (a pipe): the copy goes on; fsync decides."""
    read_end, write_end = os.pipe()
    try:
        filestore._start_writeback(write_end, 0, 4096)
    finally:
        os.close(read_end)
        os.close(write_end)
