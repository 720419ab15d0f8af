"""The search box and quick filters as one selector of the query language (no Qt).

The window never writes SQL: whatever the operator types or picks becomes a Mongo-style
selector that :mod:`app.core.query` validates and translates, the same selectors the CLI
and the REST API take. The advanced field is parsed here only as JSON; query errors come
from the query language itself and are shown inline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Optional

from app.core.errors import QueryError
from app.core.query import parse_selector
from app.core.search import split_text
from app.core.syncstate import UNSAFE_STATES


@dataclass(frozen=True)
class FilterState:
    """What the filter bar currently says; empty fields do not filter."""

    text: str = ""
    data_type: Optional[str] = None          # "json" | "file" | "object_storage"
    experiment: Optional[str] = None         # a name (or an id)
    since: Optional[date] = None             # local calendar days, inclusive
    until: Optional[date] = None
    sync_state: Optional[str] = None         # a state, or "unsynced" for "not safe yet"
    advanced: str = ""                       # a JSON selector

    def is_empty(self) -> bool:
        return self == FilterState()


#: Sync states that mean "not yet safe in the central store".
UNSYNCED_STATES: tuple[str, ...] = tuple(UNSAFE_STATES)


def parse_advanced(text: str) -> Optional[dict[str, Any]]:
    """The advanced field's selector, validated; raises QueryError with a readable message."""
    text = text.strip()
    if not text:
        return None
    try:
        selector = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QueryError(f"not valid JSON at column {exc.colno}: {exc.msg}") from None
    if not isinstance(selector, dict):
        raise QueryError('a query is a JSON object, e.g. {"label": "temp"}')
    rest, _text = split_text(selector)  # $text is the search engine's, not the parser's
    parse_selector(rest)  # raises QueryError naming the problem
    return selector


def _day_start(day: date) -> str:
    # Dates are the bench's local calendar days; the store compares UTC timestamps.
    return datetime.combine(day, time.min).astimezone().isoformat()


def build_selector(state: FilterState,
                   experiment_id: Optional[Callable[[str], str]] = None) -> Optional[dict[str, Any]]:
    """One selector for everything the filter bar says (``None`` = everything).

    ``experiment_id`` maps the experiment box's name to an id (the window passes one that
    knows names pinned on this bench); by default the query language derives it.
    """
    parts: list[dict[str, Any]] = []
    text = state.text.strip()
    if text:
        # The one full-text engine (app.core.search) the CLI and DataClient.search use.
        parts.append({"$text": {"$search": text}})
    if state.data_type:
        parts.append({"data_type": state.data_type})
    if state.experiment:
        name = state.experiment.strip()
        parts.append({"ownership_info.experiment_id":
                      experiment_id(name) if experiment_id else name})
    if state.since or state.until:
        window: dict[str, Any] = {}
        if state.since:
            window["$gte"] = _day_start(state.since)
        if state.until:
            window["$lt"] = _day_start(state.until + timedelta(days=1))
        parts.append({"data_timestamp": window})
    if state.sync_state == "unsynced":
        parts.append({"sync_state": {"$in": list(UNSYNCED_STATES)}})
    elif state.sync_state:
        parts.append({"sync_state": state.sync_state})
    advanced = parse_advanced(state.advanced)
    if advanced:
        parts.append(advanced)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}
