"""``doctor``'s checks of the central store: MongoDB and the object storage, probed side by
side under one deadline, each failure named in a sentence (refused credentials, a missing
bucket, a host that does not resolve ...) with where to change the setting."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from app.admin.doctor.check import FAIL, OK, WARN, Check
from app.core.paths import BenchPaths

#: Socket timeouts of a central-store probe (connect, read, MongoDB server selection).
CENTRAL_TIMEOUT_S = 3.0
#: Longest a central-store probe may take, retries and name lookups included; MongoDB and
#: the object storage are probed at the same time.
PROBE_DEADLINE_S = 10.0


#: What to do when a central server cannot be reached.
UNREACHABLE_FIX = ("check that the server is up and reachable from this PC (network, VPN, "
                   "firewall) and that the host and port are right; captures keep working and "
                   "sync catches up later")

#: Phrases in a network error (any OS, pymongo or urllib3 wording) -> what they mean.
#: Order matters: pymongo's message mentions its configured timeouts whatever happened.
_NETWORK_REASONS: list[tuple[tuple[str, ...], str]] = [
    (("connection refused", "actively refused", "errno 111", "winerror 10061", "errno 61"),
     "connection refused: nothing listens on that port"),
    (("name or service not known", "nodename nor servname", "getaddrinfo failed",
      "temporary failure in name resolution", "no address associated", "name resolution"),
     "the host name does not resolve"),
    (("certificate verify failed", "certificate_verify_failed"),
     "the server's TLS certificate is not trusted (set a CA file, or check the host name)"),
    (("wrong version number", "unknown protocol", "record layer failure"),
     "TLS mismatch: turn `secure` off for a plain-HTTP server, or on for an HTTPS one"),
    (("network is unreachable", "no route to host", "host is unreachable"),
     "no network route to the server"),
    # pymongo says "No servers found yet" when a server accepted but never answered.
    (("timed out", "no servers found yet"), "no answer in time"),
]


def _exception_text(exc: BaseException) -> str:
    """The messages of an exception and everything it was raised from."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " | ".join(texts)


def network_reason(exc: BaseException) -> str:
    """One short phrase for why a server could not be reached."""
    text = _exception_text(exc).lower()
    for phrases, reason in _NETWORK_REASONS:
        if any(phrase in text for phrase in phrases):
            if reason == "no answer in time":
                return f"no answer within {CENTRAL_TIMEOUT_S:g} s"
            return reason
    innermost = exc
    while innermost.__cause__ is not None:
        innermost = innermost.__cause__
    return type(innermost).__name__


def _where_to_change(field: str) -> str:
    """Where the setting ``field`` comes from, so the fix names the right place."""
    from sync.settings import ENV_VARS

    for variable, name in ENV_VARS.items():
        if name == field and os.environ.get(variable):
            return (f"{variable} is set in this environment and overrides the saved settings: "
                    "correct it or unset it")
    return "run `benchdata sync configure` as the user the service runs as"


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code behind ``exc`` (it may be wrapped in one of our errors)."""
    from minio.error import S3Error

    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, S3Error):
            return str(current.code)
        current = current.__cause__
    return None


def _signature_probe(objects: Any) -> str | None:
    """The S3 error code of a signed GET on the bucket, or None if it succeeds.

    A HEAD (``bucket_exists``) answers a wrong secret with a bare 403 "AccessDenied"; a
    GET carries the server's reason (``SignatureDoesNotMatch``, ``InvalidAccessKeyId``)."""
    from minio.error import S3Error

    try:
        next(iter(objects.client.list_objects(objects.bucket, prefix="benchdata-doctor-probe/")),
             None)
    except S3Error as exc:
        return str(exc.code)
    return None


