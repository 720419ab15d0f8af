"""Timestamps: true instants for order, the sent form for MADSci, local time for people.

The rules (docs/rest-api.md, "Time"):

* **A naive timestamp is local wall-clock time of the bench that received it**, as MADSci's
  ``datetime.now()`` default makes it, never UTC. Its instant comes from the bench's time
  zone (:func:`bench_zone`, DST included). Wall times that a DST change makes ambiguous or
  impossible are read deterministically, as PEP 495 defines for ``fold=0`` unless the
  datetime itself carries ``fold=1``: a repeated hour (fall back) is its *first* occurrence
  (the earlier instant, still on summer time); a skipped hour (spring forward) is read
  with the offset in force before the change, so 02:30 on the skipped night is 03:30 of
  summer time. ``datetime.now()`` sets ``fold`` itself, so only times sent as text lose it.
* **The sent form is kept**: MADSci-compatible answers give ``data_timestamp`` back in the
  form it came (naive stays naive, an offset stays that offset), in the text MADSci's
  pydantic models produce (:func:`madsci_text`): ``2025-01-02T03:04:05.123456``, no fraction
  when it is zero, ``Z`` for a zero offset.
* **Instants are stored and compared as canonical UTC text** (:func:`format_canonical`):
  always six fraction digits and a ``Z``, so text order is time order.
* **People read local time with its zone** (:func:`format_local`), in the window and the
  CLI alike.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.core.errors import ValidationError

CANONICAL_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
#: Extra field of central documents: the exact UTC instant of ``data_timestamp``, as
#: canonical text, for ordering across benches and time zones.
INSTANT_FIELD = "data_timestamp_utc"
#: Configuration section (``config.json`` or the facility's file) and its key naming the
#: zone naive timestamps that MADSci itself wrote are read in.
TIME_SECTION = "time"
LAB_ZONE_KEY = "lab_zone"


# -- zones -------------------------------------------------------------------------------


def bench_zone() -> Optional[tzinfo]:
    """The bench's time zone with its DST rules, or ``None`` to use the OS's rules.

    ``TZ`` (when it names an IANA zone or a zone file) wins, as for the C library; else
    ``/etc/localtime``. ``None`` (Windows without tzdata, POSIX rule strings in ``TZ``)
    means the operating system's local time conversion, which knows DST too.
    """
    global _last_zone
    raw = _ENVIRON_DATA.get(_TZ_KEY) if _ENVIRON_DATA is not None else os.environ.get("TZ")
    last = _last_zone
    if last[0] == raw:  # every capture asks: skip decoding and the cache call
        return last[1]
    zone = _zone_for_tz(os.environ.get("TZ"))
    _last_zone = (raw, zone)
    return zone


#: (raw TZ value, its zone) of the last lookup; replaced whole, so read without a lock.
_last_zone: tuple[object, Optional[tzinfo]] = (object(), None)
#: os.environ's own storage: ``os.environ.get`` of an unset variable raises and catches a
#: KeyError inside, which costs more than the rest of a naive time's conversion.
_ENVIRON_DATA: Optional[dict] = getattr(os.environ, "_data", None)
_TZ_KEY: object = os.environ.encodekey("TZ") if hasattr(os.environ, "encodekey") else "TZ"


@lru_cache(maxsize=8)
def _zone_for_tz(tz: Optional[str]) -> Optional[tzinfo]:
    if tz is not None:
        key = tz[1:] if tz.startswith(":") else tz
        try:
            if key.startswith("/"):
                with open(key, "rb") as source:
                    return ZoneInfo.from_file(source, key=Path(key).name)
            return ZoneInfo(key) if key else ZoneInfo("UTC")
        except (OSError, ValueError, ZoneInfoNotFoundError):
            return None
    return _system_zone()


def _system_zone() -> Optional[tzinfo]:
    localtime = Path("/etc/localtime")
    try:
        target = str(localtime.resolve(strict=True))
    except OSError:
        return _zone_from_tzlocal()
    if "/zoneinfo/" in target:
        try:
            return ZoneInfo(target.split("/zoneinfo/", 1)[1])
        except (ValueError, ZoneInfoNotFoundError):
            pass
    try:
        with localtime.open("rb") as source:
            return ZoneInfo.from_file(source, key="localtime")
    except (OSError, ValueError):
        return None


def _zone_from_tzlocal() -> Optional[tzinfo]:
    try:  # optional: names the Windows zone in IANA terms when installed
        import tzlocal  # type: ignore[import-not-found]

        return ZoneInfo(tzlocal.get_localzone_name())
    except Exception:  # noqa: BLE001 - any failure means "use the OS's rules"
        return None


def zone_name(zone: Optional[tzinfo] = None) -> str:
    """The IANA name of a zone (the bench's by default), or ``local`` for the OS's rules."""
    zone = zone if zone is not None else bench_zone()
    if zone is None:
        return "local"
    return str(getattr(zone, "key", None) or zone)


def zone_named(name: str) -> ZoneInfo:
    """An IANA time zone by name (``America/Chicago``), or a clear ValidationError."""
    try:
        return ZoneInfo(str(name))
    except (ValueError, ZoneInfoNotFoundError, OSError):
        raise ValidationError(
            f"unknown time zone {name!r}; use an IANA name such as America/Chicago or "
            "Europe/Berlin") from None


def lab_zone(paths: object) -> Optional[tzinfo]:
    """The zone naive timestamps written by MADSci itself are read in: the ``time``
    section's ``lab_zone`` (the facility's file may lock it), else the bench's own."""
    from app.core.config import load_section

    section = load_section(paths, TIME_SECTION)  # type: ignore[arg-type]
    name = section.get(LAB_ZONE_KEY) if isinstance(section, dict) else None
    return zone_named(name) if name else bench_zone()


