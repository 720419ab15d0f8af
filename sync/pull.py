"""Pull: what other benches stored, into this bench's local store.

The cursor is the central server's own write time (``sync_written_at``, set by MongoDB with
``$currentDate`` on every write), never a bench's clock or ULID order: a bench that was
offline for a week with its clock set back still writes *now* in the server's time, so
its old ULIDs arrive in every other bench's next pull. Each pass re-reads an overlap
window before the saved cursor, because a write stamped at time T may commit after a
reader has passed T; re-reading is idempotent (rows carry the central revision and only a
newer one replaces them). Pages are read in (write time, _id) order with a keyset, so
millions of documents page in constant memory.

Metadata only: a file is downloaded when someone asks for its bytes
(``BenchService.file_blob`` and :mod:`sync.fetch`), into the content-addressed file store —
the remote document never chooses a local path, and the bytes must verify against it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Optional

from app.core import deletions
from app.core.errors import ValidationError
from app.core.models import DataPoint
from app.core.store import datapoint_to_row
from app.core.timestamps import bench_zone, lab_zone
from app.service import BenchService

from sync import localrows
from sync.central import CentralDatabase
from sync.documents import BENCH, DELETED_BY, REVISION, UNDELETES, WRITTEN_AT, \
    local_datapoint, undoes
from sync.faults import classify_mongo
from sync.outbox import Outbox

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class PullReport:
    pulled: int = 0
    deleted: int = 0
    skipped: int = 0
    repaired: int = 0
    errors: list[str] = field(default_factory=list)


def _cursor_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _parse_cursor(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    return datetime.fromisoformat(text)


#: Outbox meta key: this bench has given revision 1 to older foreign documents.
FOREIGN_REVISIONS_KEY = "foreign_revisions_stamped"


class Puller:
    """One pass of pulling, run by the engine."""

    def __init__(self, service: BenchService, outbox: Outbox, central: CentralDatabase,
                 bench_id: str, overlap_s: float) -> None:
        self.service = service
        self.outbox = outbox
        self.central = central
        self.bench_id = bench_id
        self.overlap = timedelta(seconds=overlap_s)
        self.lab_zone: Optional[tzinfo] = None

    def run(self) -> PullReport:
        report = PullReport()
        self.lab_zone = self._lab_zone()
        self._stamp_foreign_documents()
        self._pull_collection(self.central.tombstones, "pull_cursor_tombstones", report,
                              self._apply_tombstones)
        self._pull_collection(self.central.datapoints, "pull_cursor_datapoints", report,
                              self._apply_documents)
        return report

    def _lab_zone(self) -> Optional[tzinfo]:
        """The zone naive times in documents MADSci wrote are read in (a setting)."""
        try:
            return lab_zone(self.service.paths)
        except ValidationError as exc:
            log.warning("time.lab_zone: %s; reading MADSci's naive times in this bench's "
                        "zone instead", exc)
            return bench_zone()

    def _stamp_foreign_documents(self) -> None:
        """Give documents no bench wrote (MADSci's own Data Manager inserts them) the
        server write time the pull cursor follows, so they reach every bench too, and
        revision 1, so a bench's edit (revision 2) can replace them.

        MongoDB sets the time (``$currentDate``), never a bench clock; the fields are
        extra ones, which MADSci's models allow and ignore."""
        datapoints = self.central.datapoints
        try:
            datapoints.update_many({WRITTEN_AT: {"$exists": False}},
                                   {"$currentDate": {WRITTEN_AT: True}, "$set": {REVISION: 1}})
            if self.outbox.meta(FOREIGN_REVISIONS_KEY) is None:
                # Once per bench: documents stamped before revisions were added to them.
                datapoints.update_many({REVISION: {"$exists": False}}, {"$set": {REVISION: 1}})
                self.outbox.set_meta(FOREIGN_REVISIONS_KEY, "1")
        except Exception as exc:  # noqa: BLE001
            raise classify_mongo(exc, what="stamping documents MADSci wrote") from exc

    def _pull_collection(self, collection: Any, cursor_key: str, report: PullReport,
                         apply: Any) -> None:
        saved = _parse_cursor(self.outbox.meta(cursor_key))
        since = saved - self.overlap if saved is not None else None
        last: Optional[tuple[datetime, str]] = None
        newest = saved
        while True:
            selector: dict[str, Any] = {BENCH: {"$ne": self.bench_id}, WRITTEN_AT: {"$ne": None}}
            if last is not None:
                selector["$or"] = [{WRITTEN_AT: {"$gt": last[0]}},
                                   {WRITTEN_AT: last[0], "_id": {"$gt": last[1]}}]
            elif since is not None:
                selector[WRITTEN_AT] = {"$gte": since}
            try:
                page = list(collection.find(selector).sort([(WRITTEN_AT, 1), ("_id", 1)])
                            .limit(PAGE_SIZE))
            except Exception as exc:  # noqa: BLE001
                raise classify_mongo(exc, what="pulling from MongoDB") from exc
            if not page:
                break
            apply(page, report)
            tail = page[-1]
            written = tail[WRITTEN_AT]
            if written.tzinfo is None:
                written = written.replace(tzinfo=timezone.utc)
            last = (written, str(tail["_id"]))
            newest = written if newest is None or written > newest else newest
            if len(page) < PAGE_SIZE:
                break
        if newest is not None and newest != saved:
            self.outbox.set_meta(cursor_key, _cursor_text(newest))

    def _apply_documents(self, page: list[dict[str, Any]], report: PullReport) -> None:
        ids = [str(doc["_id"]) for doc in page]
        known = localrows.local_revisions(self.service.store, ids)
        tombstoned = self._tombstoned(ids)
        incoming: list[tuple[DataPoint, int]] = []
        undeleting: dict[str, int] = {}
        for doc in page:
            ident = str(doc["_id"])
            if ident in tombstoned and not undoes(doc, tombstoned[ident]):
                self._repair_resurrected(ident, int(doc.get(REVISION) or 0), tombstoned[ident],
                                         report)
                continue
            revision = int(doc.get(REVISION) or 1)
            mine = known.get(ident)
            if mine is not None and mine[2] and mine[0] < revision and undoes(doc, mine[0]):
                undeleting[ident] = int(doc[UNDELETES])  # restored elsewhere: back here too
            elif mine is not None and (mine[0] >= revision or mine[2]):
                continue
            try:
                datapoint, revision = local_datapoint(doc, lab_zone=self.lab_zone)
                _check_safe(datapoint)
                datapoint_to_row(datapoint)  # what the store would refuse, refused here
            except (ValueError, ValidationError) as exc:
                report.skipped += 1
                if len(report.errors) < 20:
                    report.errors.append(f"{ident}: not stored locally ({exc})")
                log.warning("skipping central document %r: %s", ident, exc)
                continue
            incoming.append((datapoint, revision))
        if incoming:
            applying = {datapoint.datapoint_id for datapoint, _revision in incoming}
            report.pulled += localrows.apply_remote(
                self.service.store, incoming,
                {i: u for i, u in undeleting.items() if i in applying})

    def _tombstoned(self, ids: list[str]) -> dict[str, int]:
        try:
            return {str(d["_id"]): int(d.get(REVISION) or 0) for d in self.central.tombstones.find(
                {"_id": {"$in": ids}}, {REVISION: 1})}
        except Exception as exc:  # noqa: BLE001
            raise classify_mongo(exc, what="reading tombstones") from exc

    def _repair_resurrected(self, ident: str, doc_revision: int, tomb_revision: int,
                            report: PullReport) -> None:
        """A record written after its deletion (a race between benches): deletion wins."""
        try:
            self.central.datapoints.delete_one({"_id": ident})
        except Exception as exc:  # noqa: BLE001
            raise classify_mongo(exc, what="removing a deleted record") from exc
        localrows.apply_tombstones(self.service.store, [(ident, max(doc_revision, tomb_revision))])
        report.repaired += 1

    def _apply_tombstones(self, page: list[dict[str, Any]], report: PullReport) -> None:
        items = [(str(d["_id"]), int(d.get(REVISION) or 0)) for d in page]
        changed = localrows.apply_tombstones(self.service.store, items)
        report.deleted += len(changed)
        if changed:
            by = {str(d["_id"]): str(d.get(DELETED_BY) or f"bench {d.get(BENCH) or '?'}")
                  for d in page}
            deletions.note_deleted_by(self.service.store, {i: by[i] for i in changed})
        localrows.free_deleted_blobs(self.service, changed)


def _check_safe(datapoint: DataPoint) -> None:
    """Remote values that this bench will use as paths or keys must be well-formed."""
    sha256 = getattr(datapoint, "sha256", None)
    if sha256 is not None and not _SHA256.fullmatch(str(sha256)):
        raise ValueError(f"sha256 {sha256!r} is not a SHA-256 digest")
