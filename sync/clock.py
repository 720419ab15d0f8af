"""The bench clock against the object storage's clock: measure the skew, sign with it.

S3 signatures (SigV4) carry the request time; servers refuse a request more than about
15 minutes off their own clock — as ``RequestTimeTooSkewed``, or, for requests without a
body such as ``HEAD`` (``bucket_exists``, ``stat_object``), as a bare 403 that the minio
SDK reports as ``AccessDenied``. A bench whose clock is wrong would then look like one
with wrong credentials. As the AWS SDKs do, the engine reads the server's ``Date`` header
from such a refusal, and when it is far from the bench clock it signs from then on with
the bench clock plus the measured offset, retrying the refused request once. Every
answer's ``Date`` also updates the measured skew, which ``sync status`` reports
("bench clock is N minutes off").

Only S3 signing uses the offset. Nothing else reads it: MongoDB needs no client clock,
and the data's own times are never corrected behind the user's back.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Final, Optional

from app.core.timestamps import utc_now

#: S3 error codes a wrong clock can cause (with a ``Date`` far from ours, they mean skew).
SKEW_CODES: Final[frozenset[str]] = frozenset({
    "RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture", "AccessDenied",
    "Forbidden", "SignatureDoesNotMatch", "InvalidSignatureException", "AuthFailure",
})
#: Below this, a difference between the clocks is latency and the Date header's
#: one-second resolution, not a wrong clock: no correction is made.
CORRECT_ABOVE_S: Final = 60.0
#: From this skew on, ``sync status`` says the bench clock is off.
REPORT_ABOVE_S: Final = 120.0


def server_date(headers: Any) -> Optional[datetime]:
    """The ``Date`` header of an HTTP answer as an aware datetime (None if absent/bad)."""
    try:
        text = headers.get("Date") if headers is not None else None
    except Exception:  # noqa: BLE001 - odd header containers
        return None
    if not text:
        return None
    try:
        moment = parsedate_to_datetime(str(text))
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def describe_skew(skew_s: float) -> str:
    """"bench clock is N minutes off (behind ...)" for a skew in seconds (server - bench)."""
    minutes = max(1, round(abs(skew_s) / 60))
    direction = "behind" if skew_s > 0 else "ahead of"
    return (f"bench clock is {minutes} minute{'s' if minutes != 1 else ''} off ({direction} "
            "the object storage's clock); S3 requests are signed with the corrected time — "
            "set the bench clock right (NTP)")


class ServerClock:
    """The offset S3 requests are signed with, and the skew last seen (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._skew_s: Optional[float] = None

    def now(self) -> datetime:
        """The time to sign a request with: the bench clock plus the offset."""
        with self._lock:
            return utc_now() + self._offset

    @property
    def offset_s(self) -> float:
        with self._lock:
            return self._offset.total_seconds()

    @property
    def skew_s(self) -> Optional[float]:
        """Server clock minus bench clock as last measured (None: never measured)."""
        with self._lock:
            return self._skew_s

    def observe(self, headers: Any) -> bool:
        """Note the skew an answer's ``Date`` shows; adopt the server's clock for signing
        when ours (as signed) is off from it by more than ``CORRECT_ABOVE_S``.

        True if the offset changed: a request refused for a wrong clock may now succeed.
        (Answers that succeed are observed too, so a clock drifting towards the server's
        limit is corrected before anything is refused.)"""
        date = server_date(headers)
        if date is None:
            return False
        with self._lock:
            local = utc_now()
            self._skew_s = (date - local).total_seconds()
            signed_error = (date - (local + self._offset)).total_seconds()
            if abs(signed_error) <= CORRECT_ABOVE_S:
                return False
            self._offset = date - local
            return True

    def status(self) -> Optional[dict[str, Any]]:
        """What ``sync status`` shows: None while the clocks agree (or were never compared)."""
        skew = self.skew_s
        if skew is None or abs(skew) < REPORT_ABOVE_S:
            return None
        return {"skew_s": round(skew, 1), "minutes_off": round(abs(skew) / 60),
                "corrected": abs(self.offset_s - skew) <= CORRECT_ABOVE_S,
                "message": describe_skew(skew)}
