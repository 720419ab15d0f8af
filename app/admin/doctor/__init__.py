"""``benchdata doctor``: is this bench ready to capture? One line per check, with a fix.

Each check returns a ``Check`` (``OK`` / ``WARN`` / ``FAIL`` plus what to do). Checks never
raise: a check that blows up is itself a FAIL naming the error. Nothing here writes to the
store; the only write is a probe file in the data directory, removed at once.

The checks are grouped by what they look at: ``local`` (this PC, the service, watched
folders), ``storage`` (the store and its files), ``central`` (MongoDB and object storage);
``check`` is what each returns.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from app.admin.doctor.central import check_central, network_reason, run_with_deadline
from app.admin.doctor.check import FAIL, OK, WARN, Check
from app.admin.doctor.local import (
    check_data_dir,
    check_free_space,
    check_interrupted_captures,
    check_service,
    check_versions,
    check_watch_folders,
)
from app.admin.doctor.storage import check_all_blobs, check_blobs, check_scrub, check_store
from app.core.paths import BenchPaths

__all__ = ["CHECKS", "FAIL", "OK", "WARN", "Check", "as_json", "check_all_blobs",
           "check_blobs", "check_free_space", "network_reason", "run_checks",
           "run_with_deadline"]


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
