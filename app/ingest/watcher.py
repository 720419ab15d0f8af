"""One worker per watched folder: events are hints, scans are truth.

Each :class:`RuleWorker` owns one thread and, optionally, one watchdog observer::

    watchdog events ──► hints (a set: duplicates collapse) ─┐
    start-up scan, scan after each observer start,          ├─► QuietTracker ─► complete?
    periodic rescans, scans of new/moved-in folders ────────┘      (quiet period,
                                                                     marker, lock test)
                                                                          │
              ledger says "already captured"? ◄── capture (copy+hash) ◄───┘
                                                     │
                              intent ─► datapoints ─► ledger row   (see ``ledger``)

The thread also checks, about once a second, that the watched folder is there (an
unmounted share is reported and waited for — never read as "every file was deleted") and
that the observer's threads are alive (restarted, followed by a scan, if not). Nothing a
file does — vanish, stay locked, refuse to be read — stops the worker: each problem is
reported, retried with backoff, and the other files go on.
"""

from __future__ import annotations

import logging
import os
import stat as stat_module
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Optional

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from app.core import fsnames
from app.core.backoff import backoff_delay
from app.core.errors import (
    CaptureError,
    SourceChangedError,
    SourceIsDirectoryError,
    SourceMissingError,
    SourceRefusedError,
    ValidationError,
)
from app.core.models import DataPoint
from app.ingest import originals
from app.ingest.capture import Capturer, Prepared, Unchanged
from app.ingest.completeness import QuietTracker, file_signature, is_unlocked, marker_present
from app.ingest.ledger import Ledger, LedgerEntry
from app.ingest.profiles import Candidate, CompletenessProfile, Verdict
from app.ingest.rules import WatchRule
from app.ingest.scanner import (
    DatasetListing,
    FileEntry,
    RootMissingError,
    as_seen_from,
    link_refusal,
    list_dataset,
    walk_dataset_folders,
    walk_files,
)
from app.service import BenchService

log = logging.getLogger(__name__)

#: Event types worth a look (attribute changes included: ``touch`` sets only the mtime).
#: Opens and closes without writing are noise, and our own reads would echo back.
_EVENT_FILTER: Final = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent,
                        FileDeletedEvent, FileAttribEvent, DirCreatedEvent, DirMovedEvent,
                        DirDeletedEvent]
_LEDGER_BATCH: Final = 500
_CAPTURE_BATCH: Final = 64
#: Files copied into the store at once. The store fsyncs every blob (durability first), so
#: one copy at a time is bound by fsync latency; a few in parallel overlap it.
_CAPTURE_THREADS: Final = 4
_MAX_REPORTED_PROBLEMS: Final = 200
#: Units whose "waiting for ..." a status shows (the count of waiting units is exact).
_MAX_REPORTED_WAITING: Final = 50

#: File systems whose change notifications cannot be trusted (SMB stops sending them, NFS
#: never sends other clients' changes): ``observer=auto`` polls these.
NETWORK_FILESYSTEMS: Final = frozenset({
    "nfs", "nfs4", "cifs", "smbfs", "smb3", "ncpfs", "afs", "9p", "ceph", "glusterfs",
    "lustre", "gpfs", "davfs", "fuse.sshfs", "sshfs", "fuse.davfs2", "fuse.glusterfs",
    "fuse.rclone", "fuse.s3fs", "fuse.gcsfuse", "fuse.cifs", "virtiofs",
})


# -- reports -------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestEvent:
    """Something a watcher did or ran into; delivered to listeners on the worker thread.

    ``kind``: captured, unchanged (touched, same content), vanished, problem, resolved,
    missing (watched folder gone), restored, observer_restarted, scan_done.
    """

    kind: str
    rule_id: str
    rel_path: str = ""
    message: str = ""
    datapoint: Optional[DataPoint] = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class RuleStatus:
    """A snapshot of one worker, for the CLI, the GUI and tests."""

    rule_id: str
    name: str
    path: str
    state: str  # starting | watching | missing | stopped
    observer: str  # native | polling | none
    waiting: int  # units in their quiet period (or waiting for a marker/lock/retry)
    captured: int  # datapoints created since the worker started
    scans: int
    last_scan_seconds: Optional[float]
    problems: dict[str, str]
    #: Quiet units the completeness profile (or marker, lock test) still holds back, by
    #: readable relative path: what each waits for ("`fid` or `ser`").
    waiting_for: dict[str, str] = field(default_factory=dict)
    #: What the profile cannot check here and does instead (e.g. held-open elsewhere
    #: than on Linux: the quiet period alone decides).
    note: str = ""
    #: Originals removed or moved since the worker started (app/ingest/originals.py), and
    #: the last one ("removed a/b.csv" / "moved a/b.csv to /archive/a/b.csv").
    originals_let_go: int = 0
    last_original: Optional[str] = None


