"""The content-addressed file store: round trips, dedup, and every never-lose-data failure.

Real files in tmp_path. Failures that need a full disk or a file changing mid-copy are
produced through ``streamcopy._write_chunk``, the one seam every chunk goes through.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.core.filestore import streamcopy
from app.core.errors import (
    CaptureError,
    DiskFullError,
    NotFoundError,
    SourceChangedError,
    SourceIsDirectoryError,
    SourceMissingError,
    SourceUnreadableError,
)
from app.core.filestore import BlobInfo, FileStore
from app.core.filestore.streamcopy import CHUNK_SIZE
from app.core.filestore.temp import TempFile

ROOT = Path(__file__).resolve().parents[2]
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
TWO_CHUNKS = 2 * CHUNK_SIZE + 12345  # exercises the threaded hasher and a partial chunk


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "files")


def write_file(path: Path, size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 32  # 1 KiB, not all alike
    data = (block * (size // len(block) + 1))[:size]
    path.write_bytes(data)
    return data


def blob_files(store: FileStore) -> list[Path]:
    return sorted(p for p in store.blobs_dir.rglob("*") if p.is_file())


def temp_files(store: FileStore) -> list[Path]:
    return sorted(store.tmp_dir.iterdir())


def assert_nothing_left(store: FileStore, before: list[Path] | None = None) -> None:
    assert temp_files(store) == []
    assert blob_files(store) == (before or [])


def after_first_chunk(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> None:
    """Run ``action`` right after the first chunk reached the temp file."""
    real_write = streamcopy._write_chunk
    calls = 0

    def write(fd: int, data: memoryview) -> None:
        nonlocal calls
        real_write(fd, data)
        calls += 1
        if calls == 1:
            action()

    monkeypatch.setattr(streamcopy, "_write_chunk", write)


def disk_full_after(monkeypatch: pytest.MonkeyPatch, limit: int, err: int = errno.ENOSPC) -> None:
    """Make the store's disk 'fill up' after ``limit`` bytes, as a real full disk does."""
    real_write = streamcopy._write_chunk
    written = 0

    def write(fd: int, data: memoryview) -> None:
        nonlocal written
        if written + len(data) > limit:
            real_write(fd, data[: limit - written])
            written = limit
            raise OSError(err, os.strerror(err))
        real_write(fd, data)
        written += len(data)

    monkeypatch.setattr(streamcopy, "_write_chunk", write)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("size", [1, 1000, CHUNK_SIZE, TWO_CHUNKS])
def test_put_file_round_trip(store: FileStore, tmp_path: Path, size: int) -> None:
    source = tmp_path / "run.bin"
    data = write_file(source, size)
    sha256 = hashlib.sha256(data).hexdigest()

    blob = store.put_file(source)

    assert blob == BlobInfo(sha256=sha256, size_bytes=size, path=store.path_for(sha256))
    assert blob.path == store.root / "blobs" / sha256[:2] / sha256[2:4] / sha256
    assert store.exists(sha256)
    with store.open(sha256) as stored:
        assert stored.read() == data
    assert store.verify(sha256)
    assert temp_files(store) == []


def test_empty_file(store: FileStore, tmp_path: Path) -> None:
    source = tmp_path / "empty.csv"
    source.touch()

    blob = store.put_file(source)

    assert (blob.sha256, blob.size_bytes) == (EMPTY_SHA256, 0)
    assert blob.path.read_bytes() == b""
    assert store.verify(EMPTY_SHA256)


def test_accepts_str_paths(store: FileStore, tmp_path: Path) -> None:
    source = tmp_path / "run.txt"
    source.write_bytes(b"abc")
    assert store.put_file(str(source)).sha256 == hashlib.sha256(b"abc").hexdigest()


def test_stored_blobs_are_read_only(store: FileStore, tmp_path: Path) -> None:
    source = tmp_path / "run.txt"
    source.write_bytes(b"abc")
    blob = store.put_file(source)
    assert stat.S_IMODE(blob.path.stat().st_mode) & 0o222 == 0


