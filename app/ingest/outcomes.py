"""What happens to each unit a watcher looks at, and how it is reported.

A unit's preparation ends in an outcome (prepared, unchanged, refused, changed, gone, an
error); :class:`Outcomes` acts on it (commit, retry with backoff, forget) and reports it
as an :class:`IngestEvent` and in the worker's problems. The state it works on is made
in :class:`app.ingest.watcher.RuleWorker`'s ``__init__``; it runs on the worker thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Optional

from app.core import fsnames
from app.core.backoff import backoff_delay
from app.core.errors import (
    CaptureError,
    SourceChangedError,
    SourceIsDirectoryError,
    SourceMissingError,
    SourceRefusedError,
)
from app.core.models import DataPoint
from app.ingest.capture import Capturer, Prepared, Unchanged
from app.ingest.completeness import QuietTracker
from app.ingest.ledger import Ledger
from app.ingest.rules import WatchRule

log = logging.getLogger(__name__)

_MAX_REPORTED_PROBLEMS: Final = 200


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


# -- outcomes ----------------------------------------------------------------------


class Outcomes:
    """The worker's bookkeeping of outcomes (a base of ``RuleWorker``; see the module)."""

    rule: WatchRule
    ledger: Ledger
    root: Path
    _capturer: Capturer
    _options: WorkerOptions
    _clock: Callable[[], float]
    _emit_to: Listener
    _lock: threading.Lock
    _tracker: QuietTracker[str]
    _attempts: dict[str, int]
    _problems: dict[str, str]
    _waiting_for: dict[str, str]
    _refused: dict[str, str]
    _refused_seen: Optional[set[str]]
    _captured: int
    _state: str

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
