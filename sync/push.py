"""Push: local changes to the central store — files first, verified, then the records.

For each due outbox item: a file is uploaded and verified (``sync.objects``); then its
record is upserted in MADSci's shape, in batches, keyed by ``_id`` and guarded by the
revision (``sync_revision``): the write applies only over an older revision, so an older
change never overwrites a newer one, and a retry after a crash finds its own identical
record (same revision, same bench) and is confirmed as it is. When another bench got there first with the same or a newer revision, our
change is lifted above it and pushed again — the last writer (in the central store's
order, not by any clock) wins. A deletion is a tombstone (its own collection) and then the
record's removal; deletions are final and win over concurrent edits. An item is
confirmed only when the central record reads back.
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
from sync.central import CentralDatabase
from sync.documents import BENCH, REVISION, WRITTEN_AT, DocumentTooLarge, central_document, \
    tombstone_document
from sync.faults import CentralConfigError, RejectedError, RetryableError, SyncError, \
    classify_mongo, classify_write_error
from sync.objects import ObjectStore, SavedPart, UploadListener, object_name_for, safe_filename
from sync.outbox import RECORDED, UPLOADING, Outbox, OutboxItem
from sync.settings import CentralSettings

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
    errors: list[str] = field(default_factory=list)

    def note(self, error: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(error)


class _SavingListener(UploadListener):
    """Persist multipart progress so a killed process resumes the upload."""

    def __init__(self, outbox: Outbox, datapoint_id: str, revision: int, object_name: str,
                 total: int, progress: dict[str, tuple[int, int]]) -> None:
        self.outbox = outbox
        self.datapoint_id = datapoint_id
        self.revision = revision
        self.object_name = object_name
        self.total = total
        self.upload_id: Optional[str] = None
        self._progress = progress
        self._done = 0

    def started(self, upload_id: str, part_size: int) -> None:
        self.upload_id = upload_id
        self.outbox.save_upload(self.datapoint_id, self.object_name, upload_id, part_size)

    def part_done(self, part: SavedPart) -> None:
        assert self.upload_id is not None
        self._done += part.size
        self.outbox.save_part(self.datapoint_id, self.upload_id, part)

    def progress(self, done: int, total: int) -> None:
        self._progress[self.datapoint_id] = (done, total)

    def finished(self) -> None:
        self._progress.pop(self.datapoint_id, None)


class Pusher:
    """One pass of pushing, run by the engine."""

    def __init__(self, service: BenchService, outbox: Outbox, central: CentralDatabase,
                 objects: Optional[ObjectStore], settings: CentralSettings, bench_id: str,
                 progress: Optional[dict[str, tuple[int, int]]] = None,
                 stop: Optional[threading.Event] = None) -> None:
        self.service = service
        self.outbox = outbox
        self.central = central
        self.objects = objects
        self.settings = settings
        self.bench_id = bench_id
        self.progress = progress if progress is not None else {}
        self.stop = stop or threading.Event()
        self._multipart_gate = threading.Semaphore(1)  # bounded memory for large files
        self._network_failures = 0
        self._lock = threading.Lock()

    # -- the pass --------------------------------------------------------------------------

    def run(self, *, force: bool = False) -> PushReport:
        report = PushReport()
        self._run(report, force)
        return report

    def _run(self, report: PushReport, force: bool) -> None:
        self.outbox.collect()
        rebases: dict[str, int] = {}
        after: Optional[tuple[str, str]] = None
        while not self.stop.is_set():
            items = self.outbox.due(limit=self.settings.batch_size, force=force, after=after)
            if not items:
                break
            after = (items[-1].enqueued_at, items[-1].datapoint_id)
            again = self._push_batch(items, report, rebases)
            while again and not self.stop.is_set():  # lifted above a concurrent writer
                again = self._push_batch(self.outbox.items(sorted(again)), report, rebases)
            if self._network_failures >= MAX_CONSECUTIVE_NETWORK_FAILURES:
                break

    def _push_batch(self, items: Sequence[OutboxItem], report: PushReport,
                    rebases: dict[str, int]) -> set[str]:
        rows = localrows.fetch_rows(self.service.store, [i.datapoint_id for i in items])
        work: list[dict[str, Any]] = []
        for item in items:
            row = rows.get(item.datapoint_id)
            if row is None:
                self.outbox.drop(item.datapoint_id)
                continue
            work.append(row)
        objects = self.outbox.objects_for([r["id"] for r in work])
        to_upload = [r for r in work if self._needs_upload(r, objects.get(r["id"]))]
        if to_upload:
            self._upload_all(to_upload, report)
            objects = self.outbox.objects_for([r["id"] for r in work])
        ready = [r for r in work if not self._needs_upload(r, objects.get(r["id"]))]
        deleted = [r for r in ready if r["deleted"]]
        live = [r for r in ready if not r["deleted"]]
        retry_now: set[str] = set()
        if live:
            retry_now |= self._push_records(live, objects, report, rebases)
        if deleted:
            self._push_tombstones(deleted, report)
        return retry_now

    @staticmethod
    def _needs_upload(row: dict[str, Any], stored: Optional[dict[str, Any]]) -> bool:
        if row["data_type"] != "file" or row["deleted"]:
            return False
        return stored is None or stored["sha256"] != row["sha256"]

    # -- files -----------------------------------------------------------------------------

    def _upload_all(self, rows: list[dict[str, Any]], report: PushReport) -> None:
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
            listener = _SavingListener(self.outbox, datapoint_id, revision, object_name, size,
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

    def _push_records(self, rows: list[dict[str, Any]], objects: dict[str, dict[str, Any]],
                      report: PushReport, rebases: dict[str, int]) -> set[str]:
        """Upsert live records; return ids lifted above a concurrent writer (retry now)."""
        from pymongo import UpdateOne
        from pymongo.errors import BulkWriteError

        rows = self._drop_tombstoned(rows)
        documents: dict[str, dict[str, Any]] = {}
        for row in rows:
            try:
                documents[row["id"]] = central_document(
                    row, bench_id=self.bench_id, stored_object=objects.get(row["id"]),
                    settings=self.settings)
            except (DocumentTooLarge, ValueError) as exc:
                self._quarantine(row["id"], int(row["revision"]), str(exc), report)
        if not documents:
            return set()
        revisions = {i: int(d[REVISION]) for i, d in documents.items()}
        # Strictly older revisions only; our own retry then "conflicts" with itself and is
        # recognised on read-back. (No $or beside _id: nx-27017 0.8.1 mis-handles it.)
        ops = [UpdateOne({"_id": i, REVISION: {"$lt": revisions[i]}},
                         {"$set": {k: v for k, v in d.items() if k != "_id"},
                          "$currentDate": {WRITTEN_AT: True}}, upsert=True)
               for i, d in documents.items()]
        ids = list(documents)
        failed: dict[str, SyncError] = {}
        conflicts: list[str] = []
        try:
            self.central.datapoints.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                ident = ids[int(error["index"])]
                if int(error.get("code", 0)) == 11000:
                    conflicts.append(ident)
                else:
                    failed[ident] = classify_write_error(int(error.get("code", 0)),
                                                         str(error.get("errmsg")), what=ident)
        except Exception as exc:  # noqa: BLE001 - sorted by classify_mongo
            error = classify_mongo(exc, what="writing records")
            if isinstance(error, CentralConfigError):
                raise error from exc
            if isinstance(error, RejectedError) and len(ids) > 1:
                return self._isolate(rows, objects, report, rebases)
            self._fail_all([(i, revisions[i]) for i in ids], error, report)
            return set()
        for ident, error in failed.items():
            if isinstance(error, CentralConfigError):
                raise error
            self._fail_all([(ident, revisions[ident])], error, report)
        retry_now = self._resolve_conflicts(conflicts, revisions, report, rebases)
        written = [i for i in ids if i not in failed and i not in conflicts]
        self._read_back(written, revisions, report)
        return retry_now

    def _isolate(self, rows: list[dict[str, Any]], objects: dict[str, dict[str, Any]],
                 report: PushReport, rebases: dict[str, int]) -> set[str]:
        """A batch the driver refused as a whole: push one by one to find the bad item."""
        retry_now: set[str] = set()
        for row in rows:
            retry_now |= self._push_records([row], objects, report, rebases)
        return retry_now

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
            raise classify_mongo(exc, what="reading tombstones") from exc
        if not tombstoned:
            return rows
        localrows.apply_tombstones(self.service.store, list(tombstoned.items()))
        log.info("%d local change(s) lost to deletions made elsewhere", len(tombstoned))
        return [r for r in rows if r["id"] not in tombstoned]

    def _resolve_conflicts(self, conflicts: list[str], revisions: dict[str, int],
                           report: PushReport, rebases: dict[str, int]) -> set[str]:
        if not conflicts:
            return set()
        try:
            remote = {d["_id"]: d for d in self.central.datapoints.find(
                {"_id": {"$in": conflicts}}, {REVISION: 1, BENCH: 1})}
        except Exception as exc:  # noqa: BLE001
            self._fail_all([(i, revisions[i]) for i in conflicts],
                           classify_mongo(exc, what="reading conflicting records"), report)
            return set()
        retry_now: set[str] = set()
        for ident in conflicts:
            doc = remote.get(ident)
            local = revisions[ident]
            if doc is None:  # removed meanwhile; try again next pass
                self._retry([(ident, local)], "the record changed while it was written", report)
                continue
            theirs = int(doc.get(REVISION) or 0)
            if theirs == local and doc.get(BENCH) == self.bench_id:
                self.outbox.confirm_many([(ident, local)])
                report.confirmed += 1
                continue
            rebases[ident] = rebases.get(ident, 0) + 1
            if rebases[ident] > MAX_REBASES_PER_PASS:
                self._retry([(ident, local)], "another bench keeps changing this datapoint", report)
                continue
            if self.outbox.rebase(ident, local, theirs + 1):
                log.info("datapoint %s changed elsewhere (revision %d); ours becomes %d",
                         ident, theirs, theirs + 1)
                retry_now.add(ident)
        return retry_now

    def _read_back(self, ids: list[str], revisions: dict[str, int], report: PushReport) -> None:
        if not ids:
            return
        try:
            found = {d["_id"]: int(d.get(REVISION) or 0) for d in self.central.datapoints.find(
                {"_id": {"$in": ids}}, {REVISION: 1})}
        except Exception as exc:  # noqa: BLE001
            self._fail_all([(i, revisions[i]) for i in ids],
                           classify_mongo(exc, what="reading records back"), report)
            return
        confirmed = [(i, revisions[i]) for i in ids if found.get(i, -1) >= revisions[i]]
        missing = [(i, revisions[i]) for i in ids if found.get(i, -1) < revisions[i]]
        if confirmed:
            self.outbox.confirm_many(confirmed)
            with self._lock:
                report.confirmed += len(confirmed)
        if missing:
            # Written but not (yet) readable: "recorded"; the next pass writes it again.
            self.outbox.mark_many(missing, RECORDED)
            self._retry(missing, "the record did not read back after it was written", report)

    # -- deletions -------------------------------------------------------------------------

    def _push_tombstones(self, rows: list[dict[str, Any]], report: PushReport) -> None:
        from pymongo import UpdateOne

        items = [(r["id"], int(r["revision"])) for r in rows]
        ops = [UpdateOne({"_id": ident}, {"$max": {REVISION: revision},
                                          "$set": {BENCH: self.bench_id},
                                          "$currentDate": {WRITTEN_AT: True}}, upsert=True)
               for ident, revision in items]
        ids = [ident for ident, _r in items]
        try:
            self.central.tombstones.bulk_write(ops, ordered=False)
            self.central.datapoints.delete_many({"_id": {"$in": ids}})
            marked = {d["_id"] for d in self.central.tombstones.find({"_id": {"$in": ids}},
                                                                     {"_id": 1})}
            still = {d["_id"] for d in self.central.datapoints.find({"_id": {"$in": ids}},
                                                                    {"_id": 1})}
        except Exception as exc:  # noqa: BLE001
            error = classify_mongo(exc, what="writing deletions")
            if isinstance(error, CentralConfigError):
                raise error from exc
            self._fail_all(items, error, report)
            return
        done = [(i, r) for i, r in items if i in marked and i not in still]
        if done:
            self.outbox.confirm_many(done)
            report.confirmed += len(done)
            for datapoint_id, _revision in done:
                self._abandon_upload(datapoint_id)
            self._free_deleted([i for i, _r in done])
        late = [(i, r) for i, r in items if (i, r) not in done]
        if late:
            self._retry(late, "the deletion did not read back", report)

    def _free_deleted(self, datapoint_ids: list[str]) -> None:
        """Local copies of deleted files go once they are verified central (never before)."""
        for sha256 in localrows.blobs_of(self.service.store, datapoint_ids):
            if localrows.blob_freeable(self.service.store, sha256):
                self.service.files.remove(sha256)
                localrows.mark_freed(self.service.store, sha256)

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


def tombstone_for(datapoint_id: str, revision: int, bench_id: str) -> dict[str, Any]:
    return tombstone_document(datapoint_id, revision, bench_id)
