"""Pull: what other benches stored, into this bench's local store.

The cursor is the central server's own write time (``sync_written_at``, set by MongoDB with
``$currentDate`` on every write), never a bench's clock or ULID order: a bench that was
offline for a week with its clock set back still writes *now* in the server's time, so
its old ULIDs arrive in every other bench's next pull. Each pass re-reads an overlap
window before the saved cursor, because a write stamped at time T may commit after a
reader has passed T (every bench keeps that delay under a bound: ``sync.stamps``);
re-reading is idempotent (rows carry the central revision and only a newer one replaces
them). Pages are read in (write time, _id) order with a keyset, so millions of documents
page in constant memory.

Metadata only: a file is downloaded when someone asks for its bytes
(``BenchService.file_blob`` and :mod:`sync.fetch`), into the content-addressed file store —
the remote document never chooses a local path, and the bytes must verify against it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Optional

from app.core import deletions
from app.core.errors import ValidationError
from app.core.models import DataPoint
from app.core.rows import datapoint_to_row
from app.core.timestamps import bench_zone, lab_zone
from app.service import BenchService

from sync import localrows
from sync.backends import RecordBackend, RecordCollection
from sync.documents import BENCH, DELETED_BY, REVISION, UNDELETES, WRITTEN_AT, \
    local_datapoint, undoes
from sync.faults import RetryableError
from sync.fleet import server_time
from sync.outbox import Outbox
from sync.pagesize import PageSizer
from sync.stamps import STAMP_CHUNK, WriteTimer, least_overlap_s, stamp_again, write_bound_s

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class PullReport:
    pulled: int = 0
    deleted: int = 0
    skipped: int = 0
    repaired: int = 0
    #: Central datapoints read in full this pass (new or newer ones only).
    fetched: int = 0
    #: Entries (id and revision) of the pull window read this pass.
    scanned: int = 0
    errors: list[str] = field(default_factory=list)


#: Where a pull stands: the server write time and id of the last document applied.
Position = tuple[datetime, str]

#: What the window scan reads of each datapoint: enough to tell new or newer from known.
#: On a real MongoDB the index ``benchdata_sync_pull`` covers it (sync.central).
WINDOW_FIELDS: dict[str, int] = {"_id": 1, REVISION: 1, WRITTEN_AT: 1, BENCH: 1, UNDELETES: 1}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Cursor:
    """Where a pull stands, as saved with each page.

    ``settled``: everything written up to ``position`` is stored here; a pull resumes
    right after it, with no overlap. Otherwise the next pass re-reads from ``position``
    less the overlap and less ``span_s``, the seconds between the pass's first unsettled
    page read and its last: a document passed while its write was in flight commits
    within the write bound of its stamp (``sync.stamps``), but the cursor may have moved
    on for as long as the pass went on reading."""

    position: Position
    settled: bool = False
    span_s: float = 0.0
    #: The page size reached (``sync.pagesize``): a resumed pull asks for that much again.
    page_size: int = 0

    def text(self) -> str:
        saved: dict[str, Any] = {"at": self.position[0].astimezone(timezone.utc).isoformat(),
                                 "id": self.position[1]}
        if self.settled:
            saved["settled"] = True
        elif self.span_s > 0:
            saved["span_s"] = round(self.span_s, 3)
        if self.page_size:
            saved["page_size"] = self.page_size
        return json.dumps(saved)

    @staticmethod
    def parse(text: Optional[str]) -> Optional["Cursor"]:
        """A saved cursor; the older form (a bare time) resumes after everything at that
        time, less the overlap."""
        if not text:
            return None
        if text.startswith("{"):
            saved = json.loads(text)
            return Cursor((_aware(datetime.fromisoformat(saved["at"])), str(saved["id"])),
                          bool(saved.get("settled")), float(saved.get("span_s") or 0.0),
                          int(saved.get("page_size") or 0))
        return Cursor((_aware(datetime.fromisoformat(text)), "\uffff"))


def _position_of(document: dict[str, Any]) -> Position:
    return _aware(document[WRITTEN_AT]), str(document["_id"])


def _after(position: Position) -> dict[str, Any]:
    """Documents after ``position`` in (write time, _id) order: the keyset of a page."""
    return {WRITTEN_AT: {"$ne": None},
            "$or": [{WRITTEN_AT: {"$gt": position[0]}},
                    {WRITTEN_AT: position[0], "_id": {"$gt": position[1]}}]}


#: Outbox meta key: this bench has given revision 1 to older foreign documents.
FOREIGN_REVISIONS_KEY = "foreign_revisions_stamped"
#: Outbox meta key: ids of documents MADSci wrote whose stamp write was slow (JSON list).
STAMPING_KEY = "foreign_stamps_pending"
DATAPOINTS_CURSOR = "pull_cursor_datapoints"
TOMBSTONES_CURSOR = "pull_cursor_tombstones"


class Puller:
    """One pass of pulling, run by the engine.

    Each collection is read in (write time, _id) pages from the saved cursor minus the
    overlap window. The cursor (the last page's position, never moving back) is saved in
    the same SQLite transaction as that page's rows, so a pull killed anywhere resumes at
    the page it was in. Datapoints are scanned as (id, revision) only; full documents are
    read by id for those new here or newer than the local row — the overlap re-read costs
    index entries, not documents."""

    def __init__(self, service: BenchService, outbox: Outbox, central: RecordBackend,
                 bench_id: str, overlap_s: float, page_size: int = PAGE_SIZE,
                 scope: Optional[dict[str, list[str]]] = None) -> None:
        """``scope``: ownership field (``lab_id`` …) → ids this bench subscribes to;
        None pulls everything."""
        self.service = service
        self.outbox = outbox
        self.central = central
        self.bench_id = bench_id
        # Never below the bound writers keep their stamps to (sync.stamps).
        self.overlap = timedelta(seconds=least_overlap_s(overlap_s))
        self.write_bound_s = write_bound_s(overlap_s)
        self.page_size = page_size
        self.scope = {k: sorted(v) for k, v in sorted((scope or {}).items()) if v} or None
        self.lab_zone: Optional[tzinfo] = None

    def run(self, *, stamp: bool = True) -> PullReport:
        report = PullReport()
        self.lab_zone = self._lab_zone()
        if stamp:
            self._stamp_foreign_documents()
        self._pull_collection(self.central.tombstones, TOMBSTONES_CURSOR, None, report,
                              self._apply_tombstones)
        self._pull_collection(self.central.datapoints, self._datapoints_cursor(),
                              WINDOW_FIELDS, report, self._apply_documents, self._in_scope)
        return report

    def pull_ids(self, ids: list[str]) -> int:
        """Datapoints asked for by id (outside the scope, say): read whole, checked and
        stored as any pulled row, unless deleted centrally; return how many were stored."""
        self.lab_zone = self._lab_zone()
        tombstoned = self._tombstoned(ids)
        report = PullReport()
        incoming = [parsed for parsed in (self._parse(doc, report) for doc in
                                          self._full_documents([i for i in ids
                                                                if i not in tombstoned]))
                    if parsed is not None]
        return localrows.apply_remote(self.service.store, incoming)

    def _lab_zone(self) -> Optional[tzinfo]:
        return reading_zone(self.service)

    def _stamp_foreign_documents(self) -> None:
        """Give documents no bench wrote (MADSci's own Data Manager inserts them) the
        server write time the pull cursor follows, so they reach every bench too, and
        revision 1, so a bench's edit (revision 2) can replace them.

        MongoDB sets the time (``$currentDate``), never a bench clock; the fields are
        extra ones, which MADSci's models allow and ignore. A stamp write that took longer
        than the bound is stamped again (``sync.stamps``); the ids are remembered here
        until it is, so a kill in between is finished by the next pass."""
        datapoints = self.central.datapoints
        try:
            self._finish_stamping()
            while True:
                ids = [str(d["_id"]) for d in datapoints.find(
                    {WRITTEN_AT: {"$exists": False}}, {"_id": 1}, limit=STAMP_CHUNK)]
                if not ids:
                    break
                self.outbox.set_meta(STAMPING_KEY, json.dumps(ids))
                with WriteTimer(self.write_bound_s) as timer:
                    datapoints.update_many({"_id": {"$in": ids}, WRITTEN_AT: {"$exists": False}},
                                           {"$currentDate": {WRITTEN_AT: True},
                                            "$set": {REVISION: 1}})
                if not timer.slow:
                    self.outbox.set_meta(STAMPING_KEY, None)
                self._finish_stamping()
                if len(ids) < STAMP_CHUNK:
                    break
            if self.outbox.meta(FOREIGN_REVISIONS_KEY) is None:
                # Once per bench: documents stamped before revisions were added to them.
                datapoints.update_many({REVISION: {"$exists": False}}, {"$set": {REVISION: 1}})
                self.outbox.set_meta(FOREIGN_REVISIONS_KEY, "1")
        except Exception as exc:  # noqa: BLE001
            raise self.central.classify(exc, what="stamping documents MADSci wrote") from exc

    def _finish_stamping(self) -> None:
        """Stamp again the documents a slow (or interrupted) stamp write left."""
        pending = self.outbox.meta(STAMPING_KEY)
        if not pending:
            return
        ids = json.loads(pending)
        if not stamp_again(self.central.datapoints, ids, self.write_bound_s):
            raise RetryableError("the central store is too slow to stamp the documents MADSci "
                                 "wrote; trying again next pass")
        self.outbox.set_meta(STAMPING_KEY, None)

    def _datapoints_cursor(self) -> str:
        """One cursor per scope: a scope widened later is pulled from its start."""
        if self.scope is None:
            return DATAPOINTS_CURSOR
        digest = hashlib.sha256(json.dumps(self.scope).encode()).hexdigest()[:12]
        return f"{DATAPOINTS_CURSOR}:{digest}"

    def _in_scope(self, selector: dict[str, Any]) -> dict[str, Any]:
        return in_scope(selector, self.scope)

    def _pull_collection(self, collection: RecordCollection, cursor_key: str,
                         fields: Optional[dict[str, int]], report: PullReport,
                         apply: Callable[[list[dict[str, Any]], PullReport, dict[str, Optional[str]]],
                                         None],
                         narrow: Callable[[dict[str, Any]], dict[str, Any]] = lambda s: s
                         ) -> None:
        resumed = Cursor.parse(self.outbox.meta(cursor_key))
        saved = resumed.position if resumed is not None else None
        # A first pull, or one resuming a settled cursor, may be long: its pages can settle.
        may_settle = resumed is None or resumed.settled
        settled = resumed is not None and resumed.settled
        started: Optional[datetime] = None
        selector: dict[str, Any] = {WRITTEN_AT: {"$ne": None}}
        if resumed is not None:
            selector = _after(resumed.position) if resumed.settled else \
                {WRITTEN_AT: {"$gte": resumed.position[0] - self.overlap
                              - timedelta(seconds=resumed.span_s)}}
        sizer = PageSizer(self.page_size)  # grows the pages while the server is slow
        if resumed is not None and resumed.page_size > self.page_size:
            sizer.size = min(sizer.cap, resumed.page_size)  # where a stopped pull had got to
        unsettled_since: Optional[float] = None  # when the first unsettled page was asked
        while True:
            selector = narrow(selector)
            asked = time.monotonic()
            if unsettled_since is None:
                unsettled_since = asked
            page_started = sizer.start()
            try:
                page = list(collection.find(selector, fields, sort=[(WRITTEN_AT, 1), ("_id", 1)],
                                            limit=sizer.size))
            except Exception as exc:  # noqa: BLE001
                raise self.central.classify(exc, what="pulling from MongoDB") from exc
            span_s = time.monotonic() - unsettled_since
            if not page:
                break
            more = len(page) == sizer.size
            sizer.took(page_started, len(page))
            if (more or len(page) > self.page_size) and may_settle and started is None:
                started = self._read_since(asked)
            slices = [page[i:i + self.page_size] for i in range(0, len(page), self.page_size)]
            for index, piece in enumerate(slices):
                # Each slice of a grown page is applied like a page of its own: its own
                # transaction and cursor, so a kill re-reads at most one slice.
                position = _position_of(piece[-1])
                cursor = position if saved is None or position > saved else saved
                follows = more or index < len(slices) - 1
                settled = follows and self._settles(cursor, started)
                grown = sizer.size if sizer.size > self.page_size else 0
                apply(piece, report,
                      {cursor_key: Cursor(cursor, settled, span_s, grown).text()})
                saved = cursor
            if settled:
                unsettled_since = None
            if not more:
                break
            selector = _after(_position_of(page[-1]))
        if saved is not None and settled:
            # Caught up: the next pass re-reads its overlap again, as every pass does.
            self.outbox.set_meta(cursor_key, Cursor(saved).text())

    def _read_since(self, asked: float) -> Optional[datetime]:
        """A server time no later than the server's reading of the page asked for at
        ``asked`` (monotonic): its clock now, less the time elapsed since. Asked only by a
        pull of more than one page, so idle passes send no extra request."""
        now = server_time(self.central)
        if now is None:
            return None
        return now - timedelta(seconds=time.monotonic() - asked)

    def _settles(self, cursor: Position, started: Optional[datetime]) -> bool:
        """Whether every document written at or before ``cursor`` is stored here once this
        page is: true when the cursor lies more than the overlap before ``started``, a
        server time before this pass read its first page. A write stamped T commits within
        the overlap of T (the overlap's premise), so all of those had committed before any
        page of this pass was read, and the pages from the pass's start up to the cursor
        saw them. A pull killed after such a page resumes right after it, re-reading only
        the page it was in — not the overlap's window, which in a collection written in a
        few minutes (a migration, a bulk import) would be most of it."""
        return started is not None and cursor[0] < started - self.overlap

    def _apply_documents(self, page: list[dict[str, Any]], report: PullReport,
                         cursor: dict[str, Optional[str]]) -> None:
        report.scanned += len(page)
        theirs = [doc for doc in page if doc.get(BENCH) != self.bench_id]
        ids = [str(doc["_id"]) for doc in theirs]
        known = localrows.local_revisions(self.service.store, ids)
        by_id = {str(doc["_id"]): doc for doc in theirs}
        wanted: dict[str, int] = {}
        for doc in theirs:
            ident = str(doc["_id"])
            revision = int(doc.get(REVISION) or 1)
            mine = known.get(ident)
            if mine is not None and mine[0] >= revision and not mine[2]:
                continue  # held here, as new as the central one
            wanted[ident] = revision
        # Deleted here but still central (a write that raced its deletion) is checked too;
        # a record that restores its datapoint over the tombstone is not such a race.
        tombstoned = self._tombstoned(list(wanted)) if wanted else {}
        for ident, tomb_revision in tombstoned.items():
            if not undoes(by_id[ident], tomb_revision):
                self._repair_resurrected(ident, wanted.pop(ident), tomb_revision, report)

        def newer(ident: str, revision: int) -> bool:
            mine = known.get(ident)
            if mine is None:
                return True
            if mine[2]:  # deleted here: only a restore of that deletion brings it back
                return mine[0] < revision and undoes(by_id[ident], mine[0])
            return mine[0] < revision

        wanted = {i: r for i, r in wanted.items() if newer(i, r)}
        incoming: list[tuple[DataPoint, int]] = []
        undeleting: dict[str, int] = {}
        for doc in self._full_documents(list(wanted)):
            report.fetched += 1
            parsed = self._parse(doc, report)
            if parsed is None:
                continue
            incoming.append(parsed)
            ident = str(doc["_id"])
            if ident in known and known[ident][2] and undoes(doc, known[ident][0]):
                undeleting[ident] = int(doc[UNDELETES])  # restored elsewhere: back here too
        report.pulled += localrows.apply_remote(self.service.store, incoming, undeleting,
                                                meta=cursor)
    def _full_documents(self, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        try:
            return list(self.central.datapoints.find({"_id": {"$in": ids}},
                                                     batch_size=len(ids)))
        except Exception as exc:  # noqa: BLE001
            raise self.central.classify(exc, what="pulling from MongoDB") from exc

    def _parse(self, doc: dict[str, Any], report: PullReport) -> Optional[tuple[DataPoint, int]]:
        ident = str(doc["_id"])
        try:
            datapoint, revision = local_datapoint(doc, lab_zone=self.lab_zone)
            _check_safe(datapoint)
            datapoint_to_row(datapoint)  # what the store would refuse, refused here
        except (ValueError, ValidationError) as exc:
            report.skipped += 1
            if len(report.errors) < 20:
                report.errors.append(f"{ident}: not stored locally ({exc})")
            log.warning("skipping central document %r: %s", ident, exc)
            return None
        return datapoint, revision

    def _tombstoned(self, ids: list[str]) -> dict[str, int]:
        try:
            return {str(d["_id"]): int(d.get(REVISION) or 0) for d in self.central.tombstones.find(
                {"_id": {"$in": ids}}, {REVISION: 1})}
        except Exception as exc:  # noqa: BLE001
            raise self.central.classify(exc, what="reading tombstones") from exc

    def _repair_resurrected(self, ident: str, doc_revision: int, tomb_revision: int,
                            report: PullReport) -> None:
        """A record written after its deletion (a race between benches): deletion wins."""
        try:
            self.central.datapoints.delete_one({"_id": ident})
        except Exception as exc:  # noqa: BLE001
            raise self.central.classify(exc, what="removing a deleted record") from exc
        localrows.apply_tombstones(self.service.store, [(ident, max(doc_revision, tomb_revision))])
        report.repaired += 1

    def _apply_tombstones(self, page: list[dict[str, Any]], report: PullReport,
                          cursor: dict[str, Optional[str]]) -> None:
        items = [(str(d["_id"]), int(d.get(REVISION) or 0)) for d in page
                 if d.get(BENCH) != self.bench_id]
        changed = localrows.apply_tombstones(self.service.store, items, meta=cursor)
        report.deleted += len(changed)
        if changed:
            by = {str(d["_id"]): str(d.get(DELETED_BY) or f"bench {d.get(BENCH) or '?'}")
                  for d in page}
            deletions.note_deleted_by(self.service.store, {i: by[i] for i in changed})
        localrows.free_deleted_blobs(self.service, changed)


def in_scope(selector: dict[str, Any], scope: Optional[dict[str, list[str]]]
             ) -> dict[str, Any]:
    """``selector`` narrowed to ``scope`` (ownership field → ids; None: everything).
    Equalities under ``$or`` rather than ``$in``: nx-27017 0.8.1 answers ``$in`` on a
    nested field beside a date range with nothing at all (MongoDB treats both forms
    alike)."""
    if scope is None:
        return selector
    terms = [{f"ownership_info.{field}": ident} for field, ids in scope.items()
             for ident in ids]
    narrowed = terms[0] if len(terms) == 1 else {"$or": terms}
    if "$or" not in selector and "$or" not in narrowed and selector.keys().isdisjoint(narrowed):
        # Beside each other, not under $and: nx-27017 answers the first page's $and by
        # reading and sorting the whole collection in Python (62 s at 1M documents), the
        # same fields side by side in SQL. Never beside a $or: nx-27017 then lets
        # documents of other scopes through (MongoDB treats all three forms alike).
        return {**selector, **narrowed}
    return {"$and": [selector, narrowed]}


def reading_zone(service: BenchService) -> Optional[tzinfo]:
    """The zone naive times in documents MADSci wrote are read in (a setting)."""
    try:
        return lab_zone(service.paths)
    except ValidationError as exc:
        log.warning("time.lab_zone: %s; reading MADSci's naive times in this bench's "
                    "zone instead", exc)
        return bench_zone()


def _check_safe(datapoint: DataPoint) -> None:
    """Remote values that this bench will use as paths or keys must be well-formed."""
    sha256 = getattr(datapoint, "sha256", None)
    if sha256 is not None and not _SHA256.fullmatch(str(sha256)):
        raise ValueError(f"sha256 {sha256!r} is not a SHA-256 digest")
