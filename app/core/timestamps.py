"""Timestamps: timezone-aware everywhere, one canonical text form for storage.

MADSci 0.8.1 writes naive local times and sorts ``/datapoints`` on the stored string, so
the text form must be fixed-width for text order to be time order. Pydantic drops the
fraction when microseconds are zero (``...:05Z`` sorts after ``...:05.5Z``), hence our own
format: always six fraction digits and a ``Z``. Naive datetimes (MADSci's) are read as UTC.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

from app.core.errors import ValidationError

CANONICAL_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """A naive datetime is taken as UTC; an aware one is converted to UTC."""
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_timestamp(value: object) -> datetime:
    """Accept a datetime, a date, or ISO-8601 text (``Z`` allowed); return aware UTC."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return as_utc(datetime.fromisoformat(text))
        except ValueError:
            pass
    raise ValidationError(
        f"not a timestamp: {value!r}; use ISO-8601 such as 2026-11-23T14:05:00Z"
    )


def format_canonical(moment: datetime) -> str:
    """Fixed-width UTC text of an aware datetime (isoformat is ~5x faster than strftime
    and pads years below 1000, which strftime does not on every platform)."""
    return as_utc(moment).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def to_canonical(value: object) -> str:
    """The fixed-width UTC text stored locally and centrally."""
    return format_canonical(parse_timestamp(value))


def now_canonical() -> str:
    return format_canonical(utc_now())