# -- instants ------------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def local_now() -> datetime:
    """Now as naive local wall-clock time of the bench: what MADSci's ``datetime.now()``
    default gives, with ``fold`` set in a repeated hour."""
    zone = bench_zone()
    if zone is None:
        return datetime.now()
    return datetime.now(zone).replace(tzinfo=None)


def is_naive(moment: datetime) -> bool:
    return moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None


def as_utc(moment: datetime, zone: Optional[tzinfo] = None) -> datetime:
    """The true instant, aware UTC. A naive datetime is local wall time in ``zone``
    (default: the bench's; see the module's rules for DST gaps and repeats)."""
    if not is_naive(moment):
        return moment.astimezone(timezone.utc)
    zone = zone if zone is not None else bench_zone()
    if zone is None:  # the OS's own local-time rules
        return moment.replace(tzinfo=None).astimezone(timezone.utc)
    return moment.replace(tzinfo=zone).astimezone(timezone.utc)


def parse_as_sent(value: object) -> datetime:
    """A datetime in the form it was given: naive stays naive, an offset is kept.

    Accepts a datetime, a date (its midnight, naive) or ISO-8601 text (``Z`` allowed).
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValidationError(
        f"not a timestamp: {value!r}; use ISO-8601 such as 2026-11-23T14:05:00 (local "
        f"time of the bench) or 2026-11-23T20:05:00Z (UTC)"
    )


def parse_timestamp(value: object, zone: Optional[tzinfo] = None) -> datetime:
    """The true instant (aware UTC) of a datetime, date or ISO text; naive is local."""
    return as_utc(parse_as_sent(value), zone)


def format_canonical(moment: datetime) -> str:
    """Fixed-width UTC text of an instant (isoformat is ~5x faster than strftime and pads
    years below 1000, which strftime does not on every platform). Naive is local."""
    if moment.tzinfo is None:
        zone = bench_zone()
        if zone is not None:  # every capture comes here: skip building aware datetimes
            return (moment - zone.utcoffset(moment)).isoformat(timespec="microseconds") + "Z"
    if moment.tzinfo is not timezone.utc:
        moment = as_utc(moment)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def to_canonical(value: object) -> str:
    """The fixed-width UTC text stored locally and centrally."""
    return format_canonical(parse_timestamp(value))


def now_canonical() -> str:
    return format_canonical(utc_now())


# -- text for MADSci and for people --------------------------------------------------------


def madsci_text(moment: datetime) -> str:
    """``data_timestamp`` as MADSci's pydantic models write it in JSON: naive stays naive,
    an offset is kept, a zero offset is ``Z``, no fraction when it is zero."""
    offset = moment.utcoffset()
    if offset is None:
        return moment.isoformat()
    if not offset:
        return moment.replace(tzinfo=None).isoformat() + "Z"
    return moment.isoformat()


def format_local(value: object, *, seconds: bool = True,
                 zone: Optional[tzinfo] = None) -> str:
    """An instant (datetime or ISO text; naive is local) as the bench's local time with
    its zone, as people read it: ``2026-12-06 19:23:45 CST``. Text that is not a
    timestamp is shown as it is."""
    try:
        instant = parse_timestamp(value)
    except ValidationError:
        return "" if value is None else str(value)
    zone = zone if zone is not None else bench_zone()
    local = instant.astimezone(zone) if zone is not None else instant.astimezone()
    text = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text} {local.tzname() or _offset_text(local.utcoffset())}"


def _offset_text(offset: Optional[timedelta]) -> str:
    if offset is None:
        return ""
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
