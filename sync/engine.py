"""The sync engine: reconcile passes, the background loop, backoff and quarantine.

A pass = check access (bad settings stop everything with a clear message) → push due
outbox items (files verified first, then records read back) → pull what other benches
wrote → housekeeping (abort abandoned multipart uploads, free old verified copies if
configured). The background loop runs passes when local changes appear (a cheap indexed
query, polled a few times a second) or the pull interval elapses; after a failed pass it
waits with exponential backoff and jitter. Capture never waits for any of this.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Optional

from app.core import custody, deletions
from app.core.backoff import backoff_delay
from app.core.timestamps import now_canonical, utc_now
from app.service import BenchService

from sync import fleet, localrows
from sync.backends import REAL_BACKENDS, Backends, RecordBackend
from sync.clock import ServerClock
from sync.faults import CentralConfigError, RetryableError, SyncError
from sync.objects import ObjectStore
from sync.outbox import Outbox
from sync.fetch import fetch_verified
from sync.pull import Puller
from sync.push import Pusher
from sync.rename import ObjectRenamer, RenameReport
from sync.retention import free_verified
from sync.settings import CentralSettings, load_settings

log = logging.getLogger(__name__)

#: Multipart uploads nobody resumed for this long are aborted.
ABANDONED_UPLOAD_AGE = timedelta(hours=24)
#: Abandoned uploads are looked for at a process's first pass and then this often.
UPLOAD_CLEANUP_INTERVAL_S = 3600.0
#: How often the loop looks for new local changes.
POLL_INTERVAL_S = 0.1
LOOP_BACKOFF_CAP_S = 60.0
#: Outbox meta key another process (the window attached to ``benchdata run``) sets to ask
#: the running engine for a pass now, even in the middle of a backoff.
SYNC_REQUEST_KEY = "sync_requested_at"
#: Outbox meta key: deletions before this instant have had their files freed.
EXPIRED_DELETIONS_KEY = "deletions_expired_upto"


def request_sync(service: BenchService) -> None:
    """Ask whichever engine runs on this store (maybe in another process) to sync now."""
    Outbox(service.store).set_meta(SYNC_REQUEST_KEY, now_canonical())


def _now_text() -> str:
    return now_canonical()


@dataclass
class PassReport:
    """What one reconcile pass did."""

    ok: bool = True
    confirmed: int = 0
    uploaded_bytes: int = 0
    retrying: int = 0
    quarantined: int = 0
    #: Written records and deletions stamped again after a slow write (``sync.stamps``).
    restamped: int = 0
    pulled: int = 0
    pulled_deletions: int = 0
    pull_skipped: int = 0
    #: Central datapoints read in full by the pull / window entries (id, revision) read.
    pull_fetched: int = 0
    pull_scanned: int = 0
    aborted_uploads: int = 0
    freed_files: int = 0
    #: Objects moved from old-style names (``sync.rename``): copied, old ones deleted.
    renamed: int = 0
    remaining: int = 0
    config_error: Optional[str] = None
    error: Optional[str] = None
    #: Object storage failed this pass (files wait; values and pull went on).
    objects_error: Optional[str] = None
    #: MongoDB answered this pass (values could be pushed whatever S3 did).
    central_ok: bool = False
    #: The bench clock against the object storage's (``sync.clock``), when off.
    clock: Optional[dict[str, Any]] = None
    errors: list[str] = field(default_factory=list)

    def add_config_error(self, message: str) -> None:
        self.ok = False
        self.config_error = f"{self.config_error}; {message}" if self.config_error else message

    def summary(self) -> str:
        """One sentence about this pass: its first problem, or that it went well."""
        for problem in (self.config_error, self.error, self.objects_error):
            if problem:
                return problem
        if self.retrying or self.quarantined:  # each item's reason is listed with it
            return (f"{self.confirmed} confirmed, {self.retrying} to retry, "
                    f"{self.quarantined} quarantined")
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SyncEngine:
    """Reconciles one bench with the central store. Thread-safe: one pass at a time."""

    def __init__(self, service: BenchService, settings: Optional[CentralSettings] = None,
                 backends: Backends = REAL_BACKENDS) -> None:
        """``backends``: how to reach the central store (MongoDB and S3 unless given)."""
        self.service = service
        self.settings = settings or load_settings(service.paths)
        self.backends = backends
        self.outbox = Outbox(service.store)
        self.bench_id = self.outbox.bench_id()
        self.progress: dict[str, tuple[int, int]] = {}
        self._pass_lock = threading.Lock()
        self._central: Optional[RecordBackend] = None
        self._objects: Optional[ObjectStore] = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._rng = random.Random()
        self.last_report: Optional[PassReport] = None
        #: The object storage's clock, kept across reconnections (S3 signs with it).
        self.clock = ServerClock()
        self._rename: Optional[ObjectRenamer] = None
        #: The last failure to use the bucket, and when to ask it again (non-forced passes).
        self._objects_problem: Optional[SyncError] = None
        self._objects_failures = 0
        self._objects_retry_at = 0.0
        self._seen_request = self.outbox.meta(SYNC_REQUEST_KEY)
        #: MongoDB answered ping and has its indexes / the bucket answered HEAD: checked at
        #: start and again after a pass with errors, not on every pass.
        self._central_ready = False
        self._bucket_ready = False
        self._next_cleanup = 0.0
        self._next_beat = 0.0
        self._next_stamp = 0.0
        #: Whether this bench is the one that stamps documents MADSci wrote (sync.fleet).
        self.stamper = False

    # -- connections -----------------------------------------------------------------------

    def _connections(self) -> tuple[RecordBackend, Optional[ObjectStore]]:
        return self._central_db(), self._object_store()

    def _central_db(self) -> RecordBackend:
        if self._central is None:
            self._central = self.backends.records(self.settings)
        return self._central

    def _object_store(self) -> Optional[ObjectStore]:
        if self._objects is None and self.settings.objects_configured:
            self._objects = ObjectStore(self.settings, self.clock,
                                        self.backends.objects(self.settings, self.clock))
        return self._objects

    def close(self) -> None:
        self.stop()
        if self._central is not None:
            self._central.close()
            self._central = None
        if self._objects is not None:
            self._objects.close()
            self._objects = None
        self._rename = None

    def __enter__(self) -> "SyncEngine":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- one pass --------------------------------------------------------------------------

    def run_pass(self, *, force: bool = False, pull: Optional[bool] = None) -> PassReport:
        """Push what is due (everything active with ``force``), then pull."""
        with self._pass_lock:
            report = PassReport()
            try:
                self._run_pass(report, force=force,
                               pull=self.settings.pull if pull is None else pull)
            except CentralConfigError as exc:
                report.add_config_error(str(exc))
                log.error("sync stopped: %s", exc)
            except SyncError as exc:
                report.ok = False
                report.error = str(exc)
                log.warning("sync pass failed: %s", exc)
            self._after_errors(report)
            backlog = self.outbox.backlog()
            report.remaining = backlog["count"] + len(self.outbox.quarantined())
            report.clock = self.clock.status()
            if report.ok and report.retrying == 0 and report.quarantined == 0:
                self.outbox.set_meta("last_success", _now_text())
            self._record_attempt(report)
            self.last_report = report
            return report

    def _record_attempt(self, report: PassReport) -> None:
        """What status shows describes this pass, not an older one: the configuration
        error is this pass's (or none), and a pass that failed as a whole (MongoDB
        unreachable, say) restates the waiting items' errors with its own."""
        self.outbox.set_metas({
            "config_error": report.config_error,
            "clock": json.dumps(report.clock) if report.clock else None,
            "last_attempt": json.dumps({"at": _now_text(), "ok": report.ok,
                                        "message": report.summary()})})
        if not report.central_ok and (report.error or report.config_error):
            self.outbox.restate_errors(report.summary())

    def _run_pass(self, report: PassReport, *, force: bool, pull: bool) -> None:
        central = self._central_db()
        objects_problem = self._objects_for_pass(report, force=force)
        objects = self._objects if objects_problem is None else None
        if not self._central_ready:
            central.ping()
            central.ensure_indexes()
            self._central_ready = True
        report.central_ok = True
        renamer = self._renamer(central, objects)
        renames = RenameReport()
        if renamer is not None and not self._stop.is_set():
            renamer.start(renames)  # before the push, which writes the moved records
        pusher = Pusher(self.service, self.outbox, central,
                        objects, self.settings,
                        self.bench_id, progress=self.progress, stop=self._stop,
                        objects_problem=objects_problem)
        pushed = pusher.run(force=force)
        report.confirmed = pushed.confirmed
        report.uploaded_bytes = pushed.uploaded_bytes
        report.retrying = pushed.retrying
        report.quarantined = pushed.quarantined
        report.restamped = pushed.restamped
        report.errors.extend(pushed.errors)
        if pushed.retrying:
            report.ok = False
        if renamer is not None and not self._stop.is_set():
            renamer.finish(renames)
        report.renamed = renames.removed
        report.errors.extend(renames.errors)
        self._heartbeat(central, report)
        if pull and not self._stop.is_set():
            scope = self._pull_scope()
            central.ensure_scope_indexes(list(scope or ()))
            pulled = Puller(self.service, self.outbox, central, self.bench_id,
                            self.settings.pull_overlap_s, self.settings.pull_page_size,
                            scope=scope).run(stamp=self._stamp_due(force))
            report.pulled = pulled.pulled
            report.pull_fetched = pulled.fetched
            report.pull_scanned = pulled.scanned
            report.pulled_deletions = pulled.deleted
            report.pull_skipped = pulled.skipped
            report.errors.extend(pulled.errors)
            if pulled.pulled or pulled.fetched or pulled.deleted:
                log.info("pulled %d (%d read in full, %d window entries), %d deleted",
                         pulled.pulled, pulled.fetched, pulled.scanned, pulled.deleted)
            self.outbox.set_meta("last_pull", _now_text())
        if objects is not None and not self._stop.is_set() and \
                time.monotonic() >= self._next_cleanup:
            report.aborted_uploads = objects.abort_abandoned(
                self.outbox.open_upload_ids(), ABANDONED_UPLOAD_AGE,
                mine=lambda ids: localrows.captured_here(self.service.store, ids))
            self._next_cleanup = time.monotonic() + UPLOAD_CLEANUP_INTERVAL_S
        report.freed_files = self._free_old_copies() + self._free_expired_deletions()

    def _objects_for_pass(self, report: PassReport, *, force: bool) -> Optional[SyncError]:
        """The bucket is asked (HEAD, created if missing) at a process's first pass and
        after a pass with errors — not on every pass: an idle bench costs the object
        storage nothing. A bucket that went away meanwhile fails the upload that needs
        it, and the pass after that checks again."""
        if self._bucket_ready and self._objects_problem is None:
            return None
        problem = self._check_objects(report, force=force)
        self._bucket_ready = problem is None and self._objects is not None
        return problem

    def _after_errors(self, report: PassReport) -> None:
        """A pass that failed (or left items to retry): check MongoDB and the bucket again
        at the next one. Documents the pull skipped are not a reason: they are the
        central store's content, not a connection problem."""
        if not report.ok:
            self._central_ready = self._bucket_ready = False

    def _heartbeat(self, central: RecordBackend, report: PassReport) -> None:
        """This bench's heartbeat, at most once a minute; also who stamps (sync.fleet).
        A failure is logged, never fails the pass: a lab may not allow the collection."""
        if time.monotonic() < self._next_beat or self._stop.is_set():
            return
        self._next_beat = time.monotonic() + fleet.HEARTBEAT_INTERVAL_S
        try:
            server_now = fleet.beat(central.benches, self.bench_id,
                                    fleet.heartbeat_fields(self.service, self.status(), [
                                        report.config_error or "", report.objects_error or "",
                                        *report.errors[:3]]))
            first = fleet.first_live_bench(central.benches, server_now)
        except SyncError as exc:
            log.warning("heartbeat: %s", exc)
            self.stamper = True  # nobody can be seen: stamp, as every bench once did
            return
        self.stamper = first is None or first == self.bench_id

    def _pull_scope(self) -> Optional[dict[str, list[str]]]:
        """``pull_scope`` as ownership field → ids (names resolved as every capture path
        resolves them); None for everything."""
        scope = self.settings.pull_scope
        if scope == "everything" or not isinstance(scope, dict):
            return None
        return {f"{kind}_id": sorted({self.service.names.resolve(kind, n) for n in names})
                for kind, names in scope.items()}

    def _stamp_due(self, force: bool) -> bool:
        """The stamper, on its timer; any bench on a forced pass (`sync --once`, "Sync
        now"), where a person waits to see what MADSci wrote."""
        if force:
            return True
        if not self.stamper or time.monotonic() < self._next_stamp:
            return False
        self._next_stamp = time.monotonic() + fleet.STAMP_INTERVAL_S
        return True

    def _renamer(self, central: RecordBackend,
                 objects: Optional[ObjectStore]) -> Optional[ObjectRenamer]:
        if objects is None:
            return None
        if self._rename is None:
            self._rename = ObjectRenamer(self.service.store, objects, central, self.settings)
        return self._rename

    def _check_objects(self, report: PassReport, *, force: bool = False) -> Optional[SyncError]:
        """The bucket, ready (created if missing and allowed) — or why not. Its failure
        holds back files only: values still reach MongoDB, whatever S3 does.

        After a failure the bucket is not asked again for a while (doubling up to a
        minute) unless the pass is forced: an unreachable endpoint can cost a connect
        timeout per request, which values must not wait for in every pass."""
        if not force and self._objects_problem is not None and \
                time.monotonic() < self._objects_retry_at:
            return self._objects_failed(self._objects_problem, report)
        try:
            objects = self._object_store()  # e.g. an unusable endpoint, a missing CA file
            if objects is not None:
                objects.ensure_bucket()
        except SyncError as exc:
            self._objects_failures += 1
            self._objects_problem = exc
            self._objects_retry_at = time.monotonic() + backoff_delay(
                self._objects_failures, base=2.0, cap=LOOP_BACKOFF_CAP_S, jitter=False)
            return self._objects_failed(exc, report)
        self._objects_problem, self._objects_failures = None, 0
        return None

    @staticmethod
    def _objects_failed(problem: SyncError, report: PassReport) -> SyncError:
        if isinstance(problem, CentralConfigError):
            report.add_config_error(str(problem))
            log.error("object storage: %s; files wait, values sync on", problem)
        else:
            report.ok = False
            report.objects_error = str(problem)
            log.warning("object storage: %s; files wait, values sync on", problem)
        return problem

    def _free_expired_deletions(self) -> int:
        """Files of datapoints deleted before the retention period (no longer
        restorable) go, once verified central. Each pass looks only at the deletions that
        expired since the mark, which moves on (one small commit) when something expired
        or at the turn of an hour, so a quiet pass costs one indexed range read."""
        before = deletions.restorable_since(self.service.paths)
        after = self.outbox.meta(EXPIRED_DELETIONS_KEY)
        expired = deletions.expired_blobs(self.service.store, after, before)
        freed = 0
        for sha256 in expired:
            if self.service.files.exists(sha256) and localrows.free_blob_if_freeable(
                    self.service.store, self.service.files, sha256):
                freed += 1
        if expired or after is None or after[:13] != before[:13]:
            self.outbox.set_meta(EXPIRED_DELETIONS_KEY, before)
        return freed

    def _free_old_copies(self) -> int:
        days = self.settings.free_verified_after_days
        if days is None:
            return 0
        return free_verified(self.service, days, list_at_risk=False).freed

    # -- files on request ------------------------------------------------------------------

    def fetch_file(self, datapoint_id: str) -> str:
        """Download a file another bench stored (or one freed locally) with this engine's
        connection, verified (sync.fetch); return its SHA-256."""
        objects = self._object_store()
        if objects is None:
            raise CentralConfigError("object storage is not configured; cannot download files")
        held = self.service.held_blob(self.service.get(datapoint_id))
        if held is not None:
            return held
        return fetch_verified(self.service, objects, self.service.get(datapoint_id))

    # -- background loop -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="benchdata-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def wake(self) -> None:
        """Run a pass soon (new local changes, settings changed, the user asked)."""
        self._wake.set()

    def _loop(self) -> None:
        failures = 0
        next_pull = 0.0
        while not self._stop.is_set():
            try:
                pull_due = time.monotonic() >= next_pull
                report = self.run_pass(pull=pull_due and self.settings.pull)
                if pull_due:
                    next_pull = time.monotonic() + self.settings.pull_interval_s
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("sync pass crashed")
                report = PassReport(ok=False, error="internal error")
            if report.config_error:
                failures = max(failures, 5)
            failures = 0 if (report.ok or report.confirmed) else failures + 1
            # MongoDB answered: new values need not wait out a backoff meant for S3.
            self._wait(failures, next_pull, watch_changes=report.central_ok)

    def _wait(self, failures: int, next_pull: float, watch_changes: bool = False) -> None:
        """Until there is work: a new local change, a due retry, the next pull, or stop.

        While backing off after a failed pass only a request, a wake-up or (with
        ``watch_changes``, when only object storage failed) a new local change ends it."""
        if failures:
            deadline = time.monotonic() + backoff_delay(
                failures, base=1.0, cap=LOOP_BACKOFF_CAP_S, rng=self._rng)
        else:
            deadline = next_pull if self.settings.pull else time.monotonic() + 3600
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                return
            if self._wake.is_set():
                self._wake.clear()
                return
            if self._sync_requested():
                return
            if not failures or watch_changes:
                try:
                    if self.outbox.has_uncollected():
                        return
                    due_in = self.outbox.next_due_in()
                    if not failures and due_in is not None and due_in <= 0:
                        return
                except Exception:  # noqa: BLE001 - a locked database: look again later
                    log.debug("checking for local changes failed", exc_info=True)
            self._wake.wait(min(POLL_INTERVAL_S, max(0.0, deadline - now)))

    def _sync_requested(self) -> bool:
        """True once per new request_sync() from any process."""
        try:
            request = self.outbox.meta(SYNC_REQUEST_KEY)
        except Exception:  # noqa: BLE001 - a locked database: look again later
            return False
        if request == self._seen_request:
            return False
        self._seen_request = request
        return True

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return sync_status(self.service, self.outbox, self.settings)


