"""Every budget a query is held to, and the time budget that stops a running statement."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, Optional

from app.core.errors import QueryTimeoutError, ValidationError


# -- budgets ---------------------------------------------------------------------------
#
# Every limit a query is held to, in one place. The structural ones are checked while a
# selector is parsed (a QueryError, 400 over REST); the time budget is enforced while
# SQLite runs the statement (a QueryTimeoutError, 408). Together they bound what one query
# can cost: no query holds a reader, the CPU or the GIL long enough to stall capture.

#: The most rows one page may ask for.
MAX_LIMIT: Final[int] = 100_000
#: The most datapoints one query that goes central answers (newest first; one request).
MAX_CENTRAL_RESULTS: Final[int] = 1000
#: How deeply ``$and``/``$or``/``$nor``/``$not`` may nest (guards against recursion bombs).
MAX_DEPTH: Final[int] = 32
#: SQLite 3.40 allows 32,766 bound parameters per statement; keep clear of it.
MAX_PARAMETERS: Final[int] = 30_000
#: How many sort keys a query may name (the id tie-breaker comes on top).
MAX_SORT_KEYS: Final[int] = 8
#: How many values one ``$in``/``$nin`` list may hold.
MAX_IN_VALUES: Final[int] = 10_000
#: The longest field path (selector key or sort key), and the most segments in it.
MAX_FIELD_PATH_CHARS: Final[int] = 512
MAX_FIELD_PATH_SEGMENTS: Final[int] = 32
#: The longest ``$regex`` pattern, in characters.
MAX_REGEX_CHARS: Final[int] = 4096
#: Memory RE2 may use for one compiled pattern (its program and its DFA cache); a pattern
#: that needs more is refused as too complex. At most ``_REGEX_CACHE_SIZE`` are kept.
MAX_REGEX_MEMORY_BYTES: Final[int] = 2 * 1024 * 1024
_REGEX_CACHE_SIZE: Final[int] = 32
#: How long one query statement may run before it is stopped (setting
#: ``query.time_budget_seconds`` in config.json).
DEFAULT_TIME_BUDGET_SECONDS: Final[float] = 10.0
#: SQLite virtual machine steps between two looks at the clock (about 0.1 ms of work).
_PROGRESS_STEPS: Final[int] = 1000

# -- the time budget ---------------------------------------------------------------------


def _timeout_message(seconds: float) -> str:
    return (f"the query ran longer than its {seconds:g}-second budget and was stopped; "
            f"narrow the selector (an exact label, an experiment, a time range) or ask "
            f"for a page with a limit")


@contextmanager
def time_budget(conn: sqlite3.Connection, seconds: float,
                keep_going: Optional[Callable[[], bool]] = None
                ) -> Iterator[sqlite3.Connection]:
    """Run the statements inside on ``conn`` for at most ``seconds`` (each statement's
    clock starts when the block starts; reading the rows counts).

    SQLite's progress handler looks at the clock every few thousand steps and interrupts
    the statement once the budget is spent; that raises QueryTimeoutError here. Between
    steps SQLite does not hold the GIL, so other threads (captures, ``/health``) run.
    ``keep_going`` (optional) is asked at the same moments: when it turns false the
    statement is interrupted too, and the OperationalError is left to the caller.
    """
    deadline = time.monotonic() + seconds
    expired = False

    def progress() -> int:
        nonlocal expired
        if time.monotonic() > deadline:
            expired = True
            return 1
        return 0 if keep_going is None or keep_going() else 1

    conn.set_progress_handler(progress, _PROGRESS_STEPS)
    try:
        yield conn
    except sqlite3.OperationalError:
        if expired:
            raise QueryTimeoutError(_timeout_message(seconds)) from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


def time_budget_setting(section: Any) -> float:
    """The time budget from config.json's ``query`` section (``time_budget_seconds``),
    or the default; raises ValidationError for a value that is not a positive number."""
    value = (section or {}).get("time_budget_seconds") if isinstance(section, Mapping) \
        else None
    if value is None:
        return DEFAULT_TIME_BUDGET_SECONDS
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValidationError(
            f"query.time_budget_seconds must be a positive number of seconds, got {value!r}")
    return float(value)

#: SQLite integers are 64-bit; a larger number is a double there (and in MongoDB).
INT64_MIN: Final[int] = -(2**63)
INT64_MAX: Final[int] = 2**63 - 1
