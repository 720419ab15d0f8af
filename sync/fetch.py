"""Download a datapoint's file from the central bucket, verified before anyone sees a byte.

The one download-and-verify step behind ``BenchService.file_blob`` (REST ``/value``, the
Python API, the CLI, the window, export and save all come through there):

* Where the object is: the record's ``bucket_name``/``object_name`` for an
  ``object_storage`` datapoint (pulled from another bench, or written by MADSci); this
  bench's own upload record (``sync_objects``) for a file it captured and later freed.
* How it is verified: by SHA-256 where the record has one (every bench-synced file);
  otherwise — an object MADSci wrote itself — by the record's size and ETag against the
  object's (and by MD5 too when the ETag is a plain MD5, as for a single-part upload).
* The bytes stream into the file store's normal ``put_stream`` (temp file, hashed on the
  way, fsynced, content-addressed) under a hold; only once they verify is the datapoint's
  custody recorded (:mod:`app.core.custody`), and only custody lets a blob be served. A
  download that does not verify is discarded unless another row uses the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Optional

from app.core import custody
from app.core.errors import (
    BenchDataError,
    CaptureError,
    DiskFullError,
    FileDamagedError,
    FileNotReachableError,
    FileUnavailableError,
    SourceChangedError,
)
from app.core.filestore.streamcopy import NETWORK_CHUNK_SIZE
from app.core.models import DataPoint, FileDataPoint, ObjectStorageDataPoint
from app.service import BenchService

from sync.faults import RejectedError, SyncError
from sync.objects import ObjectStore
from sync.outbox import Outbox
from sync.settings import CentralSettings, load_settings

log = logging.getLogger(__name__)

_PLAIN_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class CentralSource:
    """Where a datapoint's central copy is, and what it must be."""

    bucket: str
    object_name: str
    sha256: Optional[str]
    size: Optional[int]
    etag: Optional[str]


def _clean_etag(etag: Any) -> Optional[str]:
    text = str(etag or "").strip().strip('"').lower()
    return text or None


def central_source(service: BenchService, datapoint: DataPoint,
                   default_bucket: str) -> CentralSource:
    """The central copy of ``datapoint``'s file; FileNotReachableError when there is none."""
    ident = datapoint.datapoint_id
    if isinstance(datapoint, ObjectStorageDataPoint):
        if not datapoint.object_name:
            raise FileNotReachableError(
                f"the file of datapoint {ident} is not reachable from this bench: its record "
                "names no object in the central bucket")
        return CentralSource(bucket=datapoint.bucket_name or default_bucket,
                             object_name=datapoint.object_name, sha256=datapoint.sha256,
                             size=datapoint.size_bytes, etag=_clean_etag(datapoint.etag))
    if isinstance(datapoint, FileDataPoint) and datapoint.sha256:
        stored = Outbox(service.store).objects_for([ident]).get(ident)
        if stored is not None and stored["sha256"] == datapoint.sha256:
            return CentralSource(bucket=str(stored["bucket"]),
                                 object_name=str(stored["object_name"]),
                                 sha256=datapoint.sha256, size=int(stored["size"]),
                                 etag=_clean_etag(stored["etag"]))
        raise FileNotReachableError(
            f"the file of datapoint {ident} is not in this bench's file store and no "
            "verified central copy of it is recorded")
    raise FileNotReachableError(
        f"the file of datapoint {ident} is not reachable from this bench: it has no copy in "
        "the central bucket")


def _undecoded_body(response: Any) -> Any:
    """The ``http.client`` response under urllib3's, when the body needs no decoding.

    Reading it with ``readinto`` fills the file store's buffers straight from the socket;
    urllib3's ``read(n)`` allocates a fresh n-byte object per call and the bytes are copied
    once more (measured: a third of the client's CPU for a 256 MiB download, on a machine
    where the hash competes with the server for the same cores). None: use urllib3."""
    encoding = str(response.headers.get("content-encoding") or "identity").strip().lower()
    raw = getattr(response, "_fp", None)
    return raw if encoding == "identity" and hasattr(raw, "readinto") else None


class _CheckedReader(io.RawIOBase):
    """The object's body for ``FileStore.put_stream``, with an MD5 on the side when the
    ETag can be checked that way; a broken connection is an OSError (a capture error)."""

    def __init__(self, response: Any, md5: bool) -> None:
        self._response = response
        self._raw = _undecoded_body(response)
        length = response.headers.get("content-length")
        self._left: Optional[int] = int(length) if length is not None else None
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            if self._raw is not None:
                n = self._raw.readinto(buffer)
            else:
                data = self._response.read(len(buffer))
                n = len(data)
                buffer[:n] = data
        except Exception as exc:  # noqa: BLE001 - urllib3 errors are not OSErrors
            raise OSError(f"the download broke off ({type(exc).__name__}: {exc})") from exc
        if self._left is not None:
            if n == 0 and self._left > 0 and len(buffer) > 0:
                # http.client's readinto ends quietly where urllib3 would have complained.
                raise OSError(f"the download broke off with {self._left} bytes missing")
            self._left -= n
        if self.md5 is not None and n:
            with memoryview(buffer) as view:
                self.md5.update(view[:n])
        return n