class _RefusedCredentials(Exception):
    """The server named the credentials as the problem (its S3 error code)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _object_storage_check(settings: Any) -> Check:
    from sync.faults import CentralConfigError, RetryableError
    from sync.objects import ObjectStore

    name = "central object storage"
    where = settings.endpoint_url
    bucket = settings.bucket
    access_key = settings.access_key
    try:
        with ObjectStore(settings) as objects:
            try:
                objects.check_access()
            except CentralConfigError as exc:
                if _s3_code(exc) in ("AccessDenied", "Forbidden"):
                    code = _signature_probe(objects)
                    if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId"):
                        raise _RefusedCredentials(code) from exc
                raise
    except _RefusedCredentials as exc:
        if exc.code == "InvalidAccessKeyId":
            return Check(name, FAIL,
                         f"{where} refused the credentials: access key {access_key!r} is not "
                         f"known there ({exc.code})",
                         "set the right access key and secret key: "
                         + _where_to_change("access_key"))
        return Check(name, FAIL,
                     f"{where} refused the credentials: the secret key does not match access "
                     f"key {access_key!r} ({exc.code})",
                     f"set the right secret key for access key {access_key!r}: "
                     + _where_to_change("secret_key"))
    except CentralConfigError as exc:
        code = _s3_code(exc)
        if code in ("AccessDenied", "Forbidden"):
            return Check(name, FAIL,
                         f"{where} accepted access key {access_key!r} but denied it bucket "
                         f"{bucket} ({code})",
                         f"give that key read/write access to bucket {bucket} (bucket policy "
                         "or IAM), or use keys that have it")
        if "does not exist" in str(exc) or code == "NoSuchBucket":
            return Check(name, FAIL, f"bucket {bucket!r} does not exist at {where}",
                         "create the bucket, or fix the bucket name: "
                         + _where_to_change("bucket"))
        return Check(name, FAIL, f"{where}: {exc}",
                     "fix the object storage settings: " + _where_to_change("endpoint"))
    except RetryableError as exc:
        if _s3_code(exc) is not None:  # it answered, with a server-side error
            return Check(name, FAIL, f"{where} answered with an error: {exc}",
                         "the object storage server reports a problem; check its logs")
        return Check(name, FAIL,
                     f"cannot reach object storage at {where} ({network_reason(exc)})",
                     UNREACHABLE_FIX)
    except Exception as exc:  # noqa: BLE001 - anything else is a finding, not a crash
        return Check(name, FAIL, f"{where}: {type(exc).__name__}: {exc}",
                     "check the endpoint: it must be the S3 API of the object storage")
    return Check(name, OK, f"bucket {bucket} at {where} is accessible")


def _mongo_check(settings: Any) -> Check:
    from sync.central import CentralDatabase
    from sync.faults import CentralConfigError, SyncError, classify_mongo
    from sync.settings import redact_url

    name = "central MongoDB"
    where = redact_url(settings.mongo_url.get_secret_value())
    try:
        with CentralDatabase(settings) as database:
            database.ping()
            try:  # ping needs no rights; reading the collection does
                database.datapoints.find_one({}, {"_id": 1})
            except Exception as exc:
                raise classify_mongo(exc, what="reading the datapoints") from exc
    except CentralConfigError as exc:
        return Check(name, FAIL, f"{where}: {exc}",
                     "fix the MongoDB URL (user, password, database): "
                     + _where_to_change("mongo_url"))
    except SyncError as exc:
        if "cannot reach" in str(exc) or _is_network_error(exc):
            return Check(name, FAIL, f"{where}: cannot reach MongoDB ({network_reason(exc)})",
                         UNREACHABLE_FIX)
        return Check(name, FAIL, f"{where}: {exc}", "check the MongoDB server and its logs")
    except Exception as exc:  # noqa: BLE001
        return Check(name, FAIL, f"{where}: {type(exc).__name__}: {exc}",
                     "fix the MongoDB URL: " + _where_to_change("mongo_url"))
    return Check(name, OK, f"{where} answers (database {settings.mongo_database})")


def _is_network_error(exc: BaseException) -> bool:
    text = _exception_text(exc).lower()
    return any(phrase in text for phrases, _ in _NETWORK_REASONS for phrase in phrases)


def run_with_deadline(probes: list[tuple[str, Callable[[], Check]]],
                      deadline_s: float) -> list[Check]:
    """Run the probes side by side; one that has not finished after ``deadline_s`` is a FAIL.

    Socket timeouts bound most waits, but not a name lookup (``getaddrinfo``) against a dead
    DNS server, nor a driver's own retries: the deadline bounds everything. A probe still
    running is left behind in a daemon thread (doctor is a short-lived command)."""
    results: dict[int, Check] = {}

    def run(index: int, name: str, probe: Callable[[], Check]) -> None:
        try:
            results[index] = probe()
        except BaseException as exc:  # noqa: BLE001 - reported below, never raised
            results[index] = Check(name, FAIL,
                                   f"the check itself failed: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(index, name, probe), daemon=True,
                                name=f"doctor-{name}")
               for index, (name, probe) in enumerate(probes)]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline_s
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return [results.get(index) or Check(name, FAIL, f"no answer within {deadline_s:g} s",
                                        UNREACHABLE_FIX)
            for index, (name, _probe) in enumerate(probes)]


def _known_secrets(settings: Any) -> list[str]:
    from urllib.parse import urlsplit

    secrets = []
    if settings.secret_key is not None:
        secrets.append(settings.secret_key.get_secret_value())
    if settings.mongo_url is not None:
        try:
            password = urlsplit(settings.mongo_url.get_secret_value()).password
        except ValueError:
            password = None
        if password:
            secrets.append(password)
    # A very short secret would mask innocent letters everywhere; none is that short.
    return [secret for secret in secrets if len(secret) >= 4]


def check_central(paths: BenchPaths) -> list[Check]:
    try:
        from sync.settings import load_settings

        settings = load_settings(paths)
    except Exception as exc:  # noqa: BLE001
        return [Check("central store", FAIL, f"the central settings are invalid: {exc}",
                      "benchdata sync configure")]
    if not settings.configured:
        return [Check("central store", OK, "not configured (local only)")]
    settings = settings.model_copy(update={"timeout_s": CENTRAL_TIMEOUT_S})
    probes: list[tuple[str, Callable[[], Check]]] = [
        ("central MongoDB", lambda: _mongo_check(settings))]
    if settings.objects_configured:
        probes.append(("central object storage", lambda: _object_storage_check(settings)))
    checks = run_with_deadline(probes, PROBE_DEADLINE_S)
    if not settings.objects_configured:
        checks.append(Check("central object storage", WARN, "not fully configured",
                            "set endpoint, bucket and keys: benchdata sync configure"))
    # No secret may reach the screen, whatever a driver put in its error message.
    from app.admin.logs import redact

    secrets = _known_secrets(settings)
    return [Check(c.name, c.status, redact(c.detail, secrets), redact(c.fix, secrets))
            for c in checks]