def sync_status(service: BenchService, outbox: Optional[Outbox] = None,
                settings: Optional[CentralSettings] = None) -> dict[str, Any]:
    """Backlog, last successful sync, quarantine — readable without any server."""
    outbox = outbox or Outbox(service.store)
    backlog = outbox.backlog()
    oldest = backlog.pop("oldest_change")
    age_s: Optional[float] = None
    if oldest:
        from app.core.timestamps import parse_timestamp

        age_s = max(0.0, (utc_now() - parse_timestamp(oldest)).total_seconds())
    try:
        configured = (settings or load_settings(service.paths)).configured
    except Exception:  # noqa: BLE001 - reported by `sync test`
        configured = False
    return {
        "configured": configured,
        "bench_id": outbox.bench_id(),
        "backlog": {**backlog, "oldest_change": oldest, "oldest_age_s": age_s},
        "last_success": outbox.meta("last_success"),
        "last_confirmed_at": outbox.meta("last_confirmed_at"),
        "last_pull": outbox.meta("last_pull"),
        "config_error": outbox.meta("config_error"),
        "last_attempt": _json_meta(outbox, "last_attempt"),
        "clock": _json_meta(outbox, "clock"),
        "quarantined": [
            {"datapoint_id": q.datapoint_id, "label": q.label, "reason": q.reason,
             "since": q.since} for q in outbox.quarantined()],
        "retrying": outbox.errors_summary(),
        "last_scrub": custody.last_scrub_run(service.store),
    }


def _json_meta(outbox: Outbox, key: str) -> Optional[dict[str, Any]]:
    text = outbox.meta(key)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


__all__ = ["PassReport", "SyncEngine", "sync_status", "RetryableError"]
