"""How values read on screen: sizes, times, types, sync states (no Qt)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Final, Optional

from app.core.syncstate import DESCRIPTIONS, describe
from app.core.units import human_size as human_size  # re-exported: the window's one size form
from app.core.timestamps import format_local

TYPE_NAMES: Final[dict[str, str]] = {"json": "Value", "file": "File",
                                     "object_storage": "Stored file"}

#: Every sync state a row may show, in the order of the engine's work, with the words an
#: operator reads (one vocabulary: app/core/syncstate.py). Unknown states show as they are.
SYNC_STATES: Final[dict[str, tuple[str, str]]] = dict(DESCRIPTIONS)


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


def sync_label(state: str, central_configured: bool = True) -> str:
    return describe(state, central_configured)[0]


def sync_tooltip(state: str, central_configured: bool = True) -> str:
    return describe(state, central_configured)[1]


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
