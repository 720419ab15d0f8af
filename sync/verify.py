"""``benchdata verify``: a scrub, in the spirit of ZFS scrub and ``restic check``.

Disks rot and buckets lose objects, so bytes are proven again, not assumed:

* **Local**: every blob this bench holds for a datapoint (its custody record) is re-hashed,
  at a bounded I/O rate (:class:`RateLimiter`; 0 = unlimited). A blob that is gone is fine
  only when a central copy of it is verified (sync freed it; it is fetched on demand).
* **Central** (``--central``): every central object a datapoint here names is looked up:
  its size and the SHA-256 in its metadata (size and ETag for objects MADSci wrote) must
  match the record; ``--deep`` downloads it and re-hashes it.
* Each problem names its datapoint ids. A problem with a central copy takes its
  verification back (``app.core.custody.note_central_problem``), so nothing is freed or
  called "safe to delete" on its strength.
* **Repair** (``--repair``) copies only verified bytes: a damaged or missing local blob is
  fetched again from a verified central copy (``sync.fetch``, after the damaged file is
  moved aside); a missing or damaged central object of a file captured here is uploaded
  again from the verified local copy, through the outbox and the normal push
  (``Outbox.upload_again``), which verifies it and reads its record back as for any upload.

What each datapoint last passed is recorded (``scrub_marks``, shown in its custody
receipt) and so is each run's summary (``scrub_runs``: ``sync status``, ``doctor``, the
window). :class:`ScrubComponent` runs a gentle scrub from ``benchdata run`` on a schedule
(the ``verify`` settings section).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from app.core import custody
from app.core.config import load_section
from app.core.errors import BenchDataError, ValidationError
from app.core.models import DataPoint
from app.core.store import StoredDataPoint
from app.core.timestamps import now_canonical, parse_timestamp, utc_now
from app.service import BenchService

from sync.faults import SyncError
from sync.fetch import PLAIN_MD5, clean_etag, central_source, fetch_verified
from sync.objectnames import META_SHA256, is_bench_object_name
from sync.objects import ObjectStore
from sync.outbox import Outbox
from sync.scrubreport import CHUNK_SIZE, MIB, Problem, Progress, RateLimiter, VerifyReport

log = logging.getLogger(__name__)

#: Scrub marks written per transaction (each commit is a durable fsync).
MARKS_PER_COMMIT = 500
#: Rows read from the store at a time.
PAGE = 500


class Scrubber:
    """One scrub over a bench's store (and, with ``objects``, its central copies)."""

    def __init__(self, service: BenchService, *, rate_mib_s: float = 0.0, central: bool = False,
                 deep: bool = False, repair: bool = False,
                 objects: Optional[ObjectStore] = None,
                 upload: Optional[Callable[[], bool]] = None,
                 progress: Optional[Callable[[Progress], None]] = None,
                 stop: Optional[threading.Event] = None,
                 limiter: Optional[RateLimiter] = None) -> None:
        self.service = service
        self.store = service.store
        self.outbox = Outbox(service.store)
        self.objects = objects
        self.central = central
        self.deep = deep
        self.repair = repair
        #: Pushes re-queued uploads; True if it ran a pass (so they can be checked again),
        #: False if it only asked a running engine for one.
        self.upload = upload
        self.progress = progress
        self.stop = stop or threading.Event()
        self.limiter = limiter or RateLimiter(rate_mib_s, sleep=self.stop.wait)
        self._marks: list[custody.ScrubMark] = []
        #: Blobs that hashed right in this run (a central repair may upload from them).
        self._good_blobs: set[str] = set()
        self._checked_ids: set[str] = set()
        #: (blobs done, blobs in all) and bytes in all, for progress within a large file.
        self._local_place = (0, 0)
        self._local_bytes = 0
        self.report = VerifyReport(central=central, deep=deep, repair=repair,
                                   rate_mib_s=rate_mib_s)

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> VerifyReport:
        report = self.report
        try:
            self._scrub_local()
            if self.central and not self.stop.is_set():
                self._scrub_central()
        finally:
            self._flush_marks()
        if self.stop.is_set():
            report.errors.append("the scrub was stopped before it finished")
        report.files = len(self._checked_ids)
        custody.record_scrub_run(self.store, report.started_at, report.ok, report.summary())
        for problem in report.problems:
            log.warning("verify: %s", problem.line())
        return report

    def _mark(self, mark: custody.ScrubMark) -> None:
        self._checked_ids.add(mark.datapoint_id)
        self._marks.append(mark)
        if len(self._marks) >= MARKS_PER_COMMIT:
            self._flush_marks()

    def _flush_marks(self) -> None:
        marks, self._marks = self._marks, []
        custody.note_scrubbed(self.store, marks)

    def _tell(self, phase: str, items_done: int, items_total: int, bytes_done: int,
              bytes_total: int) -> None:
        if self.progress is not None:
            self.progress(Progress(phase, items_done, items_total, bytes_done, bytes_total))

    # -- local blobs -----------------------------------------------------------------------

    def _local_totals(self) -> tuple[int, int]:
        return custody.live_blob_totals(self.store)

    def _local_blobs(self, after: str) -> list[tuple[str, list[str]]]:
        """(SHA-256, ids of the live datapoints it holds) for the next page of blobs."""
        return custody.live_blobs_after(self.store, after, PAGE)

    def _scrub_local(self) -> None:
        total_blobs, total_bytes = self._local_totals()
        self._local_bytes = total_bytes
        after = ""
        done = 0
        while not self.stop.is_set():
            self._local_place = (done, total_blobs)
            page = self._local_blobs(after)
            if not page:
                return
            for sha256, ids in page:
                if self.stop.is_set():
                    return
                self._local_place = (done, total_blobs)
                self._check_blob(sha256, ids)
                done += 1
                self._tell("local", done, total_blobs, self.report.bytes_hashed, total_bytes)
            after = page[-1][0]

    def _hash_file(self, sha256: str) -> str:
        """The SHA-256 of the blob's bytes, read at the scrub's rate."""
        digest = hashlib.sha256()
        buffer = bytearray(CHUNK_SIZE)
        with open(self.service.files.path_for(sha256), "rb", buffering=0) as blob, \
                memoryview(buffer) as view:
            chunks = 0
            while length := blob.readinto(buffer):
                self.limiter.consume(length)
                digest.update(view[:length])
                self.report.bytes_hashed += length
                if self.stop.is_set():
                    raise InterruptedError("stopped")
                chunks += 1
                if chunks % 64 == 0:  # a large file: say how far it got
                    self._tell("local", *self._local_place, self.report.bytes_hashed,
                               self._local_bytes)
        return digest.hexdigest()

    def _check_blob(self, sha256: str, ids: list[str]) -> None:
        self.report.blobs += 1
        try:
            found = self._hash_file(sha256)
        except InterruptedError:
            return
        except FileNotFoundError:
            if all(custody.central_verified(self.store, i) for i in ids):
                self.report.central_only += 1  # freed after the central copy was verified
                return
            self._local_problem(Problem("local", "missing", ids, f"blob {sha256} is gone "
                                        "from the file store"), sha256)
            return
        except OSError as exc:
            self._local_problem(Problem("local", "damaged", ids, f"blob {sha256} cannot be "
                                        f"read ({exc.strerror or exc})"), sha256)
            return
        if found != sha256:
            self._local_problem(Problem("local", "damaged", ids, f"blob {sha256} now hashes "
                                        f"to {found}"), sha256)
            return
        self._good_blobs.add(sha256)
        for ident in ids:
            self._mark(custody.ScrubMark(ident, local_ok=True))

    def _local_problem(self, problem: Problem, sha256: str) -> None:
        self.report.problems.append(problem)
        if self.repair:
            self._repair_local(problem, sha256)
        for ident in problem.datapoint_ids:
            self._mark(custody.ScrubMark(ident, local_ok=problem.repaired))

    def _repair_local(self, problem: Problem, sha256: str) -> None:
        """Fetch the bytes again from a verified central copy (of any datapoint that holds
        them: the file store keeps one blob per content)."""
        if self.objects is None:
            problem.repair = "no central object storage is configured to heal it from"
            return
        sources = [i for i in problem.datapoint_ids if custody.central_verified(self.store, i)]
        if not sources:
            problem.repair = "no verified central copy of it exists to heal it from"
            return
        if problem.kind == "damaged":
            self.service.files.set_aside_damaged(sha256)
        reason = ""
        for ident in sources:
            try:
                fetched = fetch_verified(self.service, self.objects, self.service.get(ident))
            except BenchDataError as exc:
                reason = str(exc)
                continue
            if fetched == sha256:
                problem.repaired = True
                problem.repair = f"fetched again from the verified central copy of {ident}"
                self._good_blobs.add(sha256)
                return
            reason = f"the central copy of {ident} holds other bytes ({fetched})"
        problem.repair = f"could not fetch a verified copy: {reason}"

    # -- central objects -------------------------------------------------------------------

    def _central_ids(self, after: str) -> list[str]:
        """Live file datapoints with a central copy (see custody.centrally_held_ids_after)."""
        return custody.centrally_held_ids_after(self.store, after, PAGE)

    def _scrub_central(self) -> None:
        if self.objects is None:
            self.report.errors.append("no central object storage is configured; central "
                                      "copies were not checked")
            return
        requeued: list[tuple[Problem, str]] = []
        after = ""
        done = 0
        while not self.stop.is_set():
            ids = self._central_ids(after)
            if not ids:
                break
            for ident in ids:
                if self.stop.is_set():
                    break
                try:
                    self._check_object(ident, requeued)
                except SyncError as exc:
                    self.report.errors.append(f"the central store could not be checked: {exc}")
                    return
                done += 1
                self._tell("central", done, 0, self.report.bytes_hashed, 0)
            after = ids[-1]
        if requeued:
            self._finish_uploads(requeued)

    def _check_object(self, ident: str, requeued: list[tuple[Problem, str]]) -> None:
        assert self.objects is not None
        try:
            stored = self.service.get_stored(ident)
            source = central_source(self.service, stored.datapoint, self.objects.bucket)
        except BenchDataError:
            return  # deleted or changed meanwhile; no central copy to check
        self.report.objects += 1
        problem = self._object_problem(ident, source)
        how = "deep" if self.deep else "metadata"
        if problem is None:
            self._mark(custody.ScrubMark(ident, central_ok=True, central_how=how))
            if stored.sync_state == "confirmed" and source.sha256 and \
                    not custody.central_verified(self.store, ident):
                custody.note_central_verified(self.store, ident, source.sha256, source.bucket,
                                              source.object_name,
                                              "scrub-deep" if self.deep else "scrub")
            return
        self.report.problems.append(problem)
        custody.note_central_problem(self.store, ident, problem.detail)
        self._mark(custody.ScrubMark(ident, central_ok=False, central_how=how))
        if self.repair and self._requeue_upload(problem, stored, source):
            requeued.append((problem, ident))

    def _object_problem(self, ident: str, source: Any) -> Optional[Problem]:
        assert self.objects is not None
        where = f"{source.bucket}/{source.object_name}"
        stat = self.objects.stat(source.object_name, source.bucket)
        if stat is None:
            return Problem("central", "missing", [ident], f"object {where} is gone")
        if source.size is not None and int(stat.size) != source.size:
            return Problem("central", "damaged", [ident], f"object {where} is {stat.size} "
                           f"bytes, its record says {source.size}")
        if source.sha256 is not None:
            stored_sha = stat.metadata.get(META_SHA256)
            if stored_sha != source.sha256:
                return Problem("central", "damaged", [ident], f"object {where} carries "
                               f"SHA-256 {stored_sha}, its record says {source.sha256}")
        elif source.etag is not None and clean_etag(stat.etag) != source.etag:
            return Problem("central", "damaged", [ident], f"object {where} has ETag "
                           f"{clean_etag(stat.etag)}, its record says {source.etag}")
        if self.deep:
            return self._deep_problem(ident, source, where)
        return None

    def _deep_problem(self, ident: str, source: Any, where: str) -> Optional[Problem]:
        """Download the object and hash it (at the scrub's rate; nothing is stored)."""
        assert self.objects is not None
        md5 = hashlib.md5(usedforsecurity=False) if source.sha256 is None and \
            source.etag and PLAIN_MD5.fullmatch(source.etag) else None
        digest = hashlib.sha256()
        response = self.objects.open_stream(source.bucket, source.object_name)
        try:
            while chunk := response.read(CHUNK_SIZE):
                self.limiter.consume(len(chunk))
                digest.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                self.report.bytes_hashed += len(chunk)
        except Exception as exc:  # urllib3's errors are not SyncErrors
            raise SyncError(f"downloading {where} broke off ({exc})") from exc
        finally:
            response.close()
            response.release_conn()
        if source.sha256 is not None and digest.hexdigest() != source.sha256:
            return Problem("central", "damaged", [ident], f"object {where} hashes to "
                           f"{digest.hexdigest()}, its record says {source.sha256}")
        if md5 is not None and md5.hexdigest() != source.etag:
            return Problem("central", "damaged", [ident], f"object {where} has MD5 "
                           f"{md5.hexdigest()}, its record's ETag is {source.etag}")
        return None

    def _requeue_upload(self, problem: Problem, stored: StoredDataPoint, source: Any) -> bool:
        """Queue the upload of a verified local copy; False (with the reason) if there is
        none, or the file is not this bench's to upload."""
        assert self.objects is not None
        datapoint: DataPoint = stored.datapoint
        if stored.origin != "local" or datapoint.data_type.value != "file":
            problem.repair = ("the file was stored by another bench or by MADSci; repair it "
                              "there")
            return False
        held = self.service.held_blob(datapoint)
        if held is None or not self._blob_good(held):
            problem.repair = "no verified local copy of it exists to upload again"
            return False
        if problem.kind == "damaged" and source.bucket == self.objects.bucket and \
                is_bench_object_name(self.objects.settings, source.object_name):
            # An upload finding the object "already there" would keep damaged bytes.
            self.objects.remove(source.object_name)
        if not self.outbox.upload_again(stored.datapoint_id):
            problem.repair = "the datapoint changed meanwhile"
            return False
        problem.repair = "queued for upload from the verified local copy"
        return True

    def _blob_good(self, sha256: str) -> bool:
        if sha256 in self._good_blobs:
            return True
        try:
            good = self._hash_file(sha256) == sha256
        except (OSError, InterruptedError):
            return False
        if good:
            self._good_blobs.add(sha256)
        return good

    def _finish_uploads(self, requeued: list[tuple[Problem, str]]) -> None:
        """Push the re-queued uploads (or ask the running engine to) and check them again."""
        if self.upload is None or not self.upload():
            return  # the running engine uploads them; the next scrub checks them
        for problem, ident in requeued:
            try:
                stored = self.service.get_stored(ident)
                source = central_source(self.service, stored.datapoint, self.objects.bucket)  # type: ignore[union-attr]
                again = self._object_problem(ident, source)
            except (BenchDataError, SyncError) as exc:
                problem.repair = f"uploaded again, but it did not verify: {exc}"
                continue
            if again is None and custody.central_verified(self.store, ident):
                problem.repaired = True
                problem.repair = "uploaded again from the verified local copy, verified"
                self._mark(custody.ScrubMark(ident, central_ok=True,
                                             central_how="deep" if self.deep else "metadata"))
            else:
                problem.repair = "uploaded again, but it did not verify yet (see sync status)"


