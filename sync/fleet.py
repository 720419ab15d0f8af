"""The fleet: each bench's heartbeat in the central ``benches`` collection, and the one
bench that stamps documents MADSci wrote.

A heartbeat is one small document per bench (``_id`` = the bench id), replaced at most
once a minute; its ``seen_at`` is set by the server (``$currentDate``), so "offline" is
judged in the server's time, never a bench clock. What a steward wants to know rides
along: names, version, backlog, last verified push, disk free, current problems.

**Who stamps.** Documents MADSci's own Data Manager inserted carry no ``sync_written_at``;
one bench gives them one (the pull cursor follows it). Not every bench on every pass —
that was one ``update_many`` per bench per pass. The rule: the bench whose id sorts first
among the benches seen in the last ``LIVE_WINDOW`` (server time, read from this bench's
own heartbeat) stamps, every ``STAMP_INTERVAL_S``. Each bench re-reads who is first when
it beats (once a minute): one indexed query returning one id. A bench that stops beating
drops out of the window and the next one takes over within ``LIVE_WINDOW``. Two benches
that both believe they are first (a moment after one joins) stamp the same documents
twice, which is harmless: the update only touches documents without the field.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from app import __version__
from app.core.diskspace import disk_space
from app.service import BenchService

from sync.faults import classify_mongo

log = logging.getLogger(__name__)

#: A bench writes its heartbeat at most this often.
HEARTBEAT_INTERVAL_S = 60.0
#: Benches seen within this window (server time) take part in choosing the stamper.
LIVE_WINDOW = timedelta(minutes=3)
#: How often the chosen bench stamps documents MADSci wrote.
STAMP_INTERVAL_S = 10.0
SEEN_AT = "seen_at"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def heartbeat_fields(service: BenchService, status: dict[str, Any]) -> dict[str, Any]:
    """What a bench says about itself (``status`` is ``sync.engine.sync_status``)."""
    backlog = status.get("backlog") or {}
    try:
        free: Optional[int] = disk_space(service.paths).free_bytes
    except OSError:
        free = None
    problems = [p for p in (status.get("config_error"),) if p]
    attempt = status.get("last_attempt") or {}
    if attempt and not attempt.get("ok") and attempt.get("message"):
        problems.append(str(attempt["message"]))
    if status.get("quarantined"):
        problems.append(f"{len(status['quarantined'])} item(s) quarantined")
    return {
        "host": socket.gethostname(),
        "data_dir": str(service.paths.data_dir),
        "version": __version__,
        "backlog_count": int(backlog.get("count") or 0),
        "backlog_bytes": int(backlog.get("bytes") or 0),
        "backlog_oldest_change": backlog.get("oldest_change"),
        "last_verified_push": status.get("last_confirmed_at"),
        "last_pull": status.get("last_pull"),
        "disk_free_bytes": free,
        "problems": problems,
        # Filled once scrubbing records a result this module can read ("last scrub").
        "last_scrub": status.get("last_scrub"),
    }


def beat(benches: Any, bench_id: str, fields: dict[str, Any]) -> datetime:
    """Replace this bench's heartbeat; return the server's time of writing it."""
    try:
        document = benches.find_one_and_update(
            {"_id": bench_id}, {"$set": fields, "$currentDate": {SEEN_AT: True}},
            upsert=True, return_document=True, projection={SEEN_AT: 1})
    except Exception as exc:  # noqa: BLE001
        raise classify_mongo(exc, what="writing this bench's heartbeat") from exc
    return _aware(document[SEEN_AT])


def first_live_bench(benches: Any, server_now: datetime) -> Optional[str]:
    """The lowest bench id among those seen within ``LIVE_WINDOW`` of ``server_now``."""
    try:
        found = list(benches.find({SEEN_AT: {"$gte": server_now - LIVE_WINDOW}}, {"_id": 1})
                     .sort([("_id", 1)]).limit(1))
    except Exception as exc:  # noqa: BLE001
        raise classify_mongo(exc, what="reading the benches' heartbeats") from exc
    return str(found[0]["_id"]) if found else None