@dataclass(frozen=True)
class WorkerOptions:
    """Timing knobs of the worker itself (rules hold the per-folder ones)."""

    liveness_interval: float = 1.0  # seconds between folder/observer checks
    retry_base: float = 1.0  # first retry after a problem; doubles up to retry_max
    retry_max: float = 60.0
    marker_recheck: float = 0.5  # how often a quiet unit looks for its marker/lock again


Listener = Callable[[IngestEvent], None]


# -- helpers -------------------------------------------------------------------------


def is_network_path(path: Path) -> bool:
    """Best effort: is ``path`` on a network file system (where events are unreliable)?"""
    text = os.path.abspath(str(path))
    if sys.platform == "win32":  # pragma: no cover - Windows only
        if text.startswith("\\\\"):
            return True
        import ctypes

        drive = os.path.splitdrive(text)[0] + "\\"
        return bool(drive and ctypes.windll.kernel32.GetDriveTypeW(drive) == 4)  # DRIVE_REMOTE
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            best, best_type = "", ""
            real = os.path.realpath(text)
            for line in mounts:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ").replace("\\011", "\t")
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, best_type = point, parts[2]
            return best_type in NETWORK_FILESYSTEMS
    except OSError:
        return False


class _HintHandler(FileSystemEventHandler):
    """Turns watchdog events into hints. Never raises: an exception here would kill the
    observer thread (one of the known watchdog traps)."""

    def __init__(self, worker: "RuleWorker") -> None:
        self._worker = worker

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            target = getattr(event, "dest_path", "") or event.src_path
            target = os.fsdecode(target)
            if event.is_directory:
                if isinstance(event, (DirCreatedEvent, DirMovedEvent)):
                    self._worker.hint_dir(target)
                elif self._worker.rule.folder_units:
                    self._worker.hint(target)
            else:
                self._worker.hint(target)
        except Exception:  # see the class docstring
            log.exception("ignoring a watchdog event that could not be handled")


