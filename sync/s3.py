"""S3-compatible object storage through the minio SDK: the real ``ObjectBackend``.

Only the primitives (``sync.backends.ObjectBackend``); verified, resumable uploads are
built on them in ``sync.objects``. The minio SDK's own retries are cut short (a dead
endpoint fails in seconds, not 12 s); the engine retries with backoff instead. Requests
are signed with the object storage's clock (``sync.clock``). Errors are sorted by
``sync.faults.classify_s3`` (``classify``).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Optional

from sync.backends import ClassifiedErrors, ObjectInfo, ObjectStream, PartInfo, UploadInfo, \
    sorted_already
from sync.clock import SKEW_CODES, ServerClock, describe_skew
from sync.faults import CentralConfigError, SyncError, classify_s3
from sync.settings import CentralSettings

log = logging.getLogger(__name__)

#: S3 error codes for "no such object".
_NO_OBJECT = ("NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound")
#: S3 error codes for "no such multipart upload".
_NO_UPLOAD = ("NoSuchUpload", "NoSuchKey")


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



def _user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """User metadata from response headers: lower case, without ``x-amz-meta-``."""
    prefix = "x-amz-meta-"
    return {k.lower()[len(prefix):]: v for k, v in headers.items()
            if k.lower().startswith(prefix)}


class S3Backend(ClassifiedErrors):
    """The bucket, through the minio SDK with fail-fast HTTP."""

    def __init__(self, settings: CentralSettings, clock: Optional[ServerClock] = None) -> None:
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
            self.client: Any = _clocked_minio()(
                str(settings.endpoint), access_key=settings.access_key,
                secret_key=settings.secret_key.get_secret_value(), secure=settings.secure,
                region=settings.region or None, http_client=self._pool)
        except ValueError as exc:
            raise CentralConfigError(f"the object storage endpoint is not usable: {exc}") from exc
        self.client.server_clock = self.clock

    def close(self) -> None:
        self._pool.clear()

    def classify(self, exc: BaseException, *, what: str) -> SyncError:
        if isinstance(exc, SyncError):
            return sorted_already(exc)
        return classify_s3(exc, what=what)

    # -- the bucket ------------------------------------------------------------------------

    def bucket_exists(self) -> bool:
        from minio.error import S3Error

        try:
            return bool(self.client.bucket_exists(self.bucket))
        except ValueError as exc:
            raise CentralConfigError(f"bucket name {self.bucket!r} is not valid: {exc}") from exc
        except S3Error as exc:
            if exc.code in ("AccessDenied", "Forbidden"):
                raise CentralConfigError(
                    f"object storage denied access to bucket {self.bucket} ({exc.code}): "
                    "check the access key, secret key and the bucket's policy") from exc
            raise

    def make_bucket(self) -> None:
        from minio.error import S3Error

        try:
            self.client.make_bucket(self.bucket)
        except S3Error as exc:
            if exc.code == "BucketAlreadyOwnedByYou":
                return  # created meanwhile, by another bench or MADSci
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
            raise

    # -- objects ---------------------------------------------------------------------------

    def stat(self, name: str, bucket: Optional[str] = None) -> Optional[ObjectInfo]:
        from minio.error import S3Error

        try:
            stat = self.client.stat_object(bucket or self.bucket, name)
        except S3Error as exc:
            if exc.code in _NO_OBJECT:
                return None
            raise
        return ObjectInfo(name=name, size=int(stat.size or 0),
                          etag=str(stat.etag or "").strip('"'),
                          content_type=str(stat.content_type or "application/octet-stream"),
                          metadata=_user_metadata(stat.metadata or {}))

    def put(self, name: str, data: bytes, *, content_type: str,
            metadata: Mapping[str, str]) -> None:
        self.client.put_object(self.bucket, name, io.BytesIO(data), len(data),
                               content_type=content_type, metadata=dict(metadata))

    def copy(self, source: str, target: str, *, content_type: str,
             metadata: Mapping[str, str]) -> None:
        from minio.commonconfig import REPLACE, CopySource

        # Metadata given explicitly: minio composes objects over 5 GiB part by part, and
        # a composed object would not inherit the source's metadata by itself.
        headers = {f"x-amz-meta-{k}": v for k, v in metadata.items()}
        headers["Content-Type"] = content_type
        self.client.copy_object(self.bucket, target, CopySource(self.bucket, source),
                                metadata=headers, metadata_directive=REPLACE)

    def remove(self, name: str) -> None:
        from minio.error import S3Error

        try:
            self.client.remove_object(self.bucket, name)
        except S3Error as exc:
            if exc.code not in _NO_OBJECT:
                raise

    def open_stream(self, bucket: str, name: str) -> ObjectStream:
        """urllib3's streaming response (``sync.fetch`` reads its socket directly)."""
        response: ObjectStream = self.client.get_object(bucket, name)
        return response

    # -- multipart -------------------------------------------------------------------------

    def create_multipart(self, name: str, *, content_type: str,
                         metadata: Mapping[str, str]) -> str:
        headers = {"Content-Type": content_type,
                   **{f"x-amz-meta-{k}": v for k, v in metadata.items()}}
        return str(self.client._create_multipart_upload(self.bucket, name, headers))

    def upload_part(self, name: str, upload_id: str, number: int, data: bytes) -> str:
        etag = self.client._upload_part(self.bucket, name, data, None, upload_id, number)
        return str(etag).strip('"')

    def list_parts(self, name: str, upload_id: str) -> Optional[list[PartInfo]]:
        from minio.error import S3Error

        try:
            listed = self.client._list_parts(self.bucket, name, upload_id, max_parts=10000)
        except S3Error as exc:
            if exc.code in _NO_UPLOAD:
                return None
            raise
        return [PartInfo(int(p.part_number), str(p.etag).strip('"'), int(p.size))
                for p in (listed.parts or [])]

    def complete_multipart(self, name: str, upload_id: str,
                           parts: Sequence[tuple[int, str]]) -> None:
        from minio.datatypes import Part

        self.client._complete_multipart_upload(
            self.bucket, name, upload_id, [Part(number, etag) for number, etag in parts])

    def abort_multipart(self, name: str, upload_id: str) -> None:
        from minio.error import S3Error

        try:
            self.client._abort_multipart_upload(self.bucket, name, upload_id)
        except S3Error as exc:
            if exc.code not in _NO_UPLOAD:
                raise

    def list_multipart_uploads(self, limit: int = 1000) -> list[UploadInfo]:
        result = self.client._list_multipart_uploads(self.bucket, max_uploads=limit)
        return [UploadInfo(str(u.object_name), str(u.upload_id), _initiated(u))
                for u in (result.uploads or [])]


def _initiated(upload: Any) -> Optional[datetime]:
    from datetime import timezone

    initiated = getattr(upload, "initiated_time", None)
    if initiated is not None and initiated.tzinfo is None:
        initiated = initiated.replace(tzinfo=timezone.utc)
    return initiated
