"""``benchdata doctor``: is this bench ready to capture? One line per check, with a fix.

Each check returns a ``Check`` (``OK`` / ``WARN`` / ``FAIL`` plus what to do). Checks never
raise: a check that blows up is itself a FAIL naming the error. Nothing here writes to the
store; the only write is a probe file in the data directory, removed at once.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from app import __version__
from app.core.errors import is_disk_full
from app.core.paths import BenchPaths

OK, WARN, FAIL = "OK", "WARN", "FAIL"
#: Socket timeouts of a central-store probe (connect, read, MongoDB server selection).
CENTRAL_TIMEOUT_S = 3.0
#: Longest a central-store probe may take, retries and name lookups included; MongoDB and
#: the object storage are probed at the same time.
PROBE_DEADLINE_S = 10.0


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return text + (f"\n      -> {self.fix}" if self.fix and self.status != OK else "")


def check_data_dir(paths: BenchPaths) -> list[Check]:
    data_dir = paths.data_dir
    checks: list[Check] = []
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".doctor-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
        checks.append(Check("data directory", OK, f"{data_dir} is writable"))
    except OSError as exc:
        if is_disk_full(exc):
            checks.append(Check("data directory", FAIL, f"{data_dir} is on a full disk",
                                "free space on it (see free space below)"))
            checks.append(check_free_space(paths))
            return checks
        checks.append(Check(
            "data directory", FAIL,
            f"{data_dir} is not writable ({exc.strerror or exc})",
            "give the service's user write access to it, or point BENCHDATA_HOME / "
            "--data-dir at a writable folder"))
    checks.append(check_free_space(paths))
    return checks


def check_free_space(paths: BenchPaths) -> Check:
    """Free space against the ``disk`` settings' threshold: a warning before it is full."""
    from app.core.diskspace import disk_space

    try:
        space = disk_space(paths)
    except OSError as exc:
        return Check("free space", WARN, f"cannot measure ({exc})")
    if space.full:
        return Check("free space", FAIL, space.describe(),
                     "free disk space or move the data directory; until then the service "
                     "runs read-only and captures are refused")
    if space.low:
        return Check("free space", WARN, space.describe(),
                     "free disk space or move the data directory; captures fail when the "
                     "disk is full (threshold: the disk section's low_space_mb setting)")
    return Check("free space", OK, space.describe())


def _open_ro(database: Path) -> sqlite3.Connection:
    """A read-only connection that works on a full disk too (see ``read_only_uris``)."""
    from app.core.readpool import read_only_uris

    uris = read_only_uris(database)
    for index, uri in enumerate(uris):
        conn = sqlite3.connect(uri, uri=True, timeout=10)
        try:
            conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error:
            conn.close()
            if index == len(uris) - 1:
                raise
            continue
        return conn
    raise sqlite3.OperationalError(f"cannot open {database}")


def check_store(paths: BenchPaths) -> list[Check]:
    from app.core.schema import SCHEMA_VERSION

    database = paths.database
    if not database.exists():
        return [Check("store", WARN, f"no store yet at {database}",
                      "it is created by the first capture (or `benchdata info`)")]
    checks: list[Check] = []
    try:
        conn = _open_ro(database)
    except sqlite3.Error as exc:
        return [Check("store integrity", FAIL, f"cannot open {database}: {exc}",
                      "restore it from a backup (benchdata restore SRC)")]
    try:
        try:
            result = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
            if result == "ok":
                checks.append(Check("store integrity", OK, "PRAGMA integrity_check: ok"))
            else:
                checks.append(Check("store integrity", FAIL, f"integrity_check: {result}",
                                    "stop the service and restore from a backup "
                                    "(benchdata restore SRC)"))
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            return [Check("store integrity", FAIL, f"{database}: {exc}",
                          "restore it from a backup (benchdata restore SRC)")]
    finally:
        conn.close()
    checks.extend(_check_interrupted_restore(paths))
    if version == SCHEMA_VERSION:
        checks.append(Check("schema version", OK, f"{version}"))
    elif version < SCHEMA_VERSION:
        checks.append(Check("schema version", WARN, f"{version}, this app uses {SCHEMA_VERSION}",
                            "it is upgraded when the service or any command opens the store"))
    else:
        checks.append(Check("schema version", FAIL,
                            f"{version} was written by a newer app (this one: {SCHEMA_VERSION})",
                            "upgrade Bench Data Manager on this PC"))
    return checks