class RuleWorker:
    """Watches one folder for one rule and captures its complete files exactly once."""

    def __init__(self, service: BenchService, ledger: Ledger, rule: WatchRule, *,
                 emit: Listener, staging_dir: Path,
                 options: Optional[WorkerOptions] = None) -> None:
        self.service = service
        self.ledger = ledger
        self.rule = rule
        self.root = rule.root
        self._emit_to = emit
        self._capturer = Capturer(service, ledger, rule, staging_dir)
        self._options = options or WorkerOptions()
        self._clock = time.monotonic
        self._root_prefix = str(self.root).rstrip(os.sep) + os.sep
        #: The bench's own folders: never entered, never captured, whatever links say
        #: (``_private_here``: also as paths below this root; updated by full scans).
        self._private = service.paths.private_dirs()
        self._private_here = as_seen_from(self.root, self._private)

        self._lock = threading.Lock()
        self._hints: set[str] = set()
        self._dir_hints: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pool: Optional[ThreadPoolExecutor] = None

        self._tracker: QuietTracker[str] = QuietTracker(rule.quiet_seconds)
        self._attempts: dict[str, int] = {}
        self._problems: dict[str, str] = {}  # readable relative path -> message
        self._waiting_for: dict[str, str] = {}  # relative path -> what it waits for
        self._profile: Optional[CompletenessProfile] = None  # built when the worker runs
        self._profile_note = ""
        self._on_network: Optional[bool] = None
        #: Links and other files refused for good (relative path -> why); rebuilt by
        #: every full scan, so a link that was removed stops being reported.
        self._refused: dict[str, str] = {}
        self._refused_seen: Optional[set[str]] = None  # during a full scan
        self._problems_saved: Optional[dict[str, str]] = None  # what watch list shows
        self._observer: Optional[BaseObserver] = None
        self._observer_kind = "none"
        self._decided_kind: Optional[str] = None
        self._observer_root: Optional[tuple[int, int]] = None
        self._observer_failed_at: Optional[float] = None
        self._missing: Optional[bool] = None  # None until the first check
        self._scan_requested = True
        self._next_rescan = 0.0
        self._next_liveness = 0.0
        self._state = "starting"
        self._captured = 0
        self._scans = 0
        self._last_scan_seconds: Optional[float] = None
        self._originals_let_go = 0
        self._last_original: Optional[str] = None
        self._originals_kept: dict[str, str] = {}  # reported once each
        if rule.originals_after_days is not None:
            originals.install(service.store)

    # -- lifecycle (any thread) --------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.rule.id}",
                                        daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: Optional[float] = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("watcher %s did not stop within %ss", self.rule.id, timeout)

    def stop(self, timeout: Optional[float] = 30.0) -> None:
        self.request_stop()
        self.join(timeout)

    def hint(self, path: str) -> None:
        """A file may have changed (called from the observer thread)."""
        with self._lock:
            self._hints.add(path)
        self._wake.set()

    def hint_dir(self, path: str) -> None:
        """A folder appeared (created or moved in): its files need a scan."""
        with self._lock:
            self._dir_hints.add(path)
        self._wake.set()

    def request_scan(self) -> None:
        with self._lock:
            self._scan_requested = True
        self._wake.set()

    def status(self) -> RuleStatus:
        with self._lock:
            return RuleStatus(
                rule_id=self.rule.id, name=self.rule.name, path=self.rule.path,
                state=self._state, observer=self._observer_kind, waiting=len(self._tracker),
                captured=self._captured, scans=self._scans,
                last_scan_seconds=self._last_scan_seconds, problems=self._all_problems(),
                waiting_for={fsnames.readable(rel): what for rel, what
                             in list(self._waiting_for.items())[:_MAX_REPORTED_WAITING]},
                note=self._profile_note, originals_let_go=self._originals_let_go,
                last_original=self._last_original)

    def _all_problems(self) -> dict[str, str]:
        """Problems and refusals by readable path (caller holds ``_lock``)."""
        return {**{fsnames.readable(rel): why for rel, why in self._refused.items()},
                **self._problems}

    @property
    def observer(self) -> Optional[BaseObserver]:
        return self._observer

    # -- the worker thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception as exc:  # the worker must not die
                    log.exception("watcher %s: unexpected error; continuing", self.rule.id)
                    self._emit("problem", message=f"unexpected error: {exc}")
                    self._stop.wait(self._options.retry_base)
                self._save_problems()
                self._wake.wait(self._seconds_to_next_wake())
                self._wake.clear()
        finally:
            with self._lock:  # nothing is watched any more: nothing to report
                self._problems.clear()
                self._refused.clear()
            self._save_problems()
            self._stop_observer()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            with self._lock:
                self._state = "stopped"

    def _save_problems(self) -> None:
        """Keep the rule's problems in the store when they change, for ``watch list`` in
        another process (the window's panel reads :meth:`status` directly)."""
        with self._lock:
            current = self._all_problems()
        if current == self._problems_saved:
            return
        try:
            self.ledger.save_problems(self.rule.id, current)
            self._problems_saved = current
        except Exception:  # reporting must not stop capturing; tried again next step
            log.warning("watcher %s: could not save its problems for 'watch list'",
                        self.rule.id, exc_info=True)

    def _seconds_to_next_wake(self) -> float:
        moments = [self._next_liveness, self._next_rescan]
        due = self._tracker.next_due()
        if due is not None:
            moments.append(due)
        return max(0.0, min(moments) - self._clock())

    def _step(self) -> None:
        now = self._clock()
        if now >= self._next_liveness:
            self._next_liveness = now + self._options.liveness_interval
            self._check_root_and_observer()
        if self._missing or not self._profile_ready():
            with self._lock:
                self._hints.clear()
                self._dir_hints.clear()
            return
        with self._lock:
            scan_now = self._scan_requested
            self._scan_requested = False
        if scan_now or now >= self._next_rescan:
            self._full_scan()
        self._process_hints()
        self._process_due()

    def _profile_ready(self) -> bool:
        """Build the rule's completeness profile once; while it cannot be (a plugin that is
        not installed, wrong options), nothing is captured and the status says why."""
        if self._profile is not None:
            return True
        try:
            self._profile = self.rule.completeness
        except ValidationError as exc:
            self._set_problem(".", f"nothing is captured: {exc}")
            return False
        with self._lock:
            self._problems.pop(".", None)
            self._scan_requested = True
        return True

    # -- folder and observer liveness ---------------------------------------------------

    def _check_root_and_observer(self) -> None:
        try:
            root_stat = os.stat(self.root)
            present = stat_module.S_ISDIR(root_stat.st_mode)
        except OSError:
            present = False
        if not present:
            if self._missing is not True:
                log.warning("watched folder %s is not there (unmounted share or removed?); "
                            "nothing captured from it is touched; watching resumes when it "
                            "returns", self.root)
                self._stop_observer()
                self._missing = True
                self._set_state("missing")
                self._emit("missing", message=f"{self.root} is not there")
            return
        identity = (root_stat.st_dev, root_stat.st_ino)
        if self._missing is not False:
            restored = self._missing is True
            self._missing = False
            self._decided_kind = None
            self._start_observer(identity)
            self._scan_requested = True
            self._set_state("watching")
            if restored:
                log.info("watched folder %s is back; rescanning it", self.root)
                self._emit("restored", message=f"{self.root} is back")
            return
        wanted = self._wanted_observer()
        if wanted == "none":
            return
        healthy = (self._observer is not None and self._observer_alive()
                   and self._observer_root == identity)
        if healthy:
            return
        if (self._observer is None and self._observer_failed_at is not None
                and self._clock() - self._observer_failed_at < self._options.retry_max):
            return  # scans only until the next attempt
        reason = ("the folder was replaced" if self._observer is not None
                  and self._observer_root != identity else "its observer stopped")
        log.warning("watcher %s: %s; restarting the observer and rescanning", self.rule.id,
                    reason)
        self._stop_observer()
        self._start_observer(identity)
        self._scan_requested = True
        self._emit("observer_restarted", message=reason)

    def _wanted_observer(self) -> str:
        """native/polling/none; ``auto`` is decided when the observer starts (reading the
        mount table every liveness check would cost more than it tells)."""
        if self._decided_kind is None:
            kind = self.rule.observer
            if kind == "auto":
                kind = "polling" if is_network_path(self.root) else "native"
                log.info("watcher %s: %s is on a %s file system; using %s events",
                         self.rule.id, self.root,
                         "network" if kind == "polling" else "local", kind)
            self._decided_kind = kind
        return self._decided_kind

    def _observer_alive(self) -> bool:
        """The dispatcher, every emitter, and (inotify) the reader thread behind them.

        watchdog's inotify reader is a thread of its own; if an exception kills it, the
        emitters stay "alive" but deaf — so it is checked too (a private attribute, hence
        looked up defensively: if watchdog renames it, this check simply does less).
        """
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        if not all(emitter.is_alive() for emitter in observer.emitters):
            return False
        reader = getattr(observer, "_inotify_fd", None)
        return not (isinstance(reader, threading.Thread) and not reader.is_alive())

    def _start_observer(self, identity: tuple[int, int]) -> None:
        kind = self._wanted_observer()
        if kind == "none":
            self._observer_kind = "none"
            return
        observer: BaseObserver = (PollingObserver(timeout=self.rule.poll_interval)
                                  if kind == "polling" else Observer())
        observer.daemon = True
        try:
            observer.schedule(_HintHandler(self), str(self.root), recursive=self.rule.recursive,
                              event_filter=_EVENT_FILTER)
            observer.start()
        except Exception as exc:  # noqa: BLE001 - e.g. the inotify watch limit
            log.warning("watcher %s: cannot start the %s observer (%s); relying on scans "
                        "every %ss until it can", self.rule.id, kind, exc,
                        self.rule.poll_interval)
            self._observer_failed_at = self._clock()
            self._observer = None
            self._observer_kind = "none"
            self._next_rescan = min(self._next_rescan, self._clock() + self.rule.poll_interval)
            try:
                observer.stop()
                if observer.is_alive():
                    observer.join(5)
            except Exception:  # it never started properly; nothing else to clean up
                log.debug("stopping a failed observer failed", exc_info=True)
            return
        self._observer_failed_at = None
        self._observer = observer
        self._observer_root = identity
        with self._lock:
            self._observer_kind = kind

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is None:
            return
        try:
            observer.stop()
            if observer.is_alive():
                observer.join(10)
            else:
                # A dead dispatcher may still have live emitters; stop them too.
                for emitter in list(observer.emitters):
                    emitter.stop()
                    if emitter.is_alive():
                        emitter.join(5)
        except Exception:  # stopping must never fail the worker
            log.exception("watcher %s: stopping the observer failed", self.rule.id)

    # -- scans (truth) -----------------------------------------------------------------

    def _scan_interval(self) -> float:
        if self._observer_kind == "none":
            # Scans are the only source of news: poll at the poll interval.
            return min(self.rule.rescan_interval, self.rule.poll_interval)
        return self.rule.rescan_interval

    def _full_scan(self, start: str = "") -> None:
        began = self._clock()
        if self.service.paths.owns(self.root):
            self._set_problem(".", "the watched folder is inside this bench's own data or "
                                   "configuration folder; nothing in it is captured")
            self._next_rescan = self._clock() + self._scan_interval()
            return
        if not start:
            self._refused_seen = set()
            self._private_here = as_seen_from(self.root, self._private)
        try:
            if self.rule.folder_units:
                self._scan_datasets(start)
            else:
                self._scan_files(start)
        except RootMissingError:
            if not start:
                self._next_liveness = 0.0  # let the liveness check report it now
            return
        except PermissionError as exc:
            self._set_problem(start or ".", f"cannot list the folder: {exc}")
        finally:
            seen, self._refused_seen = self._refused_seen, None
        if not start:
            if seen is not None and not self._stop.is_set():
                with self._lock:  # links that are gone are no longer reported
                    for rel in [rel for rel in self._refused if rel not in seen]:
                        del self._refused[rel]
            elapsed = self._clock() - began
            if self.rule.originals_after_days is not None and not self._stop.is_set():
                self._sweep_originals()  # before the scan counts as done (tests wait on it)
            self._next_rescan = self._clock() + self._scan_interval()
            with self._lock:
                self._scans += 1
                self._last_scan_seconds = elapsed
            log.debug("watcher %s: scan took %.3fs, %d waiting", self.rule.id, elapsed,
                      len(self._tracker))
            self._emit("scan_done", message=f"{elapsed:.3f}s")

    def _sweep_originals(self) -> None:
        """Let go of the originals the rule allows (opt-in; see app/ingest/originals.py)."""
        try:
            done, kept = originals.sweep(self.service.store, self.rule)
        except Exception:  # cleaning up must never stop capturing
            log.exception("watcher %s: removing originals failed; tried again next scan",
                          self.rule.id)
            return
        for rel, why in kept.items():
            if self._originals_kept.get(rel) != why:
                log.warning("watcher %s: %s: %s", self.rule.id, rel, why)
        self._originals_kept = kept
        if done:
            last = done[-1]
            with self._lock:
                self._originals_let_go += len(done)
                self._last_original = (f"{last.action} {fsnames.readable(last.rel_path)}"
                                       + (f" to {last.destination}" if last.destination else ""))

    def _scan_error(self, rel: str, exc: OSError) -> None:
        self._set_problem(rel or ".", f"cannot list or read: {exc.strerror or exc}")

    def _refuse(self, rel: str, reason: str) -> None:
        """Never capture ``rel`` (a link leaving the folder ...), and say why in the status."""
        self._forget(rel)
        self._attempts.pop(rel, None)
        if self._refused_seen is not None:
            self._refused_seen.add(rel)
        with self._lock:
            first = rel not in self._refused
            if first and len(self._refused) >= _MAX_REPORTED_PROBLEMS:
                return
            self._refused[rel] = reason
            self._problems.pop(fsnames.readable(rel), None)
        if first:
            log.warning("watcher %s: not capturing %s: %s", self.rule.id,
                        fsnames.readable(rel), reason)
            self._emit("problem", rel, message=f"not captured: {reason}")

    def _scan_files(self, start: str) -> None:
        batch: list[FileEntry] = []
        for entry in walk_files(self.root, self.rule, start=start, skip=self._private,
                                on_error=self._scan_error, on_link=self._refuse):
            batch.append(entry)
            if len(batch) >= _LEDGER_BATCH:
                self._reconcile(batch)
                batch = []
                if self._stop.is_set():
                    return
        self._reconcile(batch)

    def _reconcile(self, entries: Sequence[FileEntry]) -> None:
        """Put every entry the ledger does not already hold (with these stats) in the
        tracker; entries already tracked just report their current signature."""
        now = self._clock()
        unknown = []
        for entry in entries:
            if entry.rel_path in self._tracker:
                self._tracker.observe(entry.rel_path, entry.signature, now)
            else:
                unknown.append(entry)
        if not unknown:
            return
        known = self._lookup(unknown)
        learnt = []
        for entry in unknown:
            if entry.rel_path not in known:
                continue  # its lookup failed: reported, looked at again next scan
            row = known[entry.rel_path]
            if row is not None and row.matches(entry.size, entry.mtime_ns, entry.ino,
                                               entry.ctime_ns):
                if row.lacks_identity and entry.ino:
                    learnt.append(replace(row, ino=entry.ino, ctime_ns=entry.ctime_ns))
                continue
            # New, changed, or the same size and mtime under a new inode or ctime (a copy
            # tool kept the mtime): read once when quiet; the content decides.
            self._tracker.observe(entry.rel_path, entry.signature, now)
        if learnt:
            self.ledger.learn_identity(learnt)

    def _lookup(self, entries: Sequence[FileEntry]) -> dict[str, Optional[LedgerEntry]]:
        """Ledger rows of these entries (None: not captured yet). One entry whose lookup
        fails is reported and left out; it never stops the others (or the folder)."""
        rels = [entry.rel_path for entry in entries]
        try:
            found = self.ledger.lookup_many(self.rule.id, rels)
            return {rel: found.get(rel) for rel in rels}
        except Exception:  # noqa: BLE001 - find the one that fails
            log.debug("watcher %s: a batch ledger lookup failed; looking up one by one",
                      self.rule.id, exc_info=True)
        rows: dict[str, Optional[LedgerEntry]] = {}
        for rel in rels:
            try:
                rows[rel] = self.ledger.lookup(self.rule.id, rel)
            except Exception as exc:  # noqa: BLE001
                self._set_problem(rel, f"cannot be looked up in the capture ledger: {exc}")
        return rows

    def _scan_datasets(self, start: str) -> None:
        for rel in walk_dataset_folders(self.root, self.rule, start=start,
                                        on_error=self._scan_error, skip=self._private):
            self._consider_dataset(rel, from_scan=True)
            if self._stop.is_set():
                return

    def _consider_dataset(self, rel: str, *, from_scan: bool = False) -> None:
        """An event inside a waiting dataset only restarts its quiet period (listing a big
        folder on every event would be costly); a scan has the listing, and reports it."""
        now = self._clock()
        if rel in self._tracker and not from_scan:
            self._tracker.touch(rel, now)
            return
        try:
            listing = list_dataset(self.root, self.rule, rel, on_error=self._scan_error,
                                   on_link=self._refuse, skip=self._private)
        except RootMissingError:
            return
        if rel in self._tracker:
            self._tracker.observe(rel, listing.signature, now)
            return
        if not listing.files:
            return  # an empty folder is not a dataset (yet)
        row = self.ledger.lookup(self.rule.id, rel)
        if row is not None and row.same_stats(listing.total_size, listing.max_mtime_ns,
                                              listing.fingerprint):
            return
        self._tracker.observe(rel, listing.signature, now)

    # -- hints (events) ----------------------------------------------------------------

    def _relative(self, path: str) -> Optional[str]:
        if not path.startswith(self._root_prefix):
            return None
        rel = path[len(self._root_prefix):]
        if os.sep != "/":
            rel = rel.replace(os.sep, "/")
        parts = rel.split("/")
        if not rel or any(not part for part in parts):
            return None
        if any(not self.rule.accepts_dir(part) for part in parts[:-1]):
            return None
        if not self.rule.recursive and len(parts) > 1:
            return None
        if any(Path(path).is_relative_to(folder) for folder in self._private_here):
            return None
        return rel

    def _process_hints(self) -> None:
        with self._lock:
            paths, self._hints = self._hints, set()
            dirs, self._dir_hints = self._dir_hints, set()
        for directory in dirs:
            rel = self._relative(directory)
            if rel is None:
                continue
            if self.rule.folder_units:
                unit = self._dataset_of(rel, directory_hint=True)
                if unit is not None:
                    self._consider_dataset(unit)
                elif rel.count("/") + 1 < self.rule.dataset_depth:
                    self._full_scan(start=rel)
            elif self.rule.recursive:
                self._full_scan(start=rel)
        if not paths:
            return
        if self.rule.folder_units:
            units = {u for p in paths if (r := self._relative(p)) is not None
                     and (u := self._dataset_of(r)) is not None}
            for unit in units:
                self._consider_dataset(unit)
            return
        now = self._clock()
        entries: list[FileEntry] = []
        for path in paths:
            rel = self._relative(path)
            if rel is None or not self.rule.accepts_file(rel):
                continue
            try:
                found = os.lstat(path)
            except OSError:
                continue  # gone again; if it was waiting, its due check reports it
            if stat_module.S_ISLNK(found.st_mode):
                self._refuse_if_outside(rel)
                continue
            if not stat_module.S_ISREG(found.st_mode):
                continue
            entry = FileEntry.of(rel, found)
            if rel in self._tracker:
                self._tracker.observe(rel, entry.signature, now)
                if rel in self._waiting_for:  # closed, unlocked ...: look again now
                    self._tracker.defer(rel, now)
            else:
                entries.append(entry)
        for first in range(0, len(entries), _LEDGER_BATCH):
            self._reconcile(entries[first:first + _LEDGER_BATCH])

    def _refuse_if_outside(self, rel: str) -> None:
        """A link (never followed): refused and reported when it leaves the folder."""
        reason = link_refusal(str(self.root / rel), os.path.realpath(self.root), self._private)
        if reason is not None:
            self._refuse(rel, reason)
        else:
            self._forget(rel)

    def _dataset_of(self, rel: str, directory_hint: bool = False) -> Optional[str]:
        """The dataset folder a path belongs to (None above the dataset level)."""
        parts = rel.split("/")
        depth = self.rule.dataset_depth
        if len(parts) < depth or (len(parts) == depth and not directory_hint
                                  and not (self.root / rel).is_dir()):
            return None
        return "/".join(parts[:depth])

    # -- completeness and capture ------------------------------------------------------

    def _process_due(self) -> None:
        now = self._clock()
        due = self._tracker.pop_due(now)
        if not due:
            return
        ready_files: list[tuple[str, os.stat_result]] = []
        for key in due:
            if self._stop.is_set():
                self._tracker.defer(key, now)
                continue
            try:
                if self.rule.folder_units:
                    listing = self._check_dataset(key, now)
                    if listing is not None:
                        self._capture_dataset(key, listing)
                else:
                    found = self._check_file(key, now)
                    if found is not None:
                        ready_files.append((key, found))
            except Exception as exc:  # noqa: BLE001 - one unit must not stop the others
                self._unexpected([key], exc)
        for first in range(0, len(ready_files), _CAPTURE_BATCH):
            batch = ready_files[first:first + _CAPTURE_BATCH]
            if self._stop.is_set():
                for key, _found in ready_files[first:]:
                    self._tracker.defer(key, self._clock())
                return
            try:
                self._capture_files(batch)
            except Exception as exc:  # noqa: BLE001
                self._unexpected([key for key, _found in batch if key in self._tracker], exc)

    def _unexpected(self, keys: Sequence[str], exc: Exception) -> None:
        """An error we did not plan for (the database, a bug): finish any capture whose
        datapoint was committed, and retry the rest later."""
        log.error("watcher %s: unexpected error while capturing; will retry", self.rule.id,
                  exc_info=exc)
        try:
            self.ledger.recover(rule_id=self.rule.id)
        except Exception:
            log.exception("watcher %s: could not reconcile the capture ledger", self.rule.id)
        for key in keys:
            row = None
            try:
                row = self.ledger.lookup(self.rule.id, key)
                current = os.lstat(self.root / key)
            except OSError:
                current = None
            except Exception:  # noqa: BLE001
                current = None
            if row is not None and current is not None and row.matches(
                    current.st_size, current.st_mtime_ns, current.st_ino,
                    current.st_ctime_ns):
                self._done(key)
            else:
                self._retry_later(key, f"unexpected error: {exc}")

    def _check_file(self, key: str, now: float) -> Optional[os.stat_result]:
        path = self.root / key
        try:
            found = os.lstat(path)
        except FileNotFoundError:
            self._vanished(key)
            return None
        except OSError as exc:
            self._retry_later(key, f"cannot read its size and time: {exc.strerror or exc}")
            return None
        if stat_module.S_ISLNK(found.st_mode):  # replaced by a link since it was seen
            self._refuse_if_outside(key)
            return None
        if not stat_module.S_ISREG(found.st_mode):
            self._forget(key)
            return None
        if not self._tracker.confirm(key, file_signature(found), now):
            return None
        if not self._extra_checks_pass(key, [path], path, now):
            return None
        if not self._profile_allows(key, Candidate(path, key, False,
                                                   on_network_share=self._network_share()), now):
            return None
        return found

    def _check_dataset(self, key: str, now: float) -> Optional[DatasetListing]:
        try:
            listing = list_dataset(self.root, self.rule, key, on_error=self._scan_error,
                                   on_link=self._refuse, skip=self._private)
        except RootMissingError:
            self._vanished(key)
            return None
        if not listing.files:
            self._vanished(key)
            return None
        if not self._tracker.confirm(key, listing.signature, now):
            return None
        folder = self.root / key
        files = [folder / f.rel_path for f in listing.files]
        if not self._extra_checks_pass(key, files, folder, now):
            return None
        if not self._profile_allows(key, Candidate(folder, key, True, tuple(listing.files),
                                                   on_network_share=self._network_share()), now):
            return None
        return listing

    def _recheck_at(self, now: float) -> float:
        return now + max(0.05, min(self._options.marker_recheck, self.rule.quiet_seconds or 0.05))

    def _extra_checks_pass(self, key: str, files: Iterable[Path], unit: Path, now: float) -> bool:
        recheck = self._recheck_at(now)
        marker = self.rule.marker_for(unit)
        if marker is not None and not marker_present(marker):
            self._wait_for(key, f"`{marker.name}`")
            self._tracker.defer(key, recheck)
            return False
        if self.rule.lock_test:
            for path in files:
                try:
                    unlocked = is_unlocked(path)
                except FileNotFoundError:
                    self._tracker.restart(key, now)
                    return False
                except OSError as exc:
                    self._retry_later(key, f"cannot test whether it is in use: {exc.strerror or exc}")
                    return False
                if not unlocked:
                    self._wait_for(key, f"`{path.name}` to be unlocked")
                    self._tracker.defer(key, recheck)
                    return False
        return True

    def _profile_allows(self, key: str, candidate: Candidate, now: float) -> bool:
        """Ask the completeness profile about a quiet unit; a waiting one is looked at again
        shortly (and at once when it changes: events and scans restart its quiet period)."""
        assert self._profile is not None  # _step builds it before anything is tracked
        try:
            verdict = self._profile.check(candidate)
            if not isinstance(verdict, Verdict):
                raise TypeError(f"check() returned {type(verdict).__name__}, not a Verdict")
        except OSError as exc:
            self._retry_later(key, f"cannot tell whether it is complete: {exc.strerror or exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - a profile's bug stops only this unit
            log.warning("watcher %s: completeness profile %r failed on %s", self.rule.id,
                        self.rule.profile, fsnames.readable(key), exc_info=True)
            self._retry_later(key, f"completeness profile {self.rule.profile!r} failed: {exc}")
            return False
        note = fsnames.readable(str(verdict.note or ""))
        if note != self._profile_note:
            with self._lock:
                self._profile_note = note
        if verdict.complete:
            return True
        self._wait_for(key, verdict.waiting_for or "the completeness profile")
        later = now + verdict.recheck_s if verdict.recheck_s else 0.0
        self._tracker.defer(key, max(self._recheck_at(now), later))
        return False

    def _wait_for(self, key: str, what: str) -> None:
        what = fsnames.readable(str(what))  # names in it may not be UTF-8; stored as text
        with self._lock:
            self._waiting_for[key] = what

    def _network_share(self) -> bool:
        if self._on_network is None:
            self._on_network = is_network_path(self.root)
        return self._on_network

    def _capture_files(self, ready: Sequence[tuple[str, os.stat_result]]) -> None:
        """Copy (in parallel) then commit (in one batch); bookkeeping stays on this thread."""
        if len(ready) == 1:
            outcomes: list[object] = [self._prepare_guarded(ready[0])]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_CAPTURE_THREADS,
                                                thread_name_prefix=f"capture-{self.rule.id}")
            outcomes = list(self._pool.map(self._prepare_guarded, ready))
        prepared = [outcome for (key, _found), outcome in zip(ready, outcomes)
                    if self._settle(key, outcome) and isinstance(outcome, Prepared)]
        if prepared:
            self._commit(prepared)

    def _prepare_guarded(self, item: tuple[str, os.stat_result]) -> object:
        """Runs on the capture pool: never raises, returns the outcome instead."""
        try:
            return self._capturer.prepare_file(*item)
        except Exception as exc:  # noqa: BLE001 - classified on the worker thread
            return exc

    def _capture_dataset(self, key: str, listing: DatasetListing) -> None:
        try:
            outcome: object = self._capturer.prepare_dataset(key, listing)
        except Exception as exc:  # noqa: BLE001 - classified below
            outcome = exc
        if self._settle(key, outcome) and isinstance(outcome, Prepared):
            self._commit([outcome])

    def _settle(self, key: str, outcome: object) -> bool:
        """Act on what preparing a unit gave; True when it is ready to be stored."""
        if isinstance(outcome, Prepared):
            return True
        if isinstance(outcome, Unchanged):
            self._capturer.refresh(outcome)
            log.info("watcher %s: %s was touched but its content is unchanged",
                     self.rule.id, key)
            self._emit("unchanged", key,
                       message=f"same content as {outcome.entry.datapoint_id}")
            self._done(key)
        elif outcome is None:
            self._done(key)  # the ledger already has it as it is
        elif isinstance(outcome, SourceRefusedError):
            self._refuse(key, str(outcome))
        elif isinstance(outcome, SourceChangedError):
            self._tracker.restart(key, self._clock())
        elif isinstance(outcome, (SourceMissingError, SourceIsDirectoryError)):
            if self.rule.folder_units:
                self._tracker.restart(key, self._clock())  # a file inside went; list again
            else:
                self._vanished(key)
        elif isinstance(outcome, (CaptureError, OSError)):
            self._retry_later(key, str(outcome))
        elif isinstance(outcome, Exception):
            self._unexpected([key], outcome)
        return False

    def _commit(self, prepared: Sequence[Prepared]) -> None:
        try:
            stored = self._capturer.store(prepared)
        except Exception as exc:  # noqa: BLE001 - isolate the one that fails
            if len(prepared) > 1:
                for item in prepared:
                    self._commit([item])
                return
            self._capturer.abandon(prepared[0])
            self._retry_later(prepared[0].key, f"could not be stored: {exc}")
            return
        for item, datapoint in zip(prepared, stored):
            self._done(item.key)
            with self._lock:
                self._captured += 1
            log.info("captured %s as %s (%s)%s", datapoint.path, datapoint.datapoint_id,
                     datapoint.label, f", replacing {item.replaced}" if item.replaced else "")
            self._emit("captured", item.key, datapoint=datapoint,
                       message=f"replaces {item.replaced}" if item.replaced else "")

    # -- outcomes ----------------------------------------------------------------------

    def _forget(self, key: str) -> None:
        """``key`` is no longer waiting (captured, gone, refused, not a file)."""
        self._tracker.discard(key)
        if key in self._waiting_for:
            with self._lock:
                self._waiting_for.pop(key, None)

    def _done(self, key: str) -> None:
        self._forget(key)
        self._attempts.pop(key, None)
        with self._lock:
            self._refused.pop(key, None)  # a link replaced by a file that was captured
            had_problem = self._problems.pop(fsnames.readable(key), None) is not None
        if had_problem:
            self._emit("resolved", key)

    def _vanished(self, key: str) -> None:
        self._forget(key)
        self._attempts.pop(key, None)
        with self._lock:
            self._problems.pop(fsnames.readable(key), None)
        log.info("watcher %s: %s vanished before it was complete; nothing captured",
                 self.rule.id, fsnames.readable(key))
        self._emit("vanished", key, message="vanished before it was captured")

    def _retry_later(self, key: str, message: str) -> None:
        attempts = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempts
        delay = backoff_delay(attempts, base=self._options.retry_base,
                              cap=self._options.retry_max, jitter=False)
        if key not in self._tracker:
            self._tracker.touch(key, self._clock())
        self._tracker.defer(key, self._clock() + delay)
        first = self._set_problem(key, message)
        if first or attempts % 10 == 0:
            log.warning("watcher %s: %s: %s (attempt %d; retrying in %.0fs)", self.rule.id,
                        fsnames.readable(key), fsnames.readable(message), attempts, delay)

    def _set_problem(self, key: str, message: str) -> bool:
        key, message = fsnames.readable(key), fsnames.readable(message)
        with self._lock:
            first = key not in self._problems
            if first and len(self._problems) >= _MAX_REPORTED_PROBLEMS:
                return False
            self._problems[key] = message
        if first:
            self._emit("problem", key, message=message)
        return first

    def _set_state(self, state: str) -> None:
        with self._lock:
            self._state = state

    def _emit(self, kind: str, rel_path: str = "", *, message: str = "",
              datapoint: Optional[DataPoint] = None) -> None:
        try:
            self._emit_to(IngestEvent(kind, self.rule.id, fsnames.readable(rel_path),
                                      fsnames.readable(message), datapoint))
        except Exception:  # a listener must not break the worker
            log.exception("an ingest listener failed")
