"""The local content-addressed file store: every captured file, stored once, by SHA-256.

Why it looks like this (DESIGN.md, "Never lose data"):

* A capture streams the source once into ``root/tmp/<random>.part``, hashing on the way
  (``streamcopy``); the source is never modified and is refused if it changed meanwhile
  (``sources``).
* The temp file is flushed and ``fsync``-ed, atomically ``os.replace``-d to
  ``root/blobs/<sha[:2]>/<sha[2:4]>/<sha>`` and the directory is ``fsync``-ed, so after a
  crash a blob is either complete under its name or absent; leftover ``.part`` files are
  removed by :meth:`FileStore.cleanup_temp` at the next start (``temp``).
* Identical content is stored once: a blob that is already present is kept and the new
  copy discarded. Stored blobs are read-only (0o444) to guard against accidental edits
  (``layout``).
* Every failure removes the temp file and leaves no blob behind; nothing already stored is
  touched. Each error names the path and what to do about it (``messages``).
* A capture that records its blob later holds it meanwhile (``holds``), so no concurrent
  failing capture of the same content removes it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from app.core.atomic import fsync_dir
from app.core.errors import NotFoundError, StoreError
from app.core.filestore.holds import BlobHolds
from app.core.filestore.layout import (
    blob_path,
    existing_size,
    make_dirs_durably,
    replace_blob,
    unlink_quietly,
)
from app.core.filestore.locks import exclusive_lock
from app.core.filestore.messages import source_changed, source_unreadable, store_write_failed
from app.core.filestore.sources import check_source_unchanged, open_source
from app.core.filestore.streamcopy import (
    CHUNK_SIZE,
    ProgressCallback,
    copy_to_temp,
    stream_reader,
)
from app.core.filestore.temp import TempFile, remove_leftover_temp_files

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlobInfo:
    """A blob in the store."""

    sha256: str  # lowercase hex
    size_bytes: int
    path: Path  # final location inside the store


class FileStore:
    """Content-addressed files under ``root``: ``blobs/aa/bb/<sha256>`` plus ``tmp/``.

    Thread-safe: captures share nothing but the directories, and concurrent captures of the
    same content both end in the same, identical blob.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        #: Blobs a capture in flight holds; ``remove`` leaves them alone, and its lock
        #: serialises placing, holding and removing blobs.
        self._holds = BlobHolds()
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
        reader, before = open_source(path, follow_symlinks)
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
                    raise source_unreadable(path, exc) from exc
                budget[0] -= length
                return length

            with TempFile(self.tmp_dir, str(path), self.root) as temp:
                sha256, size = copy_to_temp(read_into, temp, before.st_size, progress)
                check_source_unchanged(path, reader, before, size)
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
        read_into = stream_reader(stream, str(what))
        with TempFile(self.tmp_dir, str(what), self.root) as temp:
            sha256, size = copy_to_temp(read_into, temp, expected_size, progress, chunk_size)
            if expected_size is not None and size != expected_size:
                raise source_changed(what, f"expected {expected_size} bytes, got {size}")
            return self._commit(temp, sha256, size, hold)

    def put_bytes(self, data: bytes, *, hold: bool = False) -> BlobInfo:
        """Store ``data`` (bytes-like) and return its blob."""
        with memoryview(data) as view:
            size = view.nbytes
        return self.put_stream(io.BytesIO(data), expected_size=size, hold=hold)

    def _commit(self, temp: TempFile, sha256: str, size: int, hold: bool) -> BlobInfo:
        """Make the temp file durable and move it to its blob path (or drop it as a dupe).

        The final existence check, the rename and taking the hold happen under one lock
        that :meth:`remove` also takes, so a blob is never removed between "it is already
        stored" and the hold that protects it.
        """
        dest = self.path_for(sha256)
        info = BlobInfo(sha256=sha256, size_bytes=size, path=dest)
        if existing_size(dest) != size:
            temp.finish()  # fsync the data outside the lock
        with self._holds.lock:
            existing = existing_size(dest)
            if existing == size and (not hold or self._holds.take(sha256, dest)):
                logger.debug("blob %s already stored; discarding the new copy", sha256)
                return info
            if existing is not None and existing != size:
                logger.warning("blob %s was damaged (%d bytes, expected %d); replacing it",
                               sha256, existing, size)
            self._place(temp, dest)
            if hold:
                self._holds.take_placed(sha256, temp, dest, self.root)
        logger.debug("stored blob %s (%d bytes)", sha256, size)
        return info  # a discarded duplicate temp file is removed when ``temp`` exits

    def _place(self, temp: TempFile, dest: Path) -> None:
        temp.finish()
        try:
            make_dirs_durably(dest.parent, self.blobs_dir)
            replace_blob(temp.path, dest)
            # From here the blob is complete and correct (its data was fsynced); if the
            # directory fsync fails the caller gets an error and records nothing, and the
            # blob stays, as it may already serve a concurrent capture of the same content.
            temp.committed = True
            fsync_dir(dest.parent)
        except OSError as exc:
            raise store_write_failed(temp.what, self.root, exc) from exc

    def release(self, sha256: str) -> None:
        """End a hold taken by ``put_*(hold=True)`` (after the row is committed, or not)."""
        self._holds.release(sha256)

    # ----------------------------------------------------------------- lookup

    def path_for(self, sha256: str) -> Path:
        """The blob path for ``sha256``; ValueError unless it is 64 lowercase hex digits."""
        return blob_path(self.blobs_dir, sha256)

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
        with self._holds.lock:
            if self._holds.held(sha256):
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
                return unlink_quietly(path)

    def set_aside_damaged(self, sha256: str) -> Path | None:
        """Move a blob whose bytes no longer hash to its name out of the way (into
        ``damaged/``, kept for inspection), so a verified copy can take its place: a copy
        of the same size would otherwise be taken for the blob already stored. Returns
        where it went (None if it was gone)."""
        path = self.path_for(sha256)
        damaged = self.root / "damaged"
        with self._holds.lock:
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
        return remove_leftover_temp_files(self.tmp_dir)
