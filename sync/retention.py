"""Retention: free local copies of files whose central copy is verified, and say what a
wiped instrument PC would lose.

One policy behind ``benchdata purge`` and the service (``free_verified_after_days`` in the
``central`` settings, used by every sync pass): a blob is freed when every live row that
uses it is verified central (its custody receipt,
:func:`app.core.custody.verified_central_sql`) and the upload was verified more than N days
ago (``sync_objects.verified_at``). The record stays; the file is fetched again, verified,
on request (:mod:`sync.fetch`). Nothing unverified is freed, and freeable is checked again
under the blob's lock (:func:`sync.localrows.free_blob_if_freeable`).

The facility may lock ``central.free_verified_after_days`` (app/core/site.py); a purge by
hand then frees nothing younger than the locked age.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Optional

from app.core import custody
from app.core.errors import ValidationError
from app.core.site import is_locked, load_site, site_config_file
from app.core.syncstate import SyncState
from app.core.timestamps import format_canonical, parse_timestamp, utc_now
from app.service import BenchService
from sync import localrows

log = logging.getLogger(__name__)

SETTING = "free_verified_after_days"


@dataclass(frozen=True)
class AtRisk:
    """A datapoint only this bench holds: lost if the instrument PC were wiped now."""

    datapoint_id: str
    label: Optional[str]
    data_type: str
    size_bytes: Optional[int]
    captured_at: str
    age_days: float
    sync_state: str


@dataclass
class RetentionReport:
    older_than_days: float
    dry_run: bool
    #: Freed (or, in a dry run, freeable) local copies: count and bytes.
    freed: int = 0
    freed_bytes: int = 0
    #: Unverified datapoints, oldest first.
    at_risk: list[AtRisk] = field(default_factory=list)

    @property
    def at_risk_bytes(self) -> int:
        return sum(item.size_bytes or 0 for item in self.at_risk)

    def as_dict(self) -> dict[str, Any]:
        return {"older_than_days": self.older_than_days, "dry_run": self.dry_run,
                "freed" if not self.dry_run else "would_free": {
                    "count": self.freed, "bytes": self.freed_bytes},
                "would_be_lost_if_wiped": {
                    "count": len(self.at_risk), "bytes": self.at_risk_bytes,
                    "items": [asdict(item) for item in self.at_risk]}}


def locked_minimum_days() -> tuple[bool, Optional[float]]:
    """(locked, days): whether the facility locked the retention age, and its value
    (None: the facility does not allow freeing local copies)."""
    site = load_site()
    if not is_locked(site, "central", SETTING):
        return False, None
    value = (site.get("central") or {}).get(SETTING)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValidationError(f"the facility's settings file {site_config_file()} gives "
                              f"\"central.{SETTING}\" as {value!r}; it must be a number of "
                              "days or null; ask the facility staff")
    return True, None if value is None else float(value)


def check_allowed(days: float) -> None:
    """Refuse a purge the facility's locked retention does not allow."""
    locked, minimum = locked_minimum_days()
    if not locked:
        return
    if minimum is None:
        raise ValidationError(f"the facility does not allow freeing local copies on this bench "
                              f"(\"central.{SETTING}\" is locked in {site_config_file()}); "
                              "ask the facility staff")
    if days < minimum:
        raise ValidationError(f"the facility keeps local copies for {minimum:g} day(s) "
                              f"(\"central.{SETTING}\" is locked in {site_config_file()}); "
                              f"use --older-than {minimum:g} or more")


def _freeable(service: BenchService, days: float) -> list[tuple[str, int]]:
    """(sha256, size) of the local copies the policy frees now."""
    if not localrows.has_sync_objects(service.store):
        return []  # sync never ran here: nothing is verified central
    cutoff = format_canonical(utc_now() - timedelta(days=days))
    found = []
    for sha256 in localrows.verified_older_than(service.store, cutoff):
        if not localrows.blob_freeable(service.store, sha256, live_ok=True):
            continue
        try:
            size = service.files.path_for(sha256).stat().st_size
        except FileNotFoundError:
            size = -1
        found.append((sha256, size))
    return found


def at_risk(service: BenchService) -> list[AtRisk]:
    """Live datapoints captured here and not yet verified central, oldest first: files
    without a verified central copy, values whose record is not yet confirmed."""
    now = utc_now()
    rows = custody.unverified_local(service.store, SyncState.CONFIRMED.value)
    items = []
    for ident, label, data_type, size, created, state in rows:
        age = (now - parse_timestamp(created)).total_seconds() / 86400
        items.append(AtRisk(str(ident), label, str(data_type), size, str(created),
                            round(age, 3), str(state)))
    return items


def free_verified(service: BenchService, days: float, *, dry_run: bool = False,
                  list_at_risk: bool = True) -> RetentionReport:
    """Free (or with ``dry_run`` count) the local copies verified central more than
    ``days`` ago; the report also lists what is not yet safe anywhere else (unless
    ``list_at_risk`` is False: the sync pass does not need it)."""
    report = RetentionReport(older_than_days=days, dry_run=dry_run)
    for sha256, size in _freeable(service, days):
        if size < 0:  # already gone (freed by hand or by an earlier pass): just mark it
            if not dry_run:
                localrows.free_blob_if_freeable(service.store, service.files, sha256,
                                                live_ok=True)
            continue
        if dry_run or localrows.free_blob_if_freeable(service.store, service.files, sha256,
                                                      live_ok=True):
            report.freed += 1
            report.freed_bytes += size
    if list_at_risk:
        report.at_risk = at_risk(service)
    if report.freed and not dry_run:
        log.info("freed %d local copy/copies, %d bytes, verified central more than %g day(s) "
                 "ago; they are fetched again on request", report.freed, report.freed_bytes,
                 days)
    return report
