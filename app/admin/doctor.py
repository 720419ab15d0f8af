"""``benchdata doctor``: is this bench ready to capture? One line per check, with a fix.

Each check returns a ``Check`` (``OK`` / ``WARN`` / ``FAIL`` plus what to do). Checks never
raise: a check that blows up is itself a FAIL naming the error. Nothing here writes to the
store; the only write is a probe file in the data directory, removed at once.
"""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app import __version__
from app.core.paths import BenchPaths

OK, WARN, FAIL = "OK", "WARN", "FAIL"
#: Free space below this on the data directory's disk is a warning.
LOW_SPACE_BYTES = 1024 ** 3
#: How long a central-store probe may take.
CENTRAL_TIMEOUT_S = 3.0


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return text + (f"\n      -> {self.fix}" if self.fix and self.status != OK else "")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


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
        checks.append(Check(
            "data directory", FAIL,
            f"{data_dir} is not writable ({exc.strerror or exc})",
            "give the service's user write access to it, or point BENCHDATA_HOME / "
            "--data-dir at a writable folder"))
    try:
        usage = shutil.disk_usage(_nearest_existing(data_dir))
        free_gib = usage.free / 1024 ** 3
        if usage.free < LOW_SPACE_BYTES:
            checks.append(Check("free space", WARN, f"{free_gib:.2f} GiB free on the data disk",
                                "free disk space or move the data directory; captures fail "
                                "when the disk is full"))
        else:
            checks.append(Check("free space", OK, f"{free_gib:.1f} GiB free"))
    except OSError as exc:
        checks.append(Check("free space", WARN, f"cannot measure ({exc})"))
    return checks


def _open_ro(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=10)


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


def check_service(paths: BenchPaths) -> list[Check]:
    from app.admin.lock import describe_holder, is_locked

    try:
        holder = is_locked(paths)
    except OSError as exc:
        return [Check("service", WARN, f"cannot read the service lock ({exc})")]
    if holder is None:
        return [Check("service", OK, "no service is running on this store")]
    running = describe_holder(holder).removeprefix("another ")
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
        else:
            checks.append(Check(name, OK, f"{root} is reachable"))
    return checks


def _describe_central_error(exc: BaseException) -> tuple[str, str]:
    """(detail, fix) telling a wrong secret from an unreachable server."""
    from sync.faults import CentralConfigError

    if isinstance(exc, CentralConfigError):
        return str(exc), "fix the credentials/settings: benchdata sync configure"
    return str(exc), ("check that the server is up and reachable from this PC (network, "
                      "VPN, firewall); captures keep working and sync catches up later")


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
    checks: list[Check] = []
    from sync.central import CentralDatabase
    from sync.settings import redact_url

    assert settings.mongo_url is not None
    where = redact_url(settings.mongo_url.get_secret_value())
    try:
        with CentralDatabase(settings) as database:
            database.ping()
        checks.append(Check("central MongoDB", OK, f"{where} answers"))
    except Exception as exc:  # noqa: BLE001
        detail, fix = _describe_central_error(exc)
        checks.append(Check("central MongoDB", FAIL, f"{where}: {detail}", fix))
    if not settings.objects_configured:
        checks.append(Check("central object storage", WARN, "not fully configured",
                            "set endpoint, bucket and keys: benchdata sync configure"))
        return checks
    from sync.objects import ObjectStore

    try:
        with ObjectStore(settings) as objects:
            objects.check_access()
        checks.append(Check("central object storage", OK,
                            f"bucket {settings.bucket} at {settings.endpoint} is accessible"))
    except Exception as exc:  # noqa: BLE001
        detail, fix = _describe_central_error(exc)
        checks.append(Check("central object storage", FAIL, detail, fix))
    return checks


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
    check_data_dir, check_store, check_service, check_watch_folders, check_central,
    check_versions,
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
