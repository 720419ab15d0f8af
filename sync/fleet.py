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
from collections.abc import Sequence
from typing import Any, Optional

from app import __version__
from app.core.custody import describe_scrub
from app.core.diskspace import disk_space
from app.core.timestamps import parse_timestamp
from app.service import BenchService


log = logging.getLogger(__name__)

#: A bench writes its heartbeat at most this often.
HEARTBEAT_INTERVAL_S = 60.0
#: Benches seen within this window (server time) take part in choosing the stamper.
LIVE_WINDOW = timedelta(minutes=3)
#: How often the chosen bench stamps documents MADSci wrote.
STAMP_INTERVAL_S = 10.0
SEEN_AT = "seen_at"
#: A bench is "offline" after this long without a heartbeat (server time) ...
OFFLINE_AFTER = timedelta(minutes=5)
#: ... and "behind" when its oldest unsynced change is older than this.
BEHIND_AFTER_S = 600.0


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def heartbeat_fields(service: BenchService, status: dict[str, Any],
                     current: Sequence[str] = ()) -> dict[str, Any]:
    """What a bench says about itself (``status`` is ``sync.engine.sync_status``, as of the
    previous pass; ``current``: problems the pass under way has met so far)."""
    backlog = status.get("backlog") or {}
    try:
        free: Optional[int] = disk_space(service.paths).free_bytes
    except OSError:
        free = None
    problems = list(dict.fromkeys(p for p in current if p))
    # "waiting for object storage: X" beside X says nothing new.
    problems = [p for p in problems if not any(q != p and q in p for q in problems)]
    if not problems:
        attempt = status.get("last_attempt") or {}
        for problem in (status.get("config_error"),
                        None if attempt.get("ok", True) else attempt.get("message")):
            if problem and problem not in problems:
                problems.append(str(problem))
    if status.get("quarantined"):
        problems.append(f"{len(status['quarantined'])} item(s) quarantined")
    scrub = scrub_fields(status.get("last_scrub"))
    if scrub is not None and not scrub["ok"]:
        problems.append(f"last scrub: {scrub['summary']}")
    return {
        "host": socket.gethostname(),
        "data_dir": str(service.paths.data_dir),
        "version": __version__,
        "backlog_count": int(backlog.get("count") or 0),
        "backlog_bytes": int(backlog.get("bytes") or 0),
        "backlog_oldest_change": backlog.get("oldest_change"),
        "backlog_age_s": backlog.get("oldest_age_s"),
        "last_verified_push": status.get("last_confirmed_at"),
        "last_pull": status.get("last_pull"),
        "disk_free_bytes": free,
        "problems": problems,
        "last_scrub": scrub,
    }


