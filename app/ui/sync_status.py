"""What the window knows about sync, gathered off the GUI thread (no Qt).

Until the sync engine runs inside the window, the store is the only source: how many
rows are in each sync state, how much is still waiting, and since when. When an engine
object is attached (``engine``), its own status (online, last success, live upload
progress, quarantine with reasons, paused) is read through a few duck-typed attributes,
so the panel keeps working as the engine's API settles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

from app.core import custody
from app.service import BenchService
from app.core.syncstate import PROBLEM_STATES, SAFE_STATES
from app.ui.formatting import parse_canonical


@dataclass
class QuarantinedItem:
    datapoint_id: str
    label: str
    reason: str


@dataclass
class SyncSnapshot:
    counts: dict[str, int]
    backlog_count: int
    backlog_bytes: int
    oldest_age_s: Optional[float]
    configured: bool
    engine_running: bool = False
    online: Optional[bool] = None
    paused: bool = False
    last_success: Optional[str] = None
    last_error: Optional[str] = None
    uploading: Optional[tuple[str, int, int]] = None   # (label, done, total)
    quarantined: list[QuarantinedItem] = field(default_factory=list)
    #: Who runs the engine when it is not this window (the attached capture service).
    runs_in: Optional[str] = None
    #: The last scrub's result in one line (``benchdata verify`` or the scheduled one).
    last_scrub: str = "never verified"
    last_scrub_ok: bool = True


def _central_configured(service: BenchService) -> bool:
    try:
        from sync.settings import load_settings

        return load_settings(service.paths).configured
    except Exception:  # noqa: BLE001 - no sync package, or a broken section
        return False


def read_snapshot(service: BenchService, engine: Any = None, paused: bool = False,
                  runs_in: Optional[str] = None) -> SyncSnapshot:
    """What the store and (if running) the sync engine say; call off the GUI thread.

    ``runs_in`` names the other process whose engine syncs this store (the service the
    window is attached to); its state is then read from the store it shares with us."""
    # The backlog is what still waits to be synced; refused items are listed apart.
    settled = sorted(SAFE_STATES | PROBLEM_STATES)
    counts = service.store.sync_state_counts()
    backlog_count, backlog_bytes, oldest = service.store.sync_backlog(settled)
    quarantined = [QuarantinedItem(i, label, "") for i, label in service.store.refused_rows()]
    oldest_at = parse_canonical(oldest) if oldest else None
    status = _engine_status(service, engine)
    snapshot = SyncSnapshot(
        counts=counts, backlog_count=backlog_count, backlog_bytes=backlog_bytes,
        oldest_age_s=(time.time() - oldest_at.timestamp()) if oldest_at else None,
        # The engine's status says whether it is configured; loading the settings (a file,
        # the OS keyring, validation) for nothing several times a second while an upload
        # runs would hold the GIL the GUI thread waits for.
        configured=False if status is not None else _central_configured(service),
        quarantined=quarantined, paused=paused, runs_in=runs_in)
    scrub = custody.last_scrub_run(service.store)
    snapshot.last_scrub = custody.describe_scrub(scrub)
    snapshot.last_scrub_ok = scrub is None or bool(scrub.get("ok"))
    if status is not None:
        _merge_engine(snapshot, engine, status)
    return snapshot


def _engine_status(service: BenchService, engine: Any) -> Optional[dict[str, Any]]:
    """The engine's own status (quarantine reasons, last success …), if sync is installed."""
    try:
        if engine is not None:
            return dict(engine.status())
        with service.store.reader() as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                            "AND name = 'sync_outbox'").fetchone() is None:
                return None  # sync never ran here; reading its status must not create it
        from sync.engine import sync_status

        return dict(sync_status(service))
    except Exception:  # noqa: BLE001 - no sync package yet, or it failed: store facts only
        return None


def _merge_engine(snapshot: SyncSnapshot, engine: Any, status: dict[str, Any]) -> None:
    snapshot.engine_running = (engine is not None or snapshot.runs_in is not None) \
        and not snapshot.paused
    snapshot.configured = bool(status.get("configured", snapshot.configured))
    snapshot.last_success = status.get("last_success")
    backlog = status.get("backlog") or {}
    if "count" in backlog:
        snapshot.backlog_count = int(backlog["count"])
        snapshot.backlog_bytes = int(backlog.get("bytes") or 0)
        snapshot.oldest_age_s = backlog.get("oldest_age_s")
    reasons = {q["datapoint_id"]: q for q in status.get("quarantined") or []}
    if reasons:
        snapshot.quarantined = [QuarantinedItem(i, str(q.get("label") or ""),
                                                str(q.get("reason") or ""))
                                for i, q in reasons.items()]
    if status.get("config_error"):
        snapshot.last_error = str(status["config_error"])
    elif status.get("retrying"):
        snapshot.last_error = str(status["retrying"][0].get("error") or "")
    if engine is None:
        if snapshot.runs_in is not None:  # the other process's engine records its problems
            snapshot.online = not (status.get("config_error") or status.get("retrying"))
        return
    report = getattr(engine, "last_report", None)
    if report is not None:
        snapshot.online = bool(report.ok or report.confirmed) and not report.config_error
        if report.config_error:
            snapshot.last_error = report.config_error
    progress = dict(getattr(engine, "progress", {}) or {})
    if progress:
        done = sum(d for d, _t in progress.values())
        total = sum(t for _d, t in progress.values())
        what = f"{len(progress)} file(s)" if len(progress) > 1 else next(iter(progress))
        snapshot.uploading = (what, done, total)
