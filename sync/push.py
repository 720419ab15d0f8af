"""Push: local changes to the central store — files first, verified, then the records.

For each due outbox item: a file is uploaded and verified (``sync.objects``); then its
record is upserted in MADSci's shape, in batches, keyed by ``_id`` and guarded by the
revision (``sync_revision``): the write applies only over an older revision, so an older
change never overwrites a newer one, and a retry after a crash finds its own identical
record (same revision, same bench) and is confirmed as it is. When another bench got
there first with the same or a newer revision, our change is lifted above it and pushed
again — the last writer (in the central store's order, not by any clock) wins. A deletion
is a tombstone (its own collection) and then the record's removal; deletions are final and
win over concurrent edits.

An item is confirmed only when its central record reads back as written
(``sync.readback``). The central work of a batch (write, read-back, local confirmation)
runs on a thread of its own while this thread prepares the next batch (outbox, local rows,
documents, file uploads), so the central store never waits for the bench between batches.
The central store is any ``sync.backends.RecordBackend``; the bucket an ``ObjectStore``
over any ``ObjectBackend``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from app.service import BenchService

from sync import localrows
from app.core import deletions
from sync.backends import BulkWriteError, DeleteOne, RecordBackend, RecordCollection, UpdateOne
from sync.documents import BENCH, DELETED_BY, REVISION, WRITTEN_AT, DocumentTooLarge, \
    central_document
from sync.faults import DUPLICATE_KEY, CentralConfigError, RejectedError, RetryableError, \
    SyncError, classify_write_error, duplicate_key_on_id, duplicate_key_rejection
from sync.objectnames import object_name_for, safe_filename
from sync.objects import ObjectStore
from sync.outbox import RECORDED, UPLOADING, Outbox, OutboxItem, SavingListener
from sync.readback import BatchOutcome, PreparedRecords, RecordQueue, Signature, \
    read_back_fields, reads_back, signature
from sync.settings import CentralSettings
from sync.stamps import WriteTimer, slow_write_message, stamp_again, write_bound_s

log = logging.getLogger(__name__)

#: After this many network failures in a row, a pass stops trying more uploads.
MAX_CONSECUTIVE_NETWORK_FAILURES = 3
#: How often one item may be lifted above a concurrent writer within one pass.
MAX_REBASES_PER_PASS = 3
@dataclass
class PushReport:
    confirmed: int = 0
    uploaded_bytes: int = 0
    retrying: int = 0
    quarantined: int = 0
    #: Records and deletions stamped again after a slow write (``sync.stamps``).
    restamped: int = 0
    errors: list[str] = field(default_factory=list)

    def note(self, error: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(error)


class Pusher:
    """One pass of pushing, run by the engine."""

    def __init__(self, service: BenchService, outbox: Outbox, central: RecordBackend,
                 objects: Optional[ObjectStore], settings: CentralSettings, bench_id: str,
                 progress: Optional[dict[str, tuple[int, int]]] = None,
                 stop: Optional[threading.Event] = None,
                 objects_problem: Optional[SyncError] = None) -> None:
        self.service = service
        #: Why object storage cannot be used this pass (files wait; values go on).
        self.objects_problem = objects_problem
        self.outbox = outbox
        self.central = central
        self.objects = objects
        self.settings = settings
        self.write_bound_s = write_bound_s(settings.pull_overlap_s)
        self.bench_id = bench_id
        self.progress = progress if progress is not None else {}
        self.stop = stop or threading.Event()
        self._multipart_gate = threading.Semaphore(1)  # bounded memory for large files
        self._network_failures = 0
        self._lock = threading.Lock()
        self._records = RecordQueue()
        self._again: set[str] = set()

    # -- the pass --------------------------------------------------------------------------

    def run(self, *, force: bool = False) -> PushReport:
        report = PushReport()
        try:
            self._run(report, force)
        except BaseException:
            self._close_records_quietly()
            raise
        self._records.close()
        return report

    def _close_records_quietly(self) -> None:
        """The pass failed already: let the batch in flight finish, raise the first error.

        Records that batch wrote but this pass does not confirm are confirmed next pass
        (their write conflicts with itself and reads back as ours)."""
        try:
            self._records.close()
        except Exception:  # noqa: BLE001 - the pass's own error is the one to raise
            log.exception("writing records failed while the pass was failing")

    def _run(self, report: PushReport, force: bool) -> None:
        self.outbox.collect()
        rebases: dict[str, int] = {}
        after: Optional[tuple[str, str]] = None
        while not self.stop.is_set():
            items = self.outbox.due(limit=self.settings.batch_size, force=force, after=after)
            if not items:
                break
            after = (items[-1].enqueued_at, items[-1].datapoint_id)
            self._push_batch(items, report, rebases)
            self._push_again(report, rebases)
            if self._network_failures >= MAX_CONSECUTIVE_NETWORK_FAILURES:
                break
        self._drain(report, rebases)

    def _push_again(self, report: PushReport, rebases: dict[str, int]) -> None:
        """Push the items lifted above a concurrent writer, once their batch has finished."""
        again, self._again = self._again, set()
        if again and not self.stop.is_set():  # stopped: they stay due for the next pass
            self._push_batch(self.outbox.items(sorted(again)), report, rebases)

    def _drain(self, report: PushReport, rebases: dict[str, int]) -> None:
        """Finish the batch in flight and what it lifts (``MAX_REBASES_PER_PASS`` bounds
        the rounds), so the pass ends with every written record read back."""
        while True:
            self._settle(self._records.wait(), report)
            if not self._again or self.stop.is_set():
                return
            self._push_again(report, rebases)

    def _push_batch(self, items: Sequence[OutboxItem], report: PushReport,
                    rebases: dict[str, int]) -> None:
        """Upload the batch's files and build its records here; write them on the records
        thread; meanwhile confirm the batch before locally."""
        rows = localrows.fetch_rows(self.service.store, [i.datapoint_id for i in items])
        work: list[dict[str, Any]] = []
        for item in items:
            row = rows.get(item.datapoint_id)
            if row is None:
                self.outbox.drop(item.datapoint_id)
                continue
            work.append(row)
        self._note_undeletes(work)
        objects = self.outbox.objects_for([r["id"] for r in work])
        to_upload = [r for r in work if self._needs_upload(r, objects.get(r["id"]))]
        if to_upload:
            self._upload_all(to_upload, report)
            objects = self.outbox.objects_for([r["id"] for r in work])
        ready = [r for r in work if not self._needs_upload(r, objects.get(r["id"]))]
        deleted = [r for r in ready if r["deleted"]]
        live = [r for r in ready if not r["deleted"]]
        prepared = self._prepare_records(live, objects, report) if live else None
        if prepared is None and not deleted:
            return
        finished = self._records.submit(
            lambda: self._record_batch(prepared, deleted, report, rebases))
        self._settle(finished, report)

    def _note_undeletes(self, rows: list[dict[str, Any]]) -> None:
        """Restored rows carry the revision of the deletion they undo into their record
        (``sync_undeletes``). Only rows past revision 2 can be restored ones."""
        candidates = [r["id"] for r in rows if not r["deleted"] and int(r["revision"]) > 2]
        if not candidates:
            return
        undeletes = deletions.undeletes_of(self.service.store, candidates)
        for row in rows:
            if row["id"] in undeletes:
                row["undeletes"] = undeletes[row["id"]]

    def _settle(self, outcome: BatchOutcome, report: PushReport) -> None:
        """Local bookkeeping of a finished batch: one transaction for its confirmations."""
        if outcome.confirmed:
            self.outbox.confirm_many(outcome.confirmed)
            with self._lock:
                report.confirmed += len(outcome.confirmed)
        self._again |= outcome.again

    def _record_batch(self, prepared: Optional[PreparedRecords], deleted: list[dict[str, Any]],
                      report: PushReport, rebases: dict[str, int]) -> BatchOutcome:
        """A batch's central work (on the records thread)."""
        outcome = BatchOutcome()
        if prepared is not None:
            outcome.merge(self._write_records(prepared, report, rebases))
        if deleted:
            self._push_tombstones(deleted, report)
        return outcome

    @staticmethod
    def _needs_upload(row: dict[str, Any], stored: Optional[dict[str, Any]]) -> bool:
        if row["data_type"] != "file" or row["deleted"]:
            return False
        return stored is None or stored["sha256"] != row["sha256"]

    # -- files -----------------------------------------------------------------------------

    def _upload_all(self, rows: list[dict[str, Any]], report: PushReport) -> None:
        if self.objects is None and self.objects_problem is not None:
            # Not tried, so no backoff: they go once the bucket is usable again.
            error = f"waiting for object storage: {self.objects_problem}"
            self.outbox.note_error([(r["id"], int(r["revision"])) for r in rows], error)
            with self._lock:
                report.retrying += len(rows)
                report.note(error)
            return
        if self.objects is None:
            raise CentralConfigError("files are waiting but object storage is not configured")
        self._network_failures = 0
        workers = max(1, min(self.settings.upload_workers, len(rows)))
        errors: list[BaseException] = []
        if workers == 1:
            for row in rows:
                self._upload_one(row, report, errors)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync-upload") as pool:
                for future in [pool.submit(self._upload_one, row, report, errors) for row in rows]:
                    future.result()
        config = [e for e in errors if isinstance(e, CentralConfigError)]
        if config:
            raise config[0]

    def _upload_one(self, row: dict[str, Any], report: PushReport,
                    errors: list[BaseException]) -> None:
        assert self.objects is not None
        datapoint_id, revision = row["id"], int(row["revision"])
        if self.stop.is_set() or errors or \
                self._network_failures >= MAX_CONSECUTIVE_NETWORK_FAILURES:
            return
        try:
            sha256 = str(row["sha256"] or "")
            if not sha256 or not self.service.files.exists(sha256):
                raise RejectedError("the captured file is missing from this bench's file store")
            size = int(row["size_bytes"] if row["size_bytes"] is not None else
                       self.service.files.path_for(sha256).stat().st_size)
            filename = row["filename"] or Path(str(row["path"] or "file")).name
            object_name = object_name_for(self.settings, datapoint_id, filename)
            self.outbox.mark(datapoint_id, revision, UPLOADING, bytes_total=size)
            listener = SavingListener(self.outbox, datapoint_id, revision, object_name, size,
                                      self.progress)
            saved = self.outbox.saved_upload(datapoint_id, object_name)
            if saved is not None:
                listener.upload_id = saved.upload_id  # resumed: parts go on under this id
            gate = self._multipart_gate if size > self.settings.part_size else None
            if gate is not None:
                gate.acquire()
            try:
                stored = self.objects.upload(
                    self.service.files.path_for(sha256), object_name=object_name, size=size,
                    sha256=sha256, content_type=row["content_type"] or "application/octet-stream",
                    datapoint_id=datapoint_id, filename=safe_filename(filename), saved=saved,
                    listener=listener)
            finally:
                if gate is not None:
                    gate.release()
            self.outbox.record_object(datapoint_id, revision, stored, str(self.settings.endpoint))
            with self._lock:
                self._network_failures = 0
                report.uploaded_bytes += size
        except RetryableError as exc:
            with self._lock:
                self._network_failures += 1
            self._retry([(datapoint_id, revision)], str(exc), report)
        except RejectedError as exc:
            self._abandon_upload(datapoint_id)
            self._quarantine(datapoint_id, revision, str(exc), report)
        except CentralConfigError as exc:
            errors.append(exc)
        except Exception as exc:  # noqa: BLE001 - never let one file stop the engine
            log.exception("unexpected error uploading %s", datapoint_id)
            self._retry([(datapoint_id, revision)], f"{type(exc).__name__}: {exc}", report)

    def _abandon_upload(self, datapoint_id: str) -> None:
        with self.service.store.reader() as conn:
            row = conn.execute("SELECT object_name, upload_id FROM sync_uploads WHERE "
                               "datapoint_id = ?", (datapoint_id,)).fetchone()
        if row is not None and self.objects is not None:
            try:
                self.objects.abort(row[0], row[1])
            except SyncError as exc:
                log.warning("could not abort the upload of %s: %s", datapoint_id, exc)
                return
        self.outbox.clear_upload(datapoint_id)

    # -- records ---------------------------------------------------------------------------

    def _prepare_records(self, rows: list[dict[str, Any]], objects: dict[str, dict[str, Any]],
                         report: PushReport) -> Optional[PreparedRecords]:
        """The batch's documents and upserts (None if none is left to write)."""
        rows = self._drop_tombstoned(rows)
        documents = self._documents(rows, objects, report)
        if not documents:
            return None
        rows = [r for r in rows if r["id"] in documents]  # the others are quarantined
        return PreparedRecords(rows, objects, documents, self._upserts(documents))

    def _push_records(self, rows: list[dict[str, Any]], objects: dict[str, dict[str, Any]],
                      report: PushReport, rebases: dict[str, int]) -> BatchOutcome:
        """Build and write at once (isolating a refused batch, one row at a time)."""
        prepared = self._prepare_records(rows, objects, report)
        if prepared is None:
            return BatchOutcome()
        return self._write_records(prepared, report, rebases)

    def _write_records(self, prepared: PreparedRecords, report: PushReport,
                       rebases: dict[str, int]) -> BatchOutcome:
        """Upsert the records and read them back: those that read back as written are
        to be confirmed; those lifted above a concurrent writer are to be pushed again."""
        documents = prepared.documents
        fields = read_back_fields(documents.values())
        wrote = {i: signature(d, fields) for i, d in documents.items()}
        revisions = {i: int(d[REVISION]) for i, d in documents.items()}
        ids = list(documents)
        failed: dict[str, SyncError] = {}
        conflicts: list[str] = []
        timer = WriteTimer(self.write_bound_s)
        try:
            with timer:
                self.central.datapoints.bulk_write(prepared.upserts)
        except BulkWriteError as exc:
            for error in exc.write_errors:
                ident = ids[int(error["index"])]
                code = int(error.get("code", 0))
                if code == DUPLICATE_KEY and duplicate_key_on_id(error):
                    conflicts.append(ident)  # another revision holds _id: resolved below
                elif code == DUPLICATE_KEY:
                    failed[ident] = duplicate_key_rejection(error, what=ident)
                else:
                    failed[ident] = classify_write_error(code, str(error.get("errmsg")),
                                                         what=ident)
        except Exception as exc:  # noqa: BLE001 - sorted by the backend
            error = self.central.classify(exc, what="writing records")
            if isinstance(error, CentralConfigError):
                raise error from exc
            if isinstance(error, RejectedError) and len(ids) > 1:
                return self._isolate(prepared.rows, prepared.objects, report, rebases)
            self._fail_all([(i, revisions[i]) for i in ids], error, report)
            return BatchOutcome()
        for ident, error in failed.items():
            if isinstance(error, CentralConfigError):
                raise error
            self._fail_all([(ident, revisions[ident])], error, report)
        outcome = self._resolve_conflicts(conflicts, wrote, fields, report, rebases)
        # Our own earlier writes found in place: how long those took is not known.
        unsure = list(outcome.confirmed)
        written = {i: wrote[i] for i in ids if i not in failed and i not in conflicts}
        if written:
            read = self._read_back(written, fields, report)
            outcome.confirmed.extend(read)
            if timer.slow:
                unsure.extend(read)
        if unsure:
            late = self._stamp_again(self.central.datapoints, unsure, timer, report)
            outcome.confirmed = [item for item in outcome.confirmed if item not in late]
        return outcome

    def _stamp_again(self, collection: RecordCollection, items: list[tuple[str, int]],
                     timer: WriteTimer, report: PushReport) -> set[tuple[str, int]]:
        """Stamp written items again (``sync.stamps``); those that could not be are
        returned, to wait for the next pass."""
        try:
            stamped = stamp_again(collection, [ident for ident, _revision in items],
                                  timer.bound_s)
            reason = None if stamped else slow_write_message(timer)
        except Exception as exc:  # noqa: BLE001 - sorted by the backend
            reason = str(self.central.classify(exc, what="stamping records again"))
        if reason is not None:
            self._retry(items, reason, report)
            return set(items)
        log.info("%d record(s) stamped again after a %.1f s write", len(items), timer.seconds)
        with self._lock:
            report.restamped += len(items)
        return set()

    def _documents(self, rows: list[dict[str, Any]], objects: dict[str, dict[str, Any]],
                   report: PushReport) -> dict[str, dict[str, Any]]:
        """Central documents by id; rows that cannot become one are quarantined."""
        documents: dict[str, dict[str, Any]] = {}
        for row in rows:
            try:
                documents[row["id"]] = central_document(
                    row, bench_id=self.bench_id, stored_object=objects.get(row["id"]),
                    settings=self.settings)
            except (DocumentTooLarge, ValueError) as exc:
                self._quarantine(row["id"], int(row["revision"]), str(exc), report)
        return documents

    @staticmethod
    def _upserts(documents: dict[str, dict[str, Any]]) -> list[UpdateOne]:
        """One guarded upsert per document, in ``documents`` order (error indexes map back).

        Strictly older revisions only; our own retry then "conflicts" with itself and is
        recognised by its revision and bench. (No $or beside _id: nx-27017 0.8.1
        mis-handles it.)
        """
        return [UpdateOne({"_id": ident, REVISION: {"$lt": document[REVISION]}},
                          {"$set": {k: v for k, v in document.items() if k != "_id"},
                           "$currentDate": {WRITTEN_AT: True}}, upsert=True)
                for ident, document in documents.items()]

    def _isolate(self, rows: list[dict[str, Any]], objects: dict[str, dict[str, Any]],
                 report: PushReport, rebases: dict[str, int]) -> BatchOutcome:
        """A batch the driver refused as a whole: push one by one to find the bad item."""
        outcome = BatchOutcome()
        for row in rows:
            outcome.merge(self._push_records([row], objects, report, rebases))
        return outcome

    def _drop_tombstoned(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows deleted centrally meanwhile lose their change: deletions are final.

        First captures (revision 1, captured here) cannot have been deleted elsewhere
        unless a crash hid an earlier push; pull repairs that rare case, so they skip the
        look-up (it costs a third of the throughput of a bulk push).
        """
        suspects = [r["id"] for r in rows if int(r["revision"]) > 1 or r["origin"] != "local"]
        if not suspects:
            return rows
        try:
            tombstoned = {d["_id"]: int(d.get(REVISION) or 0) for d in self.central.tombstones.find(
                {"_id": {"$in": suspects}}, {REVISION: 1})}
        except Exception as exc:  # noqa: BLE001
            raise self.central.classify(exc, what="reading tombstones") from exc
        if not tombstoned:
            return rows
        tombstoned = self._lift_undone_tombstones(rows, tombstoned)
        if not tombstoned:
            return rows
        localrows.apply_tombstones(self.service.store, list(tombstoned.items()))
        log.info("%d local change(s) lost to deletions made elsewhere", len(tombstoned))
        return [r for r in rows if r["id"] not in tombstoned]

    def _lift_undone_tombstones(self, rows: list[dict[str, Any]],
                                tombstoned: dict[str, int]) -> dict[str, int]:
        """Tombstones our restored rows undo are removed centrally (the record follows in
        this batch); the others are returned: they still win."""
        undone = {r["id"]: int(r["undeletes"]) for r in rows
                  if r.get("undeletes") is not None and r["id"] in tombstoned
                  and int(r["undeletes"]) >= tombstoned[r["id"]]}
        if undone:
            try:
                # Only a tombstone no newer than the deletion undone: a later deletion
                # made elsewhere meanwhile stays and wins at the next pass.
                self.central.tombstones.bulk_write(
                    [DeleteOne({"_id": ident, REVISION: {"$lte": revision}})
                     for ident, revision in undone.items()])
            except Exception as exc:  # noqa: BLE001
                raise self.central.classify(exc, what="removing undone deletions") from exc
            log.info("%d deleted datapoint(s) restored centrally", len(undone))
        return {i: r for i, r in tombstoned.items() if i not in undone}

    def _find_records(self, ids: Sequence[str],
                      fields: Sequence[str]) -> dict[str, Signature]:
        """The read-back signatures of these records, in one round trip (the projection is
        a few small fields, so the whole batch fits one reply)."""
        cursor = self.central.datapoints.find({"_id": {"$in": list(ids)}},
                                              {key: 1 for key in fields},
                                              batch_size=max(1, len(ids)))
        return {str(d["_id"]): signature(d, fields) for d in cursor}

    def _resolve_conflicts(self, conflicts: list[str], wrote: dict[str, Signature],
                           fields: Sequence[str], report: PushReport,
                           rebases: dict[str, int]) -> BatchOutcome:
        """Records our write did not replace: our own earlier write (to confirm), or
        another (ours is lifted above it, to push again)."""
        outcome = BatchOutcome()
        if not conflicts:
            return outcome
        try:
            remote = self._find_records(conflicts, fields)
        except Exception as exc:  # noqa: BLE001
            self._fail_all([(i, int(wrote[i][0])) for i in conflicts],
                           self.central.classify(exc, what="reading conflicting records"), report)
            return outcome
        for ident in conflicts:
            found = remote.get(ident)
            local = int(wrote[ident][0])
            if found is None:  # removed meanwhile; try again next pass
                self._retry([(ident, local)], "the record changed while it was written", report)
                continue
            if found == wrote[ident]:
                # Our own earlier write (a crash hid its confirmation): it stands as it is.
                outcome.confirmed.append((ident, local))
                continue
            # A newer revision from elsewhere, or our revision number holding something
            # else (another bench's, or a damaged record): lift ours above it and rewrite.
            theirs = int(found[0] or 0)
            rebases[ident] = rebases.get(ident, 0) + 1
            if rebases[ident] > MAX_REBASES_PER_PASS:
                self._retry([(ident, local)], "another bench keeps changing this datapoint", report)
                continue
            if self.outbox.rebase(ident, local, theirs + 1):
                log.info("datapoint %s changed elsewhere (revision %d); ours becomes %d",
                         ident, theirs, theirs + 1)
                outcome.again.add(ident)
        return outcome

    def _read_back(self, written: dict[str, Signature], fields: Sequence[str],
                   report: PushReport) -> list[tuple[str, int]]:
        """The records that read back as written (to confirm); the rest wait as ``recorded``."""
        try:
            found = self._find_records(list(written), fields)
        except Exception as exc:  # noqa: BLE001
            self._fail_all([(i, int(w[0])) for i, w in written.items()],
                           self.central.classify(exc, what="reading records back"), report)
            return []
        confirmed: list[tuple[str, int]] = []
        missing: list[tuple[str, int]] = []
        for ident, wrote in written.items():
            (confirmed if reads_back(found.get(ident), wrote) else missing).append(
                (ident, int(wrote[0])))
        if missing:
            # Written but not (yet) readable as written: "recorded"; the next pass writes
            # it again (a damaged record then conflicts and is rewritten above it).
            self.outbox.mark_many(missing, RECORDED)
            self._retry(missing, "the record did not read back as it was written", report)
        return confirmed

    # -- deletions -------------------------------------------------------------------------

    def _push_tombstones(self, rows: list[dict[str, Any]], report: PushReport) -> None:
        items = [(r["id"], int(r["revision"])) for r in rows]
        by = deletions.deleted_by_of(self.service.store, [ident for ident, _r in items])
        ops = [UpdateOne({"_id": ident}, {"$max": {REVISION: revision},
                                          "$set": {BENCH: self.bench_id,
                                                   DELETED_BY: by.get(ident)},
                                          "$currentDate": {WRITTEN_AT: True}}, upsert=True)
               for ident, revision in items]
        ids = [ident for ident, _r in items]
        timer = WriteTimer(self.write_bound_s)
        try:
            with timer:
                self.central.tombstones.bulk_write(ops)
            self.central.datapoints.delete_many({"_id": {"$in": ids}})
            marked = {d["_id"] for d in self.central.tombstones.find({"_id": {"$in": ids}},
                                                                     {"_id": 1})}
            still = {d["_id"] for d in self.central.datapoints.find({"_id": {"$in": ids}},
                                                                    {"_id": 1})}
        except Exception as exc:  # noqa: BLE001
            error = self.central.classify(exc, what="writing deletions")
            if isinstance(error, CentralConfigError):
                raise error from exc
            self._fail_all(items, error, report)
            return
        done = [(i, r) for i, r in items if i in marked and i not in still]
        if done and timer.slow:
            late_stamps = self._stamp_again(self.central.tombstones, done, timer, report)
            items = [item for item in items if item not in late_stamps]
            done = [item for item in done if item not in late_stamps]
        if done:
            self.outbox.confirm_many(done)
            with self._lock:  # a read-back thread may be counting too
                report.confirmed += len(done)
            for datapoint_id, _revision in done:
                self._abandon_upload(datapoint_id)
            # Local copies of deleted files go once verified central (never before) and no
            # longer restorable (deleted.retention_days; the engine frees them then).
            localrows.free_deleted_blobs(self.service, [i for i, _r in done])
        late = [(i, r) for i, r in items if (i, r) not in done]
        if late:
            self._retry(late, "the deletion did not read back", report)

    # -- bookkeeping -----------------------------------------------------------------------

    def _retry(self, items: list[tuple[str, int]], error: str, report: PushReport) -> None:
        self.outbox.retry_later(items, error)
        with self._lock:
            report.retrying += len(items)
            report.note(error)

    def _quarantine(self, datapoint_id: str, revision: int, reason: str,
                    report: PushReport) -> None:
        log.warning("quarantined %s: %s", datapoint_id, reason)
        self.outbox.quarantine(datapoint_id, revision, reason)
        with self._lock:
            report.quarantined += 1
            report.note(f"{datapoint_id}: {reason}")

    def _fail_all(self, items: list[tuple[str, int]], error: SyncError,
                  report: PushReport) -> None:
        if isinstance(error, RejectedError):
            for ident, revision in items:
                self._quarantine(ident, revision, str(error), report)
        else:
            self._retry(items, str(error), report)