def scrub_fields(run: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The newest scrub's result (``app.core.custody.last_scrub_run``) as a heartbeat
    carries it: when, whether all was intact, how much it checked, and the sentence every
    front end says about it; None when this bench never scrubbed."""
    if run is None:
        return None
    return {"finished_at": run.get("finished_at"), "ok": bool(run.get("ok")),
            "files": int(run.get("files") or 0), "central": bool(run.get("central")),
            "problems": int(run.get("problems") or 0),
            "repaired": int(run.get("repaired") or 0),
            "summary": describe_scrub(run)}


def scrub_state(row: dict[str, Any]) -> str:
    """A bench's last scrub in a few words for a table: ``never``, ``ok``, or its
    problems (the age is shown beside it, from ``scrub_age_s``)."""
    scrub = row.get("last_scrub")
    if not isinstance(scrub, dict):
        return "never"
    if scrub.get("ok"):
        return "ok"
    if scrub.get("problems"):
        return f"{scrub['problems']} problem(s)"
    return "did not finish"


def beat(benches: Any, bench_id: str, fields: dict[str, Any]) -> datetime:
    """Replace this bench's heartbeat; return the server's time of writing it."""
    try:
        document = benches.find_one_and_update(
            {"_id": bench_id}, {"$set": fields, "$currentDate": {SEEN_AT: True}},
            upsert=True, projection={SEEN_AT: 1})
    except Exception as exc:  # noqa: BLE001
        raise benches.classify(exc, what="writing this bench's heartbeat") from exc
    return _aware(document[SEEN_AT])


def first_live_bench(benches: Any, server_now: datetime) -> Optional[str]:
    """The lowest bench id among those seen within ``LIVE_WINDOW`` of ``server_now``."""
    try:
        found = list(benches.find({SEEN_AT: {"$gte": server_now - LIVE_WINDOW}}, {"_id": 1},
                                  sort=[("_id", 1)], limit=1))
    except Exception as exc:  # noqa: BLE001
        raise benches.classify(exc, what="reading the benches' heartbeats") from exc
    return str(found[0]["_id"]) if found else None


def server_time(central: Any) -> Optional[datetime]:
    """The MongoDB server's clock (``hello``'s ``localTime``), or None if it will not say."""
    moment = central.server_time()  # None: judged against the newest heartbeat instead
    return _aware(moment) if isinstance(moment, datetime) else None


def fleet_status(central: Any, offline_after: timedelta = OFFLINE_AFTER,
                 behind_after_s: float = BEHIND_AFTER_S) -> list[dict[str, Any]]:
    """Every bench's last heartbeat with what a steward asks of it: ``offline`` (no
    heartbeat for ``offline_after``, server time), ``behind`` (a change waiting longer
    than ``behind_after_s``), ``attention`` (problems it reported). Most urgent first."""
    try:
        documents = list(central.benches.find({}))
    except Exception as exc:  # noqa: BLE001
        raise central.classify(exc, what="reading the benches' heartbeats") from exc
    seen = [m for m in (_moment(d.get(SEEN_AT)) for d in documents) if m is not None]
    now = server_time(central) or max(seen, default=datetime.now(timezone.utc))
    rows = [_bench_row(d, now, offline_after, behind_after_s) for d in documents]
    rows.sort(key=lambda r: (not r["offline"], not r["attention"], not r["behind"],
                             r["bench_id"]))
    return rows


def _moment(value: Any) -> Optional[datetime]:
    """A stored time: a BSON date, or its ISO text (nx-27017 0.8.1 stores a date ``$set``
    over one that ``$currentDate`` wrote as text)."""
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, str):
        try:
            return _aware(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _bench_row(document: dict[str, Any], now: datetime, offline_after: timedelta,
               behind_after_s: float) -> dict[str, Any]:
    seen = _moment(document.get(SEEN_AT))
    silent_s = (now - seen).total_seconds() if seen is not None else None
    age = document.get("backlog_age_s")
    row = {key: value for key, value in document.items() if key not in ("_id", SEEN_AT)}
    row.update(
        scrub_age_s=_scrub_age_s(document.get("last_scrub"), now),
        bench_id=str(document["_id"]),
        seen_at=seen.isoformat() if seen is not None else None,
        silent_s=max(0.0, silent_s) if silent_s is not None else None,
        offline=silent_s is None or silent_s > offline_after.total_seconds(),
        behind=bool(document.get("backlog_count")) and age is not None and
        float(age) > behind_after_s,
        attention=bool(document.get("problems")))
    return row


def _scrub_age_s(scrub: Any, now: datetime) -> Optional[float]:
    """Seconds since the bench's last scrub finished (its clock: a scrub is days apart,
    so a skewed bench clock barely shows)."""
    if not isinstance(scrub, dict) or not scrub.get("finished_at"):
        return None
    try:
        return max(0.0, (now - parse_timestamp(scrub["finished_at"])).total_seconds())
    except (TypeError, ValueError):
        return None


def describe_state(row: dict[str, Any]) -> str:
    """One word or two for a bench's row: what a steward should look at first."""
    words = [w for w, on in (("offline", row["offline"]), ("behind", row["behind"]),
                             ("needs attention", row["attention"])) if on]
    return ", ".join(words) or "ok"


def read_fleet(paths: Any, offline_after: timedelta = OFFLINE_AFTER) -> list[dict[str, Any]]:
    """``fleet_status`` with this bench's central settings (for front ends: no pymongo
    there). Raises CentralConfigError when no central store is configured."""
    from sync.central import CentralDatabase
    from sync.settings import load_settings

    with CentralDatabase(load_settings(paths)) as central:
        return fleet_status(central, offline_after=offline_after)