#: Rows whose file ``doctor`` checks by default (a random sample); ``--full`` checks all.
BLOB_SAMPLE_ROWS = 200
#: Bytes of those files re-hashed by default; beyond it, a sampled file is only looked for.
BLOB_SAMPLE_HASH_BYTES = 256 * 1024 * 1024


def _blob_path(paths: BenchPaths, sha256: str) -> Path:
    """Where the file store keeps a blob (``FileStore.path_for``; doctor opens no
    FileStore, whose constructor writes)."""
    return paths.files / "blobs" / sha256[:2] / sha256[2:4] / sha256


def _sha256_of(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as blob:
        while chunk := blob.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def check_blobs(paths: BenchPaths, *, full: bool = False) -> list[Check]:
    """Every (sampled) file datapoint's blob is in the file store and hashes to its name.

    A missing blob is fine only when its copy is verified central (sync freed it, and
    fetches it again on demand); a damaged one is never fine."""
    name = "stored files" + (" (all)" if full else "")
    if not paths.database.exists():
        return []
    from app.core.rows import file_blob_rows

    conn = _open_ro(paths.database)
    try:
        rows = file_blob_rows(conn, None if full else BLOB_SAMPLE_ROWS)
    finally:
        conn.close()
    if not rows:
        return [Check(name, OK, "no files stored yet")]
    missing: list[str] = []
    damaged: list[str] = []
    central_only = hashed = 0
    budget = None if full else BLOB_SAMPLE_HASH_BYTES
    for datapoint_id, sha256, verified_central in rows:
        path = _blob_path(paths, sha256)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            if verified_central:
                central_only += 1
            else:
                missing.append(datapoint_id)
            continue
        if budget is not None:
            if size > budget:
                continue
            budget -= size
        hashed += 1
        if _sha256_of(path) != sha256:
            damaged.append(datapoint_id)
    checked = f"{len(rows)} file datapoint(s)" + ("" if full else " sampled")
    problems = []
    if missing:
        problems.append(f"{len(missing)} file(s) missing (e.g. datapoint {missing[0]})")
    if damaged:
        problems.append(f"{len(damaged)} file(s) damaged, their content no longer matches "
                        f"their SHA-256 (e.g. datapoint {damaged[0]})")
    if problems:
        return [Check(name, FAIL, f"{checked}: " + "; ".join(problems),
                      "restore the store from a backup (benchdata restore --force SRC), or "
                      "let sync fetch files whose central copy is verified; then run "
                      "`benchdata doctor --full`")]
    detail = f"{checked}: present, {hashed} re-hashed and intact"
    if central_only:
        detail += f", {central_only} kept only centrally (verified)"
    return [Check(name, OK, detail)]


def check_scrub(paths: BenchPaths) -> list[Check]:
    """The last scrub's result (``benchdata verify``, or the one ``benchdata run`` runs)."""
    from app.core.custody import describe_scrub, last_scrub_from

    if not paths.database.exists():
        return []
    conn = _open_ro(paths.database)
    try:
        run = last_scrub_from(conn)
    finally:
        conn.close()
    detail = describe_scrub(run)
    if run is None or run.get("ok"):
        return [Check("last verify", OK, detail)]
    status = FAIL if run.get("problems", 0) > run.get("repaired", 0) else WARN
    ids = ", ".join(run.get("problem_ids") or [])
    return [Check("last verify", status, detail + (f" (datapoints {ids})" if ids else ""),
                  "run `benchdata verify --central --repair` to heal from verified copies")]


def check_all_blobs(paths: BenchPaths) -> list[Check]:
    """``check_blobs`` over every file datapoint, every file re-hashed (``--full``)."""
    return check_blobs(paths, full=True)


def _check_interrupted_restore(paths: BenchPaths) -> list[Check]:
    from app.admin.backup import STAGING_NAME
    from app.admin.lock import is_locked

    staging = paths.data_dir / STAGING_NAME
    if not staging.exists() or is_locked(paths) is not None:  # none, or one running now
        return []
    return [Check("restore", WARN, f"a restore was interrupted ({staging} is left); the "
                  "store is the one from before it",
                  "run `benchdata restore --force SRC` again, or delete that folder")]


def check_interrupted_captures(paths: BenchPaths) -> list[Check]:
    """Captures a crash cut short (app/core/capture_notes.py): the operator decides."""
    from app.core.capture_notes import CaptureNotes

    notes = CaptureNotes(paths.files).interrupted()
    if not notes:
        return [Check("interrupted captures", OK, "none")]
    watched = sum(note.watched for note in notes)
    detail = f"{len(notes)} capture(s) were cut short by a crash"
    if watched:
        detail += f" ({watched} from watched folders, which the watcher captures again)"
    return [Check("interrupted captures", WARN, detail,
                  "see `benchdata interrupted`; capture them again with --retry ID or "
                  "forget them with --dismiss ID")]


def check_service(paths: BenchPaths) -> list[Check]:
    from app.admin.lock import describe_holder, is_locked

    try:
        holder = is_locked(paths)
    except OSError as exc:
        return [Check("service", WARN, f"cannot read the service lock ({exc})")]
    if holder is None:
        return [Check("service", OK, "no service is running on this store")]
    running = describe_holder(holder).removeprefix("another ")
    if holder.get("degraded"):
        return [Check("service", WARN, f"a {running} is running degraded: "
                      f"{holder['degraded']}", "free space on the data disk; capture "
                      "resumes by itself")]
    return [Check("service", OK, f"a {running} is running on this store")]


def check_watch_folders(paths: BenchPaths) -> list[Check]:
    try:
        from app.ingest.rules import load_rules

        rules = load_rules(paths)
    except Exception as exc:  # noqa: BLE001 - broken config is a finding, not a crash
        return [Check("watched folders", FAIL, f"cannot read the watch rules: {exc}",
                      "fix them with `benchdata watch` or edit the config file")]
    if not rules:
        return [Check("watched folders", OK, "none configured")]
    checks = []
    for rule in rules:
        name = f"watched folder {rule.name or rule.id}"
        root = rule.root
        if not getattr(rule, "enabled", True):
            checks.append(Check(name, OK, f"{root} (paused)"))
        elif not root.is_dir():
            checks.append(Check(name, FAIL, f"{root} does not exist or is not a folder",
                                "mount the share / connect the drive, or fix the rule "
                                "(benchdata watch)"))
        elif not os.access(root, os.R_OK | os.X_OK):
            checks.append(Check(name, FAIL, f"{root} is not readable by this user",
                                "give the service's user read access"))
        elif (unusable := _profile_problem(rule)) is not None:
            checks.append(Check(name, FAIL, unusable,
                                "install the plugin, or choose another profile "
                                "(benchdata watch edit RULE --profile ...)"))
        else:
            checks.append(Check(name, OK, f"{root} is reachable"))
    return checks


def _profile_problem(rule: Any) -> Optional[str]:
    """Why the rule's completeness profile cannot run (nothing is captured then), or None."""
    try:
        rule.check_profile()
    except Exception as exc:  # noqa: BLE001 - a missing or broken plugin is a finding
        return f"nothing is captured: {exc}"
    return None


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


def _qt_version() -> str | None:
    """PySide6's Qt version if it is installed, without starting Qt (no import of Qt here:
    the architecture test keeps PySide6 out of this layer)."""
    from importlib import metadata, util

    for distribution in ("PySide6", "PySide6-Essentials"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    # A frozen bundle carries the package but not its metadata.
    return "(version unknown)" if util.find_spec("PySide6") is not None else None


def check_versions(_paths: BenchPaths) -> list[Check]:
    qt = _qt_version()
    detail = (f"Bench Data Manager {__version__}, Python {platform.python_version()}, "
              f"SQLite {sqlite3.sqlite_version}, "
              + (f"PySide6 {qt}" if qt else "PySide6 not installed (no desktop window)"))
    return [Check("versions", OK, detail)]


CHECKS: list[Callable[[BenchPaths], list[Check]]] = [
    check_data_dir, check_store, check_blobs, check_scrub, check_interrupted_captures,
    check_service, check_watch_folders,
    check_central, check_versions,
]


def run_checks(paths: BenchPaths,
               checks: list[Callable[[BenchPaths], list[Check]]] | None = None) -> list[Check]:
    results: list[Check] = []
    for check in checks if checks is not None else CHECKS:
        try:
            results.extend(check(paths))
        except Exception as exc:  # noqa: BLE001 - a broken check is a finding
            results.append(Check(check.__name__.removeprefix("check_").replace("_", " "),
                                 FAIL, f"the check itself failed: {type(exc).__name__}: {exc}"))
    return results


def as_json(results: list[Check]) -> dict[str, Any]:
    return {"ok": not any(c.status == FAIL for c in results),
            "python": sys.version.split()[0],
            "checks": [asdict(c) for c in results]}
