"""What went wrong, sorted by what the engine should do about it.

* :class:`RetryableError` — the network, a timeout, a 5xx, a server that is down: back off
  with jitter and try again; other items carry on.
* :class:`RejectedError` — the server refused *this item* (a 4xx, a document MongoDB will
  not store, an object too large for the bucket policy, a damaged local copy): quarantine
  it with the reason; the user fixes the cause and retries.
* :class:`CentralConfigError` — the settings are wrong (bad secret, missing bucket, bad
  URL): nothing can succeed until a person changes them, so the engine stops and says so
  instead of retrying forever.
"""

from __future__ import annotations

from typing import Final

from app.core.errors import BenchDataError


class SyncError(BenchDataError):
    """Base of the sync engine's errors."""


class RetryableError(SyncError):
    """A transient failure; the same request may well succeed later."""


class RejectedError(SyncError):
    """The central store refused this item; retrying unchanged will not help."""


class CentralConfigError(SyncError):
    """The central store's settings are wrong; a person must fix them."""


#: S3 error codes that mean the credentials or the bucket settings are wrong.
S3_CONFIG_CODES: Final[frozenset[str]] = frozenset({
    "SignatureDoesNotMatch", "InvalidAccessKeyId", "NoSuchBucket", "AuthorizationHeaderMalformed",
    "InvalidBucketName", "AllAccessDisabled", "AccountProblem", "InvalidToken",
    "ExpiredToken", "InvalidSecurity", "PermanentRedirect", "NotSignedUp",
})
#: S3 error codes worth retrying.
S3_RETRY_CODES: Final[frozenset[str]] = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "OperationAborted",
    "RequestTimeTooSkewed", "ServerError", "XMinioServerNotInitialized", "503 Slow Down",
})
#: MongoDB write error codes that are transient.
MONGO_RETRY_CODES: Final[frozenset[int]] = frozenset({
    6, 7, 64, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 50, 112, 117,
})
#: MongoDB codes that mean the credentials or permissions are wrong.
MONGO_CONFIG_CODES: Final[frozenset[int]] = frozenset({13, 18, 8000, 31, 11})


def classify_s3(exc: BaseException, *, what: str) -> SyncError:
    """Map a minio/urllib3 exception to one of our three kinds."""
    from minio.error import InvalidResponseError, S3Error, ServerError
    from urllib3.exceptions import HTTPError

    if isinstance(exc, S3Error):
        status = exc.response.status if exc.response is not None else 0
        message = f"{what}: {exc.code} ({exc.message})"
        if exc.code in S3_CONFIG_CODES:
            return CentralConfigError(
                f"object storage refused the credentials or bucket — {message}; check the "
                "endpoint, bucket, access key and secret key (benchdata sync configure)")
        if exc.code in S3_RETRY_CODES or status >= 500 or status == 429:
            return RetryableError(message)
        return RejectedError(message)
    if isinstance(exc, ServerError):
        return RetryableError(f"{what}: server error {exc.status_code}")
    if isinstance(exc, InvalidResponseError):
        status = getattr(exc, "_code", 0) or 0
        return RetryableError(f"{what}: {exc}") if not 400 <= int(status) < 500 else \
            RejectedError(f"{what}: {exc}")
    if isinstance(exc, (HTTPError, OSError, TimeoutError)):
        return RetryableError(f"{what}: cannot reach object storage ({type(exc).__name__}: {exc})")
    return RetryableError(f"{what}: {type(exc).__name__}: {exc}")


def classify_mongo(exc: BaseException, *, what: str) -> SyncError:
    """Map a pymongo exception (not a per-document write error) to our kinds."""
    from bson.errors import InvalidDocument
    from pymongo import errors

    if isinstance(exc, (errors.DocumentTooLarge, InvalidDocument)):
        return RejectedError(f"{what}: MongoDB cannot store it ({exc})")
    if isinstance(exc, errors.ConfigurationError) or isinstance(exc, errors.InvalidURI):
        return CentralConfigError(f"{what}: the MongoDB URL is not usable ({exc}); "
                                  "fix BENCHDATA_MONGO_URL or `benchdata sync configure`")
    if isinstance(exc, errors.OperationFailure) and exc.code in MONGO_CONFIG_CODES:
        return CentralConfigError(f"{what}: MongoDB refused the credentials or permissions "
                                  f"({exc.code}: {exc.details or exc}); fix the MongoDB URL")
    if isinstance(exc, (errors.ConnectionFailure, errors.ServerSelectionTimeoutError,
                        errors.NetworkTimeout, errors.ExecutionTimeout, errors.WTimeoutError)):
        return RetryableError(f"{what}: cannot reach MongoDB ({type(exc).__name__})")
    if isinstance(exc, errors.OperationFailure):
        if exc.code in MONGO_RETRY_CODES or exc.has_error_label("RetryableWriteError"):
            return RetryableError(f"{what}: {exc}")
        return RejectedError(f"{what}: MongoDB refused it ({exc.code}: {exc})")
    if isinstance(exc, errors.PyMongoError):
        return RetryableError(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, (OSError, TimeoutError)):
        return RetryableError(f"{what}: {type(exc).__name__}: {exc}")
    return RetryableError(f"{what}: {type(exc).__name__}: {exc}")


def classify_write_error(code: int, message: str, *, what: str) -> SyncError:
    """A per-document error from a bulk write."""
    if code in MONGO_RETRY_CODES:
        return RetryableError(f"{what}: {message}")
    if code in MONGO_CONFIG_CODES:
        return CentralConfigError(f"{what}: MongoDB refused the write ({message}); check the "
                                  "MongoDB user's permissions")
    return RejectedError(f"{what}: MongoDB refused the document ({code}: {message})")
