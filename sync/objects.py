"""Files to object storage: resumable multipart, verified, on any ``ObjectBackend``.

* Up to one part size (16 MiB) a file goes in one PUT; larger files use multipart with a
  few parts in flight, the next part read and hashed while they upload. The upload id and
  each finished part are handed to the caller (the outbox saves them, once the freed slot
  is busy again), so after a restart the upload resumes where it stopped.
* The SHA-256 is computed over the bytes actually sent and must equal the one recorded
  at capture (else the local copy is damaged: the upload is aborted). It travels in the
  object's user metadata with the datapoint id; after the upload the object's size and
  metadata are read back (``verified``) before anything is recorded in MongoDB. Over plain
  HTTP each part's payload is signed with its SHA-256, which AWS S3 and MinIO check and
  SeaweedFS 4.48 does not; over HTTPS, TLS protects it (docs/sync.md, *What "verified"
  means for a file*).
* The bucket itself is a backend (``sync.backends.ObjectBackend``): S3 through minio
  (``sync.s3``) unless another is given; names are ``sync.objectnames``'.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from sync.backends import ObjectBackend, ObjectInfo, ObjectStream, UploadInfo
from sync.clock import ServerClock
from sync.faults import CentralConfigError, RejectedError, RetryableError, SyncError
from sync.objectnames import META_DATAPOINT, META_FILENAME, META_SHA256, datapoint_id_in, \
    is_bench_object_name
from sync.settings import CentralSettings

log = logging.getLogger(__name__)

#: Parts in flight per multipart upload (bounded memory: this many parts + one being read).
PARTS_IN_FLIGHT = 3


@dataclass
class SavedPart:
    number: int
    etag: str
    size: int


@dataclass
class SavedUpload:
    """A multipart upload begun earlier (maybe by a process that was killed)."""

    upload_id: str
    part_size: int
    parts: dict[int, SavedPart] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredObject:
    """An object verified in the bucket."""

    bucket: str
    object_name: str
    size: int
    etag: str
    sha256: str
    content_type: str


class UploadListener:
    """Callbacks an upload reports through; the outbox persists them."""

    def started(self, upload_id: str, part_size: int) -> None: ...

    def part_done(self, part: SavedPart) -> None: ...

    def progress(self, done: int, total: int) -> None: ...

    def finished(self) -> None: ...


class ObjectStore:
    """The bucket: verified uploads, resumable multipart, verified copies, downloads."""

    def __init__(self, settings: CentralSettings, clock: Optional[ServerClock] = None,
                 backend: Optional[ObjectBackend] = None) -> None:
        """``backend``: the bucket's backend; S3 (minio) from ``settings`` when None."""
        if backend is None:
            from sync.s3 import S3Backend

            backend = S3Backend(settings, clock)
        self.settings = settings
        self.backend = backend
        self.bucket = backend.bucket
        #: The object storage's clock as seen from here (S3 signs requests with it).
        self.clock: ServerClock = getattr(backend, "clock", None) or clock or ServerClock()

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "ObjectStore":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def client(self) -> Any:
        """The SDK client of the S3 backend (tests and ``doctor``'s probe)."""
        return getattr(self.backend, "client")

    def _error(self, exc: BaseException, what: str) -> SyncError:
        return self.backend.classify(exc, what=what)

    # -- checks ----------------------------------------------------------------------------

    def check_access(self) -> None:
        """Raise CentralConfigError for bad credentials or a missing bucket."""
        if not self._bucket_exists():
            raise CentralConfigError(
                f"bucket {self.bucket!r} does not exist at {self.settings.endpoint}; create it "
                "or fix OBJECT_STORAGE_DEFAULT_BUCKET")

    def ensure_bucket(self) -> bool:
        """Check access, creating the bucket when it is missing, as MADSci's Data Manager
        does; True if it was created. A key that may not create it is a configuration
        error that names the bucket."""
        if self._bucket_exists():
            return False
        try:
            self.backend.make_bucket()
        except Exception as exc:  # noqa: BLE001 - sorted by the backend
            raise self._error(exc, f"creating bucket {self.bucket}") from exc
        log.info("created bucket %s at %s", self.bucket, self.settings.endpoint)
        return True

    def _bucket_exists(self) -> bool:
        try:
            return self.backend.bucket_exists()
        except Exception as exc:  # noqa: BLE001 - sorted by the backend
            raise self._error(exc, f"checking bucket {self.bucket}") from exc

    # -- reading back ----------------------------------------------------------------------

    def stat(self, object_name: str, bucket: Optional[str] = None) -> Optional[ObjectInfo]:
        """The object's stat (in this bench's bucket unless ``bucket`` is given), or None
        if there is no such object."""
        try:
            return self.backend.stat(object_name, bucket)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"reading {object_name}") from exc

    def verified(self, object_name: str, size: int, sha256: str) -> Optional[StoredObject]:
        """The object if it is there with this size and SHA-256, else None."""
        stat = self.stat(object_name)
        if stat is None:
            return None
        if stat.size != size or stat.metadata.get(META_SHA256) != sha256:
            log.warning("object %s differs from the local file (size %s vs %s); "
                        "it will be uploaded again", object_name, stat.size, size)
            return None
        return StoredObject(bucket=self.bucket, object_name=object_name, size=stat.size,
                            etag=stat.etag, sha256=sha256, content_type=stat.content_type)

    # -- upload ----------------------------------------------------------------------------

    def _metadata(self, datapoint_id: str, sha256: str, filename: str) -> dict[str, str]:
        return {META_SHA256: sha256, META_DATAPOINT: datapoint_id,
                META_FILENAME: quote(filename, safe="")}

    def upload(self, source: Path, *, object_name: str, size: int, sha256: str,
               content_type: str, datapoint_id: str, filename: str,
               saved: Optional[SavedUpload] = None,
               listener: Optional[UploadListener] = None) -> StoredObject:
        """Upload ``source`` (its bytes must hash to ``sha256``) and verify the result."""
        listener = listener or UploadListener()
        limit = self.settings.max_object_size
        if limit is not None and size > limit:
            raise RejectedError(
                f"the file is {size} bytes; the bucket accepts at most {limit} bytes per object")
        existing = self.verified(object_name, size, sha256)
        if existing is not None:
            if saved is not None:
                self.abort(object_name, saved.upload_id)
            listener.finished()
            return existing
        metadata = self._metadata(datapoint_id, sha256, filename)
        try:
            if size <= self.settings.part_size:
                self._put_single(source, object_name, size, sha256, content_type, metadata,
                                 listener)
            else:
                self._put_multipart(source, object_name, size, sha256, content_type, metadata,
                                    saved, listener)
        except SyncError:
            raise
        except Exception as exc:  # noqa: BLE001 - network, S3 errors
            raise self._error(exc, f"uploading {object_name}") from exc
        stored = self.verified(object_name, size, sha256)
        if stored is None:
            raise RetryableError(f"{object_name} did not verify after upload (size or SHA-256 "
                                 "differ); it will be uploaded again")
        listener.finished()
        return stored

    def _put_single(self, source: Path, object_name: str, size: int, sha256: str,
                    content_type: str, metadata: dict[str, str],
                    listener: UploadListener) -> None:
        with open(source, "rb") as stream:
            data = stream.read(size + 1)
        _check_local(data, size, sha256, source)
        self.backend.put(object_name, data, content_type=content_type, metadata=metadata)
        listener.progress(size, size)

    def _put_multipart(self, source: Path, object_name: str, size: int, sha256: str,
                       content_type: str, metadata: dict[str, str],
                       saved: Optional[SavedUpload], listener: UploadListener) -> None:
        part_size = saved.part_size if saved is not None else self.settings.part_size
        upload_id, done = self._resume(object_name, saved)
        if upload_id is None:
            upload_id = self.backend.create_multipart(object_name, content_type=content_type,
                                                      metadata=metadata)
            done = {}
            listener.started(upload_id, part_size)
        digest = hashlib.sha256()
        count = (size + part_size - 1) // part_size
        sent = sum(p.size for p in done.values())
        listener.progress(sent, size)
        in_flight: dict[int, tuple[Future[str], int]] = {}
        finished: list[SavedPart] = []  # uploaded, not yet saved for a resume
        pool = ThreadPoolExecutor(max_workers=PARTS_IN_FLIGHT, thread_name_prefix="s3-part")
        try:
            with open(source, "rb") as stream:
                for number in range(1, count + 1):
                    # Read and hash the next part while the others upload (read-ahead).
                    expected = min(part_size, size - (number - 1) * part_size)
                    data = stream.read(expected)
                    if len(data) != expected:
                        raise RejectedError(f"the local copy of {source.name} is shorter than "
                                            "recorded; the file store is damaged")
                    digest.update(data)
                    known = done.get(number)
                    if known is not None and known.size == expected:
                        continue
                    while len(in_flight) >= PARTS_IN_FLIGHT:
                        self._wait_for_parts(in_flight, finished)
                    in_flight[number] = (pool.submit(
                        self.backend.upload_part, object_name, upload_id, number, data),
                        expected)
                    del data
                    # Saving a part is a durable SQLite commit: do it once the freed slot is
                    # busy again, not while it sits empty.
                    sent += self._record_parts(finished, done, listener)
                    listener.progress(sent, size)
                if stream.read(1):
                    raise RejectedError(f"the local copy of {source.name} is longer than "
                                        "recorded; the file store is damaged")
            while in_flight:
                self._wait_for_parts(in_flight, finished)
                sent += self._record_parts(finished, done, listener)
                listener.progress(sent, size)
        finally:
            for future, _size in in_flight.values():
                future.cancel()
            pool.shutdown(wait=True)
            # A failure stops the upload; parts that made it are saved, so a resume keeps them.
            finished.extend(SavedPart(number, str(future.result()).strip('"'), size)
                            for number, (future, size) in in_flight.items()
                            if not future.cancelled() and future.exception() is None)
            self._record_parts(finished, done, listener)
        if digest.hexdigest() != sha256:
            self.abort(object_name, upload_id)
            listener.finished()
            raise RejectedError(f"the local copy of {source.name} is damaged: its SHA-256 is "
                                f"{digest.hexdigest()}, {sha256} was recorded at capture")
        self.backend.complete_multipart(
            object_name, upload_id, [(number, part.etag) for number, part in sorted(done.items())])

    @staticmethod
    def _wait_for_parts(in_flight: dict[int, tuple[Future[str], int]],
                        finished: list[SavedPart]) -> None:
        """Wait until a part in flight is done; add the parts that uploaded to ``finished``,
        then raise the error of one that failed (those before it are still saved)."""
        from concurrent.futures import FIRST_COMPLETED, wait

        futures = {future: number for number, (future, _size) in in_flight.items()}
        ready, _pending = wait(futures, return_when=FIRST_COMPLETED)
        failure: Optional[BaseException] = None
        for future in ready:
            number = futures[future]
            _future, size = in_flight.pop(number)
            error = future.exception()
            if error is None:
                finished.append(SavedPart(number, str(future.result()).strip('"'), size))
            elif failure is None:
                failure = error
        if failure is not None:
            raise failure

    @staticmethod
    def _record_parts(finished: list[SavedPart], done: dict[int, SavedPart],
                      listener: UploadListener) -> int:
        """Save uploaded parts (for a resume) and empty ``finished``; return their bytes."""
        gained = 0
        while finished:
            part = finished.pop(0)
            done[part.number] = part
            listener.part_done(part)
            gained += part.size
        return gained

    def _resume(self, object_name: str,
                saved: Optional[SavedUpload]) -> tuple[Optional[str], dict[int, SavedPart]]:
        """The saved upload and the parts the server confirms, or (None, {})."""
        if saved is None:
            return None, {}
        listed = self.backend.list_parts(object_name, saved.upload_id)
        if listed is None:
            log.info("saved upload of %s is gone; starting again", object_name)
            return None, {}
        server = {p.number: (p.etag, p.size) for p in listed}
        done = {n: p for n, p in saved.parts.items()
                if n in server and server[n] == (p.etag.strip('"'), p.size)}
        log.info("resuming upload of %s: %d part(s) already there", object_name, len(done))
        return saved.upload_id, done

    def abort(self, object_name: str, upload_id: str) -> None:
        """Abort a multipart upload; an upload that is already gone is fine."""
        try:
            self.backend.abort_multipart(object_name, upload_id)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"aborting the upload of {object_name}") from exc

    def abort_abandoned(self, keep: Iterable[str], older_than: timedelta,
                        mine: Callable[[list[str]], set[str]]) -> int:
        """Abort this bench's multipart uploads that nobody resumes; return how many.

        ``mine`` picks, from the datapoint ids in upload names, those this bench captured:
        another bench's upload (offline for a while, say) is its own to resume."""
        keep_ids = set(keep)
        cutoff = datetime.now(timezone.utc) - older_than
        aborted = 0
        try:
            uploads = self._our_uploads()
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "listing unfinished uploads") from exc
        owners = {u.upload_id: datapoint_id_in(self.settings, u.object_name) for u in uploads}
        ours = mine([i for i in owners.values() if i])
        for upload in uploads:
            if owners[upload.upload_id] not in ours or upload.upload_id in keep_ids:
                continue
            if upload.initiated is not None and upload.initiated > cutoff:
                continue
            self.abort(upload.object_name, upload.upload_id)
            aborted += 1
        return aborted

    def list_uploads(self) -> list[tuple[str, str]]:
        return [(u.object_name, u.upload_id) for u in self._our_uploads()]

    def _our_uploads(self) -> list[UploadInfo]:
        """Unfinished multipart uploads of bench objects (not MADSci's or anyone else's)."""
        return [u for u in self.backend.list_multipart_uploads(limit=1000)
                if is_bench_object_name(self.settings, u.object_name)]

    # -- renaming --------------------------------------------------------------------------

    def copy_verified(self, source_name: str, target_name: str, size: int,
                      sha256: str) -> StoredObject:
        """Copy an object within the bucket (server side, user metadata kept) and verify
        the copy's size and SHA-256 metadata; a copy already there is verified as is."""
        existing = self.verified(target_name, size, sha256)
        if existing is not None:
            return existing
        source = self.stat(source_name)
        if source is None:
            raise RejectedError(f"{source_name} is not in bucket {self.bucket} any more; "
                                "its datapoint's central copy is missing")
        try:
            self.backend.copy(source_name, target_name, content_type=source.content_type,
                              metadata=source.metadata)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"copying {source_name} to {target_name}") from exc
        stored = self.verified(target_name, size, sha256)
        if stored is None:
            raise RetryableError(f"the copy {target_name} did not verify (size or SHA-256 "
                                 "differ); it will be copied again")
        return stored

    def remove(self, object_name: str) -> None:
        """Delete an object; one that is already gone is fine."""
        try:
            self.backend.remove(object_name)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"deleting {object_name}") from exc

    # -- download --------------------------------------------------------------------------

    def open_stream(self, bucket: str, object_name: str) -> ObjectStream:
        """A streaming response (``.headers``, ``.read()``, ``.close()``, ``.release_conn()``)."""
        try:
            return self.backend.open_stream(bucket, object_name)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"downloading {object_name}") from exc


def _check_local(data: bytes, size: int, sha256: str, source: Path) -> None:
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise RejectedError(f"the local copy of {source.name} is damaged (size or SHA-256 "
                            "differ from what was recorded at capture)")
