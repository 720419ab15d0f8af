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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
from app.core.errors import ValidationError
from app.ingest import originals
from app.ingest.capture import Capturer
from app.ingest.completeness import QuietTracker
from app.ingest.ledger import Ledger
from app.ingest.outcomes import IngestEvent as IngestEvent  # re-exported
from app.ingest.outcomes import Listener, RuleStatus, WorkerOptions
from app.ingest.profiles import CompletenessProfile
from app.ingest.rules import WatchRule
from app.ingest.scanloop import NETWORK_FILESYSTEMS as NETWORK_FILESYSTEMS  # re-exported
from app.ingest.scanloop import ScanLoop, is_network_path
from app.ingest.scanner import as_seen_from
from app.service import BenchService

log = logging.getLogger(__name__)

#: Event types worth a look (attribute changes included: ``touch`` sets only the mtime).
#: Opens and closes without writing are noise, and our own reads would echo back.
_EVENT_FILTER: Final = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent,
                        FileDeletedEvent, FileAttribEvent, DirCreatedEvent, DirMovedEvent,
                        DirDeletedEvent]
#: Units whose "waiting for ..." a status shows (the count of waiting units is exact).
_MAX_REPORTED_WAITING: Final = 50


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


class RuleWorker(ScanLoop):
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