# -- the schedule ----------------------------------------------------------------------------


class VerifySettings(BaseModel):
    """The ``verify`` section of config.json: the scrub ``benchdata run`` runs."""

    model_config = ConfigDict(extra="ignore")

    #: Days between scrubs; 0 switches the scheduled scrub off.
    interval_days: float = Field(7.0, ge=0)
    #: MiB/s of reading (local blobs and, with ``deep``, downloads); 0 = unlimited.
    rate_mib_s: float = Field(20.0, ge=0)
    #: Check the central objects too (when object storage is configured).
    central: bool = True
    deep: bool = False
    #: Heal from verified copies (fetch a damaged local blob; upload a lost object again).
    repair: bool = True


def load_verify_settings(service: BenchService) -> VerifySettings:
    section = load_section(service.paths, "verify")
    if section is not None and not isinstance(section, dict):
        raise ValidationError("the verify settings are not valid: expected an object")
    try:
        return VerifySettings(**(section or {}))
    except ValueError as exc:
        raise ValidationError(f"the verify settings are not valid: {exc}") from exc


#: Outbox meta key: when the schedule began (the first scrub is one interval after it).
SCHEDULE_KEY = "scrub_schedule_from"
#: How often the component looks at its schedule (and settings).
CHECK_INTERVAL_S = 60.0


