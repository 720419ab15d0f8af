"""What went wrong, sorted by what the engine should do about it.

* :class:`RetryableError` — the network, a timeout, a 5xx, a server that is down: back off
  with jitter and try again; other items carry on.
* :class:`RejectedError` — the server refused *this item* (a 4xx, a document MongoDB will
  not store, an object too large for the bucket policy, a damaged local copy): quarantine
  it with the reason; the user fixes the cause and retries.
* :class:`CentralConfigError` — the settings are wrong (bad secret, missing bucket, bad
  URL, a server certificate this bench does not trust): nothing can succeed until a person
  changes them, so the engine stops and says so instead of retrying forever.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterator, Mapping
from typing import Any, Final, Optional

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
#: A unique index already holds this key.
DUPLICATE_KEY: Final = 11000
#: The index a duplicate-key message names: MongoDB/FerretDB "index: name dup key",
#: nx-27017 "index 'name'".
_DUPLICATE_INDEX = re.compile(r"\bindex:? '?([^'\s]+)")
#: nx-27017's wording for the primary key: "UNIQUE constraint failed: <collection>._id".
_DUPLICATE_PRIMARY = re.compile(r"constraint failed: \S*\._id\b")

#: How OpenSSL says a certificate did not verify; pymongo keeps only the text of the error.
_CERT_FAILED_TEXT = "certificate verify failed"
CA_HINT = ("if the lab uses its own certificate authority, set ca_file to its CA bundle "
           "(BENCHDATA_CA_FILE or `benchdata sync configure --ca-file`)")


def certificate_problem(exc: BaseException) -> Optional[str]:
    """Why a server's TLS certificate was refused, if that is what ``exc`` comes down to.

    Walks the causes (urllib3 nests the ``ssl`` error in ``MaxRetryError.reason`` and in
    ``args``); pymongo only keeps the message, so its text is checked too. An untrusted
    or mismatched certificate will not fix itself: it is a configuration error, not a
    network fault to retry.
    """
    for current in _causes(exc):
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason or current)
        if _CERT_FAILED_TEXT in str(current).lower():
            return _cert_reason(str(current))
    return None


def speaks_no_tls(exc: BaseException) -> bool:
    """Whether ``exc`` comes down to a TLS handshake answered in plain text: "secure" is on
    for a server (or port) that only speaks HTTP. That will not fix itself either."""
    return any(getattr(current, "reason", None) == "WRONG_VERSION_NUMBER"
               or "wrong version number" in str(current).lower() for current in _causes(exc))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps (causes, contexts, urllib3's ``reason``, args)."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None),
                        *current.args])


def _cert_reason(text: str) -> str:
    """The words after OpenSSL's "certificate verify failed:" (or the whole first line)."""
    line = text.splitlines()[0] if text else text
    lowered = line.lower()
    start = lowered.find(_CERT_FAILED_TEXT)
    reason = line[start + len(_CERT_FAILED_TEXT):].lstrip(": ")
    return reason.split(" (", 1)[0].strip() or line[:200]


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
    untrusted = certificate_problem(exc)
    if untrusted is not None:
        return CentralConfigError(f"{what}: object storage's TLS certificate was refused "
                                  f"({untrusted}); {CA_HINT}")
    if speaks_no_tls(exc):
        return CentralConfigError(
            f"{what}: object storage does not speak TLS at this endpoint, but HTTPS is on; "
            "turn it off (\"Use HTTPS\" in Settings, OBJECT_STORAGE_SECURE=false, or "
            "benchdata sync configure --insecure) or use the server's HTTPS port")
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
    untrusted = certificate_problem(exc)
    if untrusted is not None:
        return CentralConfigError(f"{what}: MongoDB's TLS certificate was refused "
                                  f"({untrusted}); {CA_HINT}")
    if speaks_no_tls(exc):
        return CentralConfigError(f"{what}: MongoDB does not speak TLS there, but the URL asks "
                                  "for it (tls=true); fix the MongoDB URL")
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


def duplicate_key_on_id(error: Mapping[str, Any]) -> bool:
    """Whether a duplicate-key write error is on ``_id`` (a record of the same datapoint).

    On ``_id`` it means the central record already has our revision or a newer one: a
    conflict between writers, resolved by revision. On any other unique index (one the
    lab added, say one record per instrument run) the server refuses this document: no
    revision will change that, a person must. MongoDB names the index's keys in
    ``keyPattern``; other servers only in the message. Wording we cannot read counts as
    ``_id``, the engine's long-standing assumption.
    """
    pattern = error.get("keyPattern")
    if isinstance(pattern, Mapping) and pattern:
        return list(pattern) == ["_id"]
    message = str(error.get("errmsg") or "")
    if _DUPLICATE_PRIMARY.search(message):
        return True
    named = _DUPLICATE_INDEX.search(message)
    return named is None or named.group(1) == "_id_"


def duplicate_key_rejection(error: Mapping[str, Any], *, what: str) -> RejectedError:
    """The reason a person reads for a document another unique index refuses."""
    message = str(error.get("errmsg") or "duplicate key")
    keys = error.get("keyValue")  # MongoDB says which value; nx-27017 does not
    detail = ""
    if isinstance(keys, Mapping) and keys:
        detail = f" (duplicate {json.dumps(keys, default=str, ensure_ascii=False)[:200]})"
    return RejectedError(
        f"{what}: MongoDB refused the document: a unique index of the central collection "
        f"already holds the same value{detail} — {DUPLICATE_KEY}: {message}. Change this "
        "datapoint (e.g. its metadata), or ask the data steward, then retry")


def classify_write_error(code: int, message: str, *, what: str) -> SyncError:
    """A per-document error from a bulk write."""
    if code in MONGO_RETRY_CODES:
        return RetryableError(f"{what}: {message}")
    if code in MONGO_CONFIG_CODES:
        return CentralConfigError(f"{what}: MongoDB refused the write ({message}); check the "
                                  "MongoDB user's permissions")
    return RejectedError(f"{what}: MongoDB refused the document ({code}: {message})")
