"""How values read on screen: sizes, times, types, sync states (no Qt)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Final, Optional

from app.core.timestamps import format_local

TYPE_NAMES: Final[dict[str, str]] = {"json": "Value", "file": "File",
                                     "object_storage": "Stored file"}

#: Every sync state a row may show, with the words an operator reads and whether the data
#: is safe in the central store yet. Unknown states (a newer engine) show as they are.
SYNC_STATES: Final[dict[str, tuple[str, str]]] = {
    "pending": ("Waiting", "Only on this bench; waiting to be synced"),
    "uploading": ("Uploading", "Being copied to the central store now"),
    "uploaded": ("Uploaded", "File uploaded; record not yet confirmed"),
    "confirmed": ("Synced", "Safe in the central store (verified)"),
    "synced": ("Synced", "Safe in the central store (verified)"),
    "verified": ("Synced", "Safe in the central store (verified)"),
    "remote": ("From central", "Stored by another bench; pulled from the central store"),
    "retry": ("Retrying", "A sync attempt failed; it will be retried automatically"),
    "quarantined": ("Needs attention", "The central store refused it; see the Sync panel"),
    "failed": ("Needs attention", "The central store refused it; see the Sync panel"),
}
#: States whose data is known safe centrally (drawn green).
SAFE_STATES: Final[frozenset[str]] = frozenset({"confirmed", "synced", "verified", "remote"})
PROBLEM_STATES: Final[frozenset[str]] = frozenset({"quarantined", "failed"})


def human_size(size: Optional[int]) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def parse_canonical(text: str) -> Optional[datetime]:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        try:
            moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def local_time(value: object, seconds: bool = True) -> str:
    """A stored instant in the bench's local time with its zone, as the CLI shows it."""
    return format_local(value, seconds=seconds)


def sync_label(state: str) -> str:
    return SYNC_STATES.get(state, (state.capitalize(), ""))[0]


def sync_tooltip(state: str) -> str:
    return SYNC_STATES.get(state, ("", f"Sync state: {state}"))[1] or f"Sync state: {state}"


def human_age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 90 * 60:
        return f"{int(seconds // 60)} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