def next_scrub_due(service: BenchService, settings: VerifySettings) -> Optional[float]:
    """Seconds until the next scheduled scrub (0: now), None when switched off."""
    if settings.interval_days <= 0:
        return None
    last = custody.last_scrub_run(service.store)
    outbox = Outbox(service.store)
    anchor = last["started_at"] if last else outbox.meta(SCHEDULE_KEY)
    if anchor is None:
        anchor = now_canonical()
        outbox.set_meta(SCHEDULE_KEY, anchor)
    due = parse_timestamp(anchor) + timedelta(days=settings.interval_days)
    return max(0.0, (due - utc_now()).total_seconds())


class ScrubComponent:
    """Runs the scheduled scrub inside ``benchdata run`` (one at a time, stoppable)."""

    name = "verify"

    def __init__(self, service: BenchService) -> None:
        self.service = service
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="benchdata-verify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = CHECK_INTERVAL_S
            try:
                settings = load_verify_settings(self.service)
                due = next_scrub_due(self.service, settings)
                if due is not None and due <= 0:
                    self.run_once(settings)
                elif due is not None:
                    wait = min(wait, due)
            except BenchDataError as exc:  # a read-only store, bad settings ...
                log.warning("scheduled scrub: %s", exc)
            except Exception:  # the schedule must survive anything
                log.exception("scheduled scrub failed")
            self._stop.wait(wait)

    def run_once(self, settings: VerifySettings) -> VerifyReport:
        objects = _object_store(self.service) if settings.central or settings.repair else None
        try:
            def ask_engine() -> bool:
                from sync.engine import request_sync

                request_sync(self.service)
                return False

            report = Scrubber(self.service, rate_mib_s=settings.rate_mib_s,
                              central=settings.central and objects is not None,
                              deep=settings.deep, repair=settings.repair, objects=objects,
                              upload=ask_engine, stop=self._stop).run()
        finally:
            if objects is not None:
                objects.close()
        log.info("scheduled scrub: %s", custody.describe_scrub(
            custody.last_scrub_run(self.service.store)))
        return report


def _object_store(service: BenchService) -> Optional[ObjectStore]:
    """This bench's bucket, or None when object storage is not configured."""
    from sync.settings import load_settings

    settings = load_settings(service.paths)
    return ObjectStore(settings) if settings.objects_configured else None


def make_component(service: BenchService, options: Any) -> Optional[ScrubComponent]:
    """The scheduled scrub; None when switched off (``interval_days`` 0). Settings that
    are not valid do not stop the service: the component says so in the log."""
    try:
        if load_verify_settings(service).interval_days <= 0:
            return None
    except ValidationError as exc:
        log.warning("%s; the scheduled scrub waits for valid settings", exc)
    return ScrubComponent(service)


__all__ = [
    "CHUNK_SIZE",
    "MIB",
    "Problem",
    "Progress",
    "RateLimiter",
    "ScrubComponent",
    "Scrubber",
    "VerifyReport",
    "VerifySettings",
]
