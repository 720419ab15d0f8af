"""``doctor``'s checks of the store: the database's integrity and schema, an interrupted
restore, the stored files (present and intact, or kept centrally), and the last scrub.

The store is read over a read-only connection (it works on a full disk, and doctor never
writes to the store); what a row's custody says comes from ``app.core.custody``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.admin.doctor.check import FAIL, OK, WARN, Check
from app.core.paths import BenchPaths


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


def _check_interrupted_restore(paths: BenchPaths) -> list[Check]:
    from app.admin.backup import STAGING_NAME
    from app.admin.lock import is_locked

    staging = paths.data_dir / STAGING_NAME
    if not staging.exists() or is_locked(paths) is not None:  # none, or one running now
        return []
    return [Check("restore", WARN, f"a restore was interrupted ({staging} is left); the "
                  "store is the one from before it",
                  "run `benchdata restore --force SRC` again, or delete that folder")]


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
    from app.core.custody import file_blobs_to_check

    conn = _open_ro(paths.database)
    try:
        rows = file_blobs_to_check(conn, None if full else BLOB_SAMPLE_ROWS)
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
