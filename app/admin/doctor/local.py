"""``doctor``'s checks of this PC: the data directory and its disk, the service running on
the store, the watched folders, captures a crash cut short, and the versions in use."""

from __future__ import annotations

import os
import platform
import sqlite3
import uuid
from typing import Any, Optional

from app import __version__
from app.admin.doctor.check import FAIL, OK, WARN, Check
from app.core.errors import is_disk_full
from app.core.paths import BenchPaths


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