def test_identical_content_is_stored_once(store: FileStore, tmp_path: Path) -> None:
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    write_file(first, TWO_CHUNKS)
    shutil.copyfile(first, second)

    blob_a = store.put_file(first)
    blob_b = store.put_file(second)

    assert blob_a == blob_b
    assert blob_files(store) == [blob_a.path]
    assert temp_files(store) == []


def test_concurrent_captures_of_the_same_content(store: FileStore, tmp_path: Path) -> None:
    sources = []
    for i in range(4):
        sources.append(tmp_path / f"copy{i}.bin")
        write_file(sources[-1], CHUNK_SIZE + 7)
    results: list[BlobInfo] = []
    threads = [threading.Thread(target=lambda s=s: results.append(store.put_file(s)))
               for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 4 and len(set(results)) == 1
    assert blob_files(store) == [results[0].path]
    assert store.verify(results[0].sha256)
    assert temp_files(store) == []


@pytest.mark.allow_error_logs  # damages a blob on purpose; verify logs it
def test_a_damaged_blob_of_the_wrong_size_is_replaced(store: FileStore, tmp_path: Path) -> None:
    source = tmp_path / "run.bin"
    data = write_file(source, 5000)
    blob = store.put_file(source)
    os.chmod(blob.path, 0o644)
    blob.path.write_bytes(data[:100])  # truncated by something outside the app
    assert not store.verify(blob.sha256)

    assert store.put_file(source) == blob
    assert store.verify(blob.sha256)


def test_original_is_not_modified(store: FileStore, tmp_path: Path) -> None:
    source = tmp_path / "run.bin"
    data = write_file(source, TWO_CHUNKS)
    os.utime(source, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = source.stat()

    store.put_file(source)

    after = source.stat()
    assert source.read_bytes() == data
    assert (after.st_mtime_ns, after.st_size, after.st_mode, after.st_ino) == (
        before.st_mtime_ns, before.st_size, before.st_mode, before.st_ino)


def test_put_stream(store: FileStore) -> None:
    data = os.urandom(CHUNK_SIZE + 99)
    blob = store.put_stream(io.BytesIO(data), expected_size=len(data))
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.path.read_bytes() == data


def test_put_stream_without_readinto_or_size(store: FileStore) -> None:
    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self._inner = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self._inner.read(min(size, 1000))  # short reads too

    data = os.urandom(12345)
    blob = store.put_stream(ReadOnly(data))  # type: ignore[arg-type]
    assert (blob.sha256, blob.size_bytes) == (hashlib.sha256(data).hexdigest(), len(data))


def test_put_stream_of_the_wrong_size_stores_nothing(store: FileStore) -> None:
    with pytest.raises(SourceChangedError, match="expected 10 bytes, got 3"):
        store.put_stream(io.BytesIO(b"abc"), expected_size=10)
    assert_nothing_left(store)


def test_put_stream_read_error(store: FileStore) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(SourceUnreadableError, match="Input/output error"):
        store.put_stream(Broken())  # type: ignore[arg-type]
    assert_nothing_left(store)


@pytest.mark.parametrize("data", [b"", b"hello", bytearray(b"hello"), memoryview(b"hello")])
def test_put_bytes(store: FileStore, data: bytes) -> None:
    blob = store.put_bytes(data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.path.read_bytes() == bytes(data)


# ----------------------------------------------------------------------------- progress


def test_progress_is_reported_at_the_end(store: FileStore, tmp_path: Path) -> None:
    source = tmp_path / "run.bin"
    write_file(source, TWO_CHUNKS)
    calls: list[tuple[int, int | None]] = []
    store.put_file(source, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(TWO_CHUNKS, TWO_CHUNKS)]  # below the 64 MiB checkpoint: only the end


def test_progress_at_checkpoints(store: FileStore, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streamcopy, "CHECKPOINT_BYTES", CHUNK_SIZE)  # a 64 MiB file in miniature
    source = tmp_path / "run.bin"
    write_file(source, TWO_CHUNKS)
    calls: list[tuple[int, int | None]] = []
    store.put_file(source, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(CHUNK_SIZE, TWO_CHUNKS), (2 * CHUNK_SIZE, TWO_CHUNKS),
                     (TWO_CHUNKS, TWO_CHUNKS)]


def test_progress_end_is_not_reported_twice(store: FileStore, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streamcopy, "CHECKPOINT_BYTES", CHUNK_SIZE)
    source = tmp_path / "run.bin"
    write_file(source, 2 * CHUNK_SIZE)
    calls: list[tuple[int, int | None]] = []
    store.put_file(source, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(CHUNK_SIZE, 2 * CHUNK_SIZE), (2 * CHUNK_SIZE, 2 * CHUNK_SIZE)]


def test_empty_file_reports_progress_once(store: FileStore, tmp_path: Path) -> None:
    source = tmp_path / "empty.bin"
    source.touch()
    calls: list[tuple[int, int | None]] = []
    store.put_file(source, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 0)]


def test_a_small_file_growing_a_lot_is_still_refused(store: FileStore, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "starting.bin"
    source.write_bytes(b"header\n")  # small when the capture starts: the one-buffer path
    after_first_chunk(monkeypatch, lambda: source.write_bytes(os.urandom(3 * CHUNK_SIZE)))
    with pytest.raises(SourceChangedError, match="starting.bin changed"):
        store.put_file(source)
    assert_nothing_left(store)


def test_progress_total_is_none_for_an_unsized_stream(store: FileStore) -> None:
    calls: list[tuple[int, int | None]] = []
    store.put_stream(io.BytesIO(b"abc"), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(3, None)]


def test_an_exception_from_progress_aborts_cleanly(store: FileStore, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streamcopy, "CHECKPOINT_BYTES", CHUNK_SIZE)
    source = tmp_path / "run.bin"
    write_file(source, TWO_CHUNKS)

    class Cancelled(Exception):
        pass

    def cancel(done: int, total: int | None) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        store.put_file(source, progress=cancel)
    assert_nothing_left(store)


# ----------------------------------------------------------------------------- bad sources


def test_missing_source(store: FileStore, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(SourceMissingError, match="nope.csv does not exist") as caught:
        store.put_file(missing)
    assert isinstance(caught.value, CaptureError)
    assert_nothing_left(store)


def test_missing_parent_folder(store: FileStore, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(SourceMissingError):
        store.put_file(tmp_path / "file" / "below")
    assert_nothing_left(store)


def test_directory_source(store: FileStore, tmp_path: Path) -> None:
    folder = tmp_path / "run_folder"
    folder.mkdir()
    with pytest.raises(SourceIsDirectoryError, match="run_folder is a folder"):
        store.put_file(folder)
    assert_nothing_left(store)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_is_refused_without_hanging(store: FileStore, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(SourceUnreadableError, match="not a regular file"):
        store.put_file(fifo)
    assert_nothing_left(store)


def test_unreadable_source(store: FileStore, tmp_path: Path) -> None:
    source = tmp_path / "locked.bin"
    source.write_bytes(b"secret")
    source.chmod(0)
    try:
        if os.access(source, os.R_OK):
            pytest.skip("chmod 000 does not stop this user from reading (running as root?)")
        with pytest.raises(SourceUnreadableError, match="locked.bin cannot be read"):
            store.put_file(source)
        assert_nothing_left(store)
    finally:
        source.chmod(0o644)


def grow(path: Path) -> Callable[[], None]:
    def action() -> None:
        with open(path, "ab") as handle:
            handle.write(b"more data")
    return action


def shrink(path: Path) -> Callable[[], None]:
    def action() -> None:
        with open(path, "r+b") as handle:
            handle.truncate(100)
    return action


def overwrite_in_place(path: Path) -> Callable[[], None]:
    def action() -> None:
        with open(path, "r+b") as handle:
            handle.write(b"X" * 100)  # same size: only the mtime tells
    return action


def replace_by_another(path: Path) -> Callable[[], None]:
    def action() -> None:
        other = path.with_name("other.bin")
        shutil.copy2(path, other)  # same size and mtime, different file
        os.replace(other, path)
    return action


@pytest.mark.parametrize("change", [grow, shrink, overwrite_in_place, replace_by_another])
def test_source_changing_during_the_copy(store: FileStore, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         change: Callable[[Path], Callable[[], None]]) -> None:
    existing = store.put_bytes(b"captured earlier")
    source = tmp_path / "growing.bin"
    write_file(source, TWO_CHUNKS)
    # An old mtime, so a write during the copy surely changes it (timestamps are coarse).
    os.utime(source, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    after_first_chunk(monkeypatch, change(source))

    with pytest.raises(SourceChangedError, match="growing.bin changed while it was being copied"):
        store.put_file(source)

    assert_nothing_left(store, before=[existing.path])


def test_source_deleted_during_the_copy(store: FileStore, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "vanishing.bin"
    write_file(source, TWO_CHUNKS)
    after_first_chunk(monkeypatch, source.unlink)

    with pytest.raises(SourceMissingError, match="vanishing.bin vanished"):
        store.put_file(source)
    assert_nothing_left(store)


# ----------------------------------------------------------------------------- full disk


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT])
@pytest.mark.parametrize("limit", [0, CHUNK_SIZE + 10])
def test_disk_full_while_writing(store: FileStore, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, err: int, limit: int) -> None:
    existing = store.put_bytes(b"captured earlier")
    source = tmp_path / "big.bin"
    data = write_file(source, TWO_CHUNKS)
    disk_full_after(monkeypatch, limit, err)

    with pytest.raises(DiskFullError) as caught:
        store.put_file(source)

    message = str(caught.value)
    assert f"the disk holding {store.root} is full" in message
    assert "free space and capture again" in message and "big.bin" in message
    assert_nothing_left(store, before=[existing.path])
    assert store.verify(existing.sha256)
    assert not store.exists(hashlib.sha256(data).hexdigest())
    assert source.read_bytes() == data


def test_disk_full_while_fsyncing(store: FileStore, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    existing = store.put_bytes(b"captured earlier")
    source = tmp_path / "big.bin"
    write_file(source, 1000)

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(DiskFullError, match="free space and capture again"):
        store.put_file(source)
    monkeypatch.undo()

    assert_nothing_left(store, before=[existing.path])
    assert store.verify(existing.sha256)


def test_other_write_errors_are_capture_errors(store: FileStore, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "run.bin"
    write_file(source, 1000)
    disk_full_after(monkeypatch, 10, errno.EIO)

    with pytest.raises(CaptureError) as caught:
        store.put_file(source)

    assert not isinstance(caught.value, DiskFullError)
    assert str(store.root) in str(caught.value) and "Input/output error" in str(caught.value)
    assert_nothing_left(store)


def test_disk_full_in_put_bytes(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    disk_full_after(monkeypatch, 2)
    with pytest.raises(DiskFullError):
        store.put_bytes(b"hello")
    assert_nothing_left(store)


# ----------------------------------------------------------------------------- lookups


@pytest.mark.parametrize("bad", [
    "../x",
    "../" + "a" * 61,
    "A" * 64,
    "a" * 63,
    "a" * 65,
    "g" * 64,
    "a" * 63 + "/",
    "",
    None,
    b"a" * 64,
])
def test_path_for_rejects_anything_but_a_digest(store: FileStore, bad: object) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        store.path_for(bad)  # type: ignore[arg-type]


def test_path_for_layout(store: FileStore) -> None:
    sha256 = "ab" + "cd" + "0" * 60
    assert store.path_for(sha256) == store.root / "blobs" / "ab" / "cd" / sha256


def test_open_missing_blob(store: FileStore) -> None:
    with pytest.raises(NotFoundError, match=EMPTY_SHA256):
        store.open(EMPTY_SHA256)
    assert not store.exists(EMPTY_SHA256)


def test_open_is_read_only(store: FileStore) -> None:
    blob = store.put_bytes(b"abc")
    with store.open(blob.sha256) as stored:
        assert not stored.writable()


@pytest.mark.allow_error_logs  # damages a blob on purpose; verify logs it
def test_verify_detects_damage_and_absence(store: FileStore) -> None:
    blob = store.put_bytes(b"abc")
    os.chmod(blob.path, 0o644)
    blob.path.write_bytes(b"abd")
    assert not store.verify(blob.sha256)
    assert not store.verify(EMPTY_SHA256)


def test_remove(store: FileStore) -> None:
    blob = store.put_bytes(b"abc")
    assert store.remove(blob.sha256) is True
    assert not store.exists(blob.sha256)
    assert store.remove(blob.sha256) is False


# ----------------------------------------------------------------------------- temp files


def test_cleanup_temp_removes_leftovers(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "files")
    blob = store.put_bytes(b"keep me")
    (store.tmp_dir / "0123abcd.part").write_bytes(b"half a file")
    (store.tmp_dir / "readonly.part").write_bytes(b"half a file")
    os.chmod(store.tmp_dir / "readonly.part", 0o444)
    (store.tmp_dir / "notes.txt").write_text("not ours")

    assert store.cleanup_temp() == 2
    assert temp_files(store) == [store.tmp_dir / "notes.txt"]
    assert store.verify(blob.sha256)


def test_opening_the_store_removes_leftovers(tmp_path: Path) -> None:
    FileStore(tmp_path / "files")
    (tmp_path / "files" / "tmp" / "crashed.part").write_bytes(b"half a file")
    store = FileStore(tmp_path / "files")
    assert temp_files(store) == []


def test_cleanup_temp_spares_captures_in_progress(store: FileStore, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "run.bin"
    data = write_file(source, TWO_CHUNKS)
    removed: list[int] = []
    after_first_chunk(monkeypatch, lambda: removed.append(store.cleanup_temp()))

    blob = store.put_file(source)

    assert removed == [0]
    assert blob.path.read_bytes() == data


# ----------------------------------------------------------------------------- memory

MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from app.core.filestore import FileStore

    def status_kib(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])

    store = FileStore(Path(sys.argv[2]))
    before = status_kib("VmRSS")
    blob = store.put_file(sys.argv[3])
    print(json.dumps({"before_kib": before, "peak_kib": status_kib("VmHWM"),
                      "size": blob.size_bytes}))
""")


@contextlib.contextmanager
def store_folder_for(size: int, tmp_path: Path) -> Iterator[Path]:
    """A folder with room for ``size`` bytes: in RAM (/dev/shm) when it fits, else tmp_path.

    Durably writing 2 GiB to a busy disk alone can take longer than this whole file should;
    tmpfs pages are not part of any process's RSS, so the measurement is the same.
    """
    room = size + 512 * 1024**2
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > room:
        with tempfile.TemporaryDirectory(dir=shm, prefix="test-filestore-") as folder:
            yield Path(folder)
        return
    if shutil.disk_usage(tmp_path).free < room:
        pytest.skip("needs 2.5 GiB free in the temp folder for the stored copy")
    yield tmp_path


def test_memory_stays_flat_for_a_2_gib_file(tmp_path: Path) -> None:
    # Peak RSS is a process-wide high-water mark, so measure in a fresh child. And not with
    # ru_maxrss: a child's ru_maxrss starts at the RSS of the parent it was forked from (the
    # kernel carries it across exec), which would hide the growth; VmHWM is the child's own.
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc/self/status (Linux) for a per-process peak RSS")
    size = 2 * 1024**3
    source = tmp_path / "sparse.bin"
    with open(source, "wb") as handle:
        handle.truncate(size)  # sparse: costs no disk, reads as zeros

    with store_folder_for(size, tmp_path) as folder:
        result = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(ROOT), str(folder / "files"), str(source)],
            capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["size"] == size
    growth_mb = (figures["peak_kib"] - figures["before_kib"]) / 1024
    assert growth_mb < 100, figures


def test_cleanup_in_another_process_leaves_a_capture_in_flight_alone(tmp_path: Path) -> None:
    """A CLI command opening the store beside ``benchdata run`` must not delete the
    service's half-copied file (only crash leftovers, which nobody holds)."""
    import subprocess
    import sys

    store = FileStore(tmp_path / "files")
    leftover = store.tmp_dir / f"{'ab' * 16}.part"
    leftover.write_bytes(b"left by a crash")
    with TempFile(store.tmp_dir, "in flight", store.root) as temp:
        assert temp.fd is not None
        os.write(temp.fd, b"half copied")
        # Opening the store runs cleanup_temp (as every CLI command does).
        code = "import sys; from pathlib import Path; from app.core.filestore import FileStore; " \
               "FileStore(Path(sys.argv[1]))"
        subprocess.run([sys.executable, "-c", code, str(store.root)], check=True,
                       cwd=Path(__file__).resolve().parents[2])
        assert temp.path.exists()  # the capture in flight survived
        assert not leftover.exists()  # the crash leftover did not


# A child process that holds a blob (as a capture does until its row commits) until told
# to let go on stdin; it prints "held" once the hold is in place.
HOLDER = """
import sys
from pathlib import Path
from app.core.filestore import FileStore

store = FileStore(Path(sys.argv[1]))
blob = store.put_bytes(sys.argv[2].encode(), hold=True)
print("held", flush=True)
sys.stdin.readline()
store.release(blob.sha256)
print("released", flush=True)
sys.stdin.readline()
"""


@contextlib.contextmanager
def blob_held_by_another_process(root: Path, content: str) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(root), content],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          cwd=ROOT) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "held"
            yield child
        finally:
            child.kill()


def _tell(child: subprocess.Popen[str], expect: str) -> None:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == expect


@pytest.mark.parametrize("already_stored", [False, True], ids=["placed", "matched"])
def test_a_blob_held_by_another_process_is_not_removed(tmp_path: Path,
                                                       already_stored: bool) -> None:
    """The service's removal of an unused blob must leave alone the blob a capture in
    another process (the window, a CLI command) has stored but not yet recorded."""
    store = FileStore(tmp_path / "files")
    sha256 = hashlib.sha256(b"shared content").hexdigest()
    if already_stored:
        store.put_bytes(b"shared content")
    with blob_held_by_another_process(store.root, "shared content") as child:
        assert store.remove(sha256) is False
        assert store.exists(sha256)
        _tell(child, "released")
        assert store.remove(sha256) is True
    assert not store.exists(sha256)


def test_removal_checks_usage_again_while_the_blob_is_locked(tmp_path: Path) -> None:
    """``still_unused`` runs under the lock: a row committed after the caller's first
    check (and its hold already released) keeps the blob."""
    store = FileStore(tmp_path / "files")
    blob = store.put_bytes(b"content")
    assert store.remove(blob.sha256, still_unused=lambda: False) is False
    assert store.exists(blob.sha256)
    assert store.remove(blob.sha256, still_unused=lambda: True) is True


def test_a_hold_on_a_blob_removed_meanwhile_stores_a_fresh_copy(tmp_path: Path) -> None:
    """A capture that matched an existing blob which a removal then unlinked must not be
    left holding (and recording) a file that no longer exists."""
    store = FileStore(tmp_path / "files")
    first = store.put_bytes(b"same bytes")
    original_take_hold = store._holds.take

    def removed_just_before_the_hold(sha256: str, dest: Path) -> bool:
        os.unlink(dest)  # the other process's removal wins the race
        store._holds.take = original_take_hold  # type: ignore[method-assign]
        return original_take_hold(sha256, dest)

    store._holds.take = removed_just_before_the_hold  # type: ignore[method-assign]
    second = store.put_bytes(b"same bytes", hold=True)
    assert second.sha256 == first.sha256
    assert store.path_for(second.sha256).read_bytes() == b"same bytes"
    store.release(second.sha256)


def test_holding_a_blob_another_process_just_placed_does_not_wait_for_it(
        tmp_path: Path) -> None:
    """Holds are shared: the service capturing content the window has just stored (and
    not yet recorded) must not stall until the window commits."""
    store = FileStore(tmp_path / "files")
    with blob_held_by_another_process(store.root, "placed over there") as child:
        done = threading.Event()

        def hold_it_too() -> None:
            store.release(store.put_bytes(b"placed over there", hold=True).sha256)
            done.set()

        worker = threading.Thread(target=hold_it_too, daemon=True)
        worker.start()
        assert done.wait(30), "the second hold waited for the first to end"
        _tell(child, "released")