def _check_headers(ident: str, source: CentralSource, response: Any) -> None:
    """Before reading a byte: the object must still be the one the record describes."""
    headers = response.headers
    length = headers.get("content-length")
    if source.size is not None and length is not None and int(length) != source.size:
        raise FileDamagedError(
            f"the central copy of datapoint {ident} is {length} bytes, its record says "
            f"{source.size}; it was not served")
    if source.sha256 is None:
        served = _clean_etag(headers.get("etag"))
        if source.etag is None or (source.size is None
                                   and not _PLAIN_MD5.fullmatch(source.etag)):
            raise FileDamagedError(
                f"the central copy of datapoint {ident} cannot be verified: its record has "
                "no SHA-256, and no size and ETag; it was not served")
        if served != source.etag:
            raise FileDamagedError(
                f"the central copy of datapoint {ident} has changed since it was recorded "
                f"(ETag {served}, record {source.etag}); it was not served")


def _mismatch(ident: str, source: CentralSource, blob_sha256: str, size: int,
              reader: _CheckedReader) -> Optional[str]:
    if source.sha256 is not None:
        if blob_sha256 != source.sha256:
            return f"its SHA-256 is {blob_sha256}, the record says {source.sha256}"
        return None
    if source.size is not None and size != source.size:
        return f"{size} bytes arrived, the record says {source.size}"
    if reader.md5 is not None and reader.md5.hexdigest() != source.etag:
        return f"its MD5 is {reader.md5.hexdigest()}, the record's ETag is {source.etag}"
    return None


def fetch_verified(service: BenchService, objects: ObjectStore, datapoint: DataPoint) -> str:
    """Download ``datapoint``'s central copy into the file store, verify it, record custody;
    return the blob's SHA-256. Raises FileNotReachableError, FileUnavailableError,
    FileDamagedError (or DiskFullError)."""
    ident = datapoint.datapoint_id
    source = central_source(service, datapoint, objects.bucket)
    try:
        response = objects.open_stream(source.bucket, source.object_name)
    except RejectedError as exc:  # no such key, access denied to this object ...
        raise FileNotReachableError(
            f"the file of datapoint {ident} is not reachable from this bench: the central "
            f"bucket refused it ({exc})") from exc
    except SyncError as exc:
        raise FileUnavailableError(
            f"the central copy of datapoint {ident} cannot be fetched now: {exc}") from exc
    try:
        _check_headers(ident, source, response)
        reader = _CheckedReader(response, md5=source.sha256 is None
                                and bool(source.etag and _PLAIN_MD5.fullmatch(source.etag)))
        blob = service.files.put_stream(reader, expected_size=source.size, hold=True,
                                        chunk_size=NETWORK_CHUNK_SIZE)
    except DiskFullError:
        raise
    except SourceChangedError as exc:
        raise FileDamagedError(f"the central copy of datapoint {ident} is not the size its "
                               f"record says ({exc}); it was not served") from exc
    except CaptureError as exc:
        raise FileUnavailableError(
            f"the central copy of datapoint {ident} could not be fetched: {exc}") from exc
    finally:
        response.close()
        response.release_conn()
    recorded = False
    try:
        problem = _mismatch(ident, source, blob.sha256, blob.size_bytes, reader)
        if problem is not None:
            log.warning("central copy of %s refused: %s", ident, problem)
            raise FileDamagedError(f"the central copy of datapoint {ident} does not match its "
                                   f"record ({problem}); it was not served")
        recorded = custody.record(service.store, ident, blob.sha256,
                                  "sha256" if source.sha256 else "etag",
                                  expected_row_sha256=getattr(datapoint, "sha256", None))
        if not recorded:
            raise FileUnavailableError(f"datapoint {ident} changed while its file was "
                                       "fetched; ask again")
        # The download matched the record: the central copy is verified as well.
        custody.note_central_verified(service.store, ident, blob.sha256, source.bucket,
                                      source.object_name,
                                      "download-sha256" if source.sha256 else "download-etag")
    finally:
        service.settle_blobs([blob.sha256], recorded)
    return blob.sha256


class CentralFetcher:
    """Fetches files from the central bucket with one set of settings."""

    def __init__(self, settings: CentralSettings) -> None:
        self.settings = settings
        self._objects: Optional[ObjectStore] = None
        self._lock = threading.Lock()

    def _object_store(self) -> ObjectStore:
        with self._lock:
            if self._objects is None:
                try:
                    self._objects = ObjectStore(self.settings)
                except BenchDataError as exc:
                    raise FileUnavailableError(
                        f"the central bucket cannot be used: {exc}") from exc
            return self._objects

    def fetch(self, service: BenchService, datapoint: DataPoint) -> str:
        return fetch_verified(service, self._object_store(), datapoint)

    def close(self) -> None:
        with self._lock:
            objects, self._objects = self._objects, None
        if objects is not None:
            objects.close()


def central_fetcher(service: BenchService) -> Optional[CentralFetcher]:
    """The fetcher for this bench's configured central bucket, or None when none is."""
    try:
        settings = load_settings(service.paths)
    except BenchDataError as exc:
        raise FileUnavailableError(f"the central store settings cannot be used: {exc}") from exc
    return CentralFetcher(settings) if settings.objects_configured else None
