"""Files to S3-compatible object storage: unique keys, resumable multipart, verified.

* One key per datapoint: ``<spread>_<ULID>_<sanitised filename>`` (:func:`object_name_for`)
  — two files with the same name or label never overwrite each other, the original name
  stays visible, there is no ``/`` (MADSci 0.8.1's server puts the object name into a
  temporary file's name), and ``<spread>`` (4 hex digits of the ULID's SHA-256) spreads
  keys over the bucket's partitions. Older benches wrote ``<prefix><ULID>/<name>``
  (:func:`legacy_object_name`); ``sync.rename`` moves those.
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
* The minio SDK's own retries are cut short (a dead endpoint fails in seconds, not 12 s);
  the engine retries with backoff instead.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote, unquote

from sync.clock import SKEW_CODES, ServerClock, describe_skew
from sync.faults import CentralConfigError, RejectedError, RetryableError, SyncError, classify_s3
from sync.settings import CentralSettings

log = logging.getLogger(__name__)

META_SHA256 = "sha256"
META_DATAPOINT = "datapoint-id"
META_FILENAME = "filename"
#: Parts in flight per multipart upload (bounded memory: this many parts + one being read).
PARTS_IN_FLIGHT = 3
_MAX_NAME_BYTES = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\/:*?\"<>|]+")

ProgressCallback = Callable[[int, int], None]


def safe_filename(name: Optional[str], fallback: str = "file") -> str:
    """A filename safe as an object key segment and as a local file name."""
    text = unicodedata.normalize("NFC", str(name or ""))
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = _UNSAFE.sub("_", text).strip().strip(".")
    if not text:
        text = fallback
    encoded = text.encode("utf-8")
    if len(encoded) > _MAX_NAME_BYTES:
        stem, dot, suffix = text.rpartition(".")
        suffix = f".{suffix}" if dot and len(suffix.encode()) <= 16 else ""
        keep = encoded[: _MAX_NAME_BYTES - len(suffix.encode())].decode("utf-8", "ignore")
        text = keep + suffix
    return text


#: Hex digits of SHA-256(ULID) that lead an object name (16^4 key ranges).
SPREAD_DIGITS = 4
#: The names this engine writes: spread, ULID, safe file name (never a ``/``).
_OUR_NAME = re.compile(r"[0-9a-f]{%d}_[0-9A-HJKMNP-TV-Z]{26}_[^/]*" % SPREAD_DIGITS)


def object_name_for(settings: CentralSettings, datapoint_id: str, filename: Optional[str]) -> str:
    """``<spread>_<ULID>_<safe file name>``: unique per datapoint, readable, no ``/``.

    S3 partitions a bucket by key prefix; ULIDs begin with their time, so keys that began
    with the ULID (as MADSci's ``<id>_<label>`` do) would all land in the newest key
    range. A short hash of the ULID in front spreads them evenly (``settings`` is kept
    for the signature's sake: the old ``object_prefix`` held a ``/``).
    """
    spread = hashlib.sha256(datapoint_id.encode("ascii")).hexdigest()[:SPREAD_DIGITS]
    return f"{spread}_{datapoint_id}_{safe_filename(filename)}"


def legacy_object_name(settings: CentralSettings, datapoint_id: str,
                       filename: Optional[str]) -> str:
    """The name benches wrote before: ``<object_prefix><ULID>/<safe file name>``."""
    return f"{settings.object_prefix}{datapoint_id}/{safe_filename(filename)}"


def datapoint_id_in(settings: CentralSettings, name: str) -> Optional[str]:
    """The datapoint id in a bench object's name (either form), or None."""
    if _OUR_NAME.fullmatch(name):
        return name.split("_", 2)[1]
    if settings.object_prefix and name.startswith(settings.object_prefix):
        return name[len(settings.object_prefix):].split("/", 1)[0] or None
    return None


def is_bench_object_name(settings: CentralSettings, name: str) -> bool:
    """Whether a key is one a bench wrote (new form, or old under ``object_prefix``)."""
    return bool(_OUR_NAME.fullmatch(name)) or (
        bool(settings.object_prefix) and name.startswith(settings.object_prefix))


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


def _pool_manager(settings: CentralSettings) -> Any:
    import urllib3

    retries = urllib3.Retry(total=2, connect=1, read=0, redirect=0, status=0,
                            backoff_factor=0.2, raise_on_status=False)
    timeout = urllib3.Timeout(connect=min(5.0, settings.timeout_s), read=settings.timeout_s)
    kwargs: dict[str, Any] = {"retries": retries, "timeout": timeout, "maxsize": 16}
    if settings.secure:
        kwargs["cert_reqs"] = "CERT_REQUIRED"
        ca_certs = _trusted_cas(settings)
        if ca_certs:
            kwargs["ca_certs"] = ca_certs
    return urllib3.PoolManager(**kwargs)


def _trusted_cas(settings: CentralSettings) -> Optional[str]:
    """The CA bundle to verify the endpoint with: ours, else what minio itself would use.

    minio's own default client trusts ``SSL_CERT_FILE`` or certifi; we replace that client
    (for fail-fast retries), so we keep its choice when no ``ca_file`` is set. None means
    the system store.
    """
    bundle = settings.ca_bundle()  # a missing file is a configuration error, said now
    if bundle:
        return bundle
    if os.environ.get("SSL_CERT_FILE"):
        return os.environ["SSL_CERT_FILE"]
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


_CLOCKED_MINIO: Optional[type] = None


def _clocked_minio() -> type:
    """minio's client class, signing with a :class:`ServerClock` (made on first use).

    minio 7.2 stamps each request in ``Minio._build_headers`` (``x-amz-date`` from
    ``time.utcnow()``) and signs it in ``Minio._url_open`` with the date that returns; those
    two are the hooks. A request refused for a wrong clock (``sync.clock``) is sent once
    more, signed with the server's time.
    """
    global _CLOCKED_MINIO
    if _CLOCKED_MINIO is not None:
        return _CLOCKED_MINIO
    from minio import Minio
    from minio import time as minio_time
    from minio.error import S3Error

    class ClockedMinio(Minio):  # type: ignore[misc]
        server_clock: ServerClock

        def _build_headers(self, host: str, headers: Any = None, body: Any = None,
                           creds: Any = None) -> tuple[Any, datetime]:
            headers, _bench_time = super()._build_headers(host, headers, body, creds)
            date = self.server_clock.now()
            headers["x-amz-date"] = minio_time.to_amz_date(date)
            return headers, date

        def _url_open(self, method: str, region: str, **kwargs: Any) -> Any:
            original = kwargs.get("headers")
            try:
                response = super()._url_open(
                    method, region, **{**kwargs, "headers": dict(original or {})})
            except S3Error as exc:
                answer = exc.response
                if exc.code not in SKEW_CODES or answer is None or \
                        not self.server_clock.observe(answer.headers):
                    raise
                log.warning("object storage refused a request (%s): %s; signing with the "
                            "server's time from now on", exc.code,
                            describe_skew(self.server_clock.skew_s or 0.0))
                response = super()._url_open(
                    method, region, **{**kwargs, "headers": dict(original or {})})
            self.server_clock.observe(response.headers)
            return response

    _CLOCKED_MINIO = ClockedMinio
    return ClockedMinio


class ObjectStore:
    """The bucket, through the minio SDK with fail-fast HTTP."""

    def __init__(self, settings: CentralSettings,
                 clock: Optional[ServerClock] = None) -> None:
        if not settings.objects_configured:
            raise CentralConfigError(
                "object storage is not configured: set OBJECT_STORAGE_ENDPOINT, "
                "OBJECT_STORAGE_DEFAULT_BUCKET, OBJECT_STORAGE_ACCESS_KEY and "
                "OBJECT_STORAGE_SECRET_KEY (or `benchdata sync configure`)")
        self.settings = settings
        self.bucket = str(settings.bucket)
        self._pool = _pool_manager(settings)
        #: The object storage's clock as seen from here: S3 requests are signed with it.
        self.clock = clock or ServerClock()
        assert settings.secret_key is not None
        try:
            self._client = _clocked_minio()(
                str(settings.endpoint), access_key=settings.access_key,
                secret_key=settings.secret_key.get_secret_value(), secure=settings.secure,
                region=settings.region or None, http_client=self._pool)
        except ValueError as exc:
            raise CentralConfigError(f"the object storage endpoint is not usable: {exc}") from exc
        self._client.server_clock = self.clock

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> "ObjectStore":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def client(self) -> Any:
        return self._client

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
        from minio.error import S3Error

        try:
            self._client.make_bucket(self.bucket)
        except S3Error as exc:
            if exc.code == "BucketAlreadyOwnedByYou":
                return False  # created meanwhile, by another bench or MADSci
            if exc.code in ("AccessDenied", "Forbidden", "NotImplemented",
                            "MethodNotAllowed"):
                raise CentralConfigError(
                    f"bucket {self.bucket!r} does not exist at {self.settings.endpoint}, and "
                    f"access key {self.settings.access_key!r} may not create it ({exc.code}): "
                    "ask the storage administrator to create it or to allow this key to "
                    "(s3:CreateBucket), or fix OBJECT_STORAGE_DEFAULT_BUCKET") from exc
            if exc.code == "BucketAlreadyExists":
                raise CentralConfigError(
                    f"bucket {self.bucket!r} belongs to another account at "
                    f"{self.settings.endpoint}; choose another OBJECT_STORAGE_DEFAULT_BUCKET"
                ) from exc
            raise classify_s3(exc, what=f"creating bucket {self.bucket}") from exc
        except Exception as exc:  # noqa: BLE001
            raise classify_s3(exc, what=f"creating bucket {self.bucket}") from exc
        log.info("created bucket %s at %s", self.bucket, self.settings.endpoint)
        return True

    def _bucket_exists(self) -> bool:
        try:
            return bool(self._client.bucket_exists(self.bucket))
        except ValueError as exc:
            raise CentralConfigError(f"bucket name {self.bucket!r} is not valid: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - sorted below
            error = classify_s3(exc, what=f"checking bucket {self.bucket}")
            from minio.error import S3Error

            if isinstance(exc, S3Error) and exc.code in ("AccessDenied", "Forbidden"):
                error = CentralConfigError(
                    f"object storage denied access to bucket {self.bucket} ({exc.code}): "
                    "check the access key, secret key and the bucket's policy")
            raise error from exc

    # -- reading back ----------------------------------------------------------------------

    def stat(self, object_name: str, bucket: Optional[str] = None) -> Optional[Any]:
        """The object's stat (in this bench's bucket unless ``bucket`` is given), or None
        if there is no such object."""
        from minio.error import S3Error

        try:
            return self._client.stat_object(bucket or self.bucket, object_name)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"):
                return None
            raise classify_s3(exc, what=f"reading {object_name}") from exc
        except Exception as exc:  # noqa: BLE001
            raise classify_s3(exc, what=f"reading {object_name}") from exc

    def verified(self, object_name: str, size: int, sha256: str) -> Optional[StoredObject]:
        """The object if it is there with this size and SHA-256, else None."""
        stat = self.stat(object_name)
        if stat is None:
            return None
        meta = {k.lower(): v for k, v in (stat.metadata or {}).items()}
        stored_sha = meta.get(f"x-amz-meta-{META_SHA256}")
        if int(stat.size) != size or stored_sha != sha256:
            log.warning("object %s differs from the local file (size %s vs %s); "
                        "it will be uploaded again", object_name, stat.size, size)
            return None
        return StoredObject(bucket=self.bucket, object_name=object_name, size=int(stat.size),
                            etag=str(stat.etag or "").strip('"'), sha256=sha256,
                            content_type=str(stat.content_type or "application/octet-stream"))

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
            raise classify_s3(exc, what=f"uploading {object_name}") from exc
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
        self._client.put_object(self.bucket, object_name, io.BytesIO(data), len(data),
                                content_type=content_type, metadata=metadata)
        listener.progress(size, size)

    def _put_multipart(self, source: Path, object_name: str, size: int, sha256: str,
                       content_type: str, metadata: dict[str, str],
                       saved: Optional[SavedUpload], listener: UploadListener) -> None:
        from minio.datatypes import Part

        part_size = saved.part_size if saved is not None else self.settings.part_size
        upload_id, done = self._resume(object_name, saved)
        if upload_id is None:
            headers = {"Content-Type": content_type,
                       **{f"x-amz-meta-{k}": v for k, v in metadata.items()}}
            upload_id = self._client._create_multipart_upload(self.bucket, object_name, headers)
            done = {}
            assert upload_id is not None
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
                        self._client._upload_part, self.bucket, object_name, data, None,
                        upload_id, number), expected)
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
        parts = [Part(number, part.etag) for number, part in sorted(done.items())]
        self._client._complete_multipart_upload(self.bucket, object_name, upload_id, parts)

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
        from minio.error import S3Error

        if saved is None:
            return None, {}
        try:
            listed = self._client._list_parts(self.bucket, object_name, saved.upload_id,
                                              max_parts=10000)
        except S3Error as exc:
            if exc.code in ("NoSuchUpload", "NoSuchKey"):
                log.info("saved upload of %s is gone; starting again", object_name)
                return None, {}
            raise
        server = {int(p.part_number): (str(p.etag).strip('"'), int(p.size))
                  for p in (listed.parts or [])}
        done = {n: p for n, p in saved.parts.items()
                if n in server and server[n] == (p.etag.strip('"'), p.size)}
        log.info("resuming upload of %s: %d part(s) already there", object_name, len(done))
        return saved.upload_id, done

    def abort(self, object_name: str, upload_id: str) -> None:
        """Abort a multipart upload; an upload that is already gone is fine."""
        from minio.error import S3Error

        try:
            self._client._abort_multipart_upload(self.bucket, object_name, upload_id)
        except S3Error as exc:
            if exc.code not in ("NoSuchUpload", "NoSuchKey"):
                raise classify_s3(exc, what=f"aborting the upload of {object_name}") from exc
        except Exception as exc:  # noqa: BLE001
            raise classify_s3(exc, what=f"aborting the upload of {object_name}") from exc

    def abort_abandoned(self, keep: Iterable[str], older_than: timedelta,
                        mine: Callable[[list[str]], set[str]]) -> int:
        """Abort this bench's multipart uploads that nobody resumes; return how many.

        ``mine`` picks, from the datapoint ids in upload names, those this bench captured:
        another bench's upload (offline for a while, say) is its own to resume."""
        keep_ids = set(keep)
        cutoff = datetime.now(timezone.utc) - older_than
        aborted = 0
        try:
            uploads = self._our_uploads(max_uploads=1000)
        except Exception as exc:  # noqa: BLE001
            raise classify_s3(exc, what="listing unfinished uploads") from exc
        owners = {u.upload_id: datapoint_id_in(self.settings, str(u.object_name))
                  for u in uploads}
        ours = mine([i for i in owners.values() if i])
        for upload in uploads:
            if owners[upload.upload_id] not in ours:
                continue
            initiated = getattr(upload, "initiated_time", None)
            if upload.upload_id in keep_ids:
                continue
            if initiated is not None and initiated.tzinfo is None:
                initiated = initiated.replace(tzinfo=timezone.utc)
            if initiated is not None and initiated > cutoff:
                continue
            self.abort(upload.object_name, upload.upload_id)
            aborted += 1
        return aborted

    def list_uploads(self) -> list[tuple[str, str]]:
        return [(u.object_name, u.upload_id) for u in self._our_uploads()]

    def _our_uploads(self, **kwargs: Any) -> list[Any]:
        """Unfinished multipart uploads of bench objects (not MADSci's or anyone else's)."""
        result = self._client._list_multipart_uploads(self.bucket, **kwargs)
        return [u for u in (result.uploads or [])
                if is_bench_object_name(self.settings, str(u.object_name))]

    # -- renaming --------------------------------------------------------------------------

    def copy_verified(self, source_name: str, target_name: str, size: int,
                      sha256: str) -> StoredObject:
        """Copy an object within the bucket (server side, user metadata kept) and verify
        the copy's size and SHA-256 metadata; a copy already there is verified as is."""
        existing = self.verified(target_name, size, sha256)
        if existing is not None:
            return existing
        from minio.commonconfig import REPLACE, CopySource

        source = self.stat(source_name)
        if source is None:
            raise RejectedError(f"{source_name} is not in bucket {self.bucket} any more; "
                                "its datapoint's central copy is missing")
        # Metadata given explicitly: minio composes objects over 5 GiB part by part, and
        # a composed object would not inherit the source's metadata by itself.
        metadata = {key: value for key, value in (source.metadata or {}).items()
                    if key.lower().startswith("x-amz-meta-")}
        metadata["Content-Type"] = str(source.content_type or "application/octet-stream")
        try:
            self._client.copy_object(self.bucket, target_name,
                                     CopySource(self.bucket, source_name), metadata=metadata,
                                     metadata_directive=REPLACE)
        except Exception as exc:  # noqa: BLE001
            raise classify_s3(exc, what=f"copying {source_name} to {target_name}") from exc
        stored = self.verified(target_name, size, sha256)
        if stored is None:
            raise RetryableError(f"the copy {target_name} did not verify (size or SHA-256 "
                                 "differ); it will be copied again")
        return stored

    def remove(self, object_name: str) -> None:
        """Delete an object; one that is already gone is fine."""
        from minio.error import S3Error

        try:
            self._client.remove_object(self.bucket, object_name)
        except S3Error as exc:
            if exc.code not in ("NoSuchKey", "NoSuchObject", "NotFound"):
                raise classify_s3(exc, what=f"deleting {object_name}") from exc
        except Exception as exc:  # noqa: BLE001
            raise classify_s3(exc, what=f"deleting {object_name}") from exc

    # -- download --------------------------------------------------------------------------

    def open_stream(self, bucket: str, object_name: str) -> Any:
        """A streaming response (``.stream()``, ``.close()``, ``.release_conn()``)."""
        try:
            return self._client.get_object(bucket, object_name)
        except Exception as exc:  # noqa: BLE001
            raise classify_s3(exc, what=f"downloading {object_name}") from exc


def _check_local(data: bytes, size: int, sha256: str, source: Path) -> None:
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise RejectedError(f"the local copy of {source.name} is damaged (size or SHA-256 "
                            "differ from what was recorded at capture)")


def filename_from_metadata(value: Optional[str]) -> Optional[str]:
    return unquote(value) if value else None


class StreamReader(io.RawIOBase):
    """A file-like view of a urllib3 response, for FileStore.put_stream."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._response.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n
