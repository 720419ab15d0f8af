"""The watcher's scan loop: scans (truth), hints (events), completeness and capture.

:class:`ScanLoop` finds units, tracks them through their quiet period, asks the
completeness checks and the rule's profile, and prepares and commits captures; what each
attempt ends in is handled by :class:`~app.ingest.outcomes.Outcomes`. The state is made in
:class:`app.ingest.watcher.RuleWorker`'s ``__init__``; everything runs on the worker thread
(copies on its capture pool).
"""

from __future__ import annotations

import logging
import os
import stat as stat_module
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Final, Optional

from app.core import fsnames
from app.ingest import originals
from app.ingest.capture import Prepared
from app.ingest.completeness import file_signature, is_unlocked, marker_present
from app.ingest.ledger import LedgerEntry
from app.ingest.outcomes import Outcomes
from app.ingest.profiles import Candidate, CompletenessProfile, Verdict
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

_LEDGER_BATCH: Final = 500
_CAPTURE_BATCH: Final = 64
#: Files copied into the store at once. The store fsyncs every blob (durability first), so
#: one copy at a time is bound by fsync latency; a few in parallel overlap it.
_CAPTURE_THREADS: Final = 4

#: File systems whose change notifications cannot be trusted (SMB stops sending them, NFS
#: never sends other clients' changes): ``observer=auto`` polls these.
NETWORK_FILESYSTEMS: Final = frozenset({
    "nfs", "nfs4", "cifs", "smbfs", "smb3", "ncpfs", "afs", "9p", "ceph", "glusterfs",
    "lustre", "gpfs", "davfs", "fuse.sshfs", "sshfs", "fuse.davfs2", "fuse.glusterfs",
    "fuse.rclone", "fuse.s3fs", "fuse.gcsfuse", "fuse.cifs", "virtiofs",
})


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


class ScanLoop(Outcomes):
    """Scans, hints and captures (a base of ``RuleWorker``; see the module)."""

    service: BenchService
    _stop: threading.Event
    _pool: Optional[ThreadPoolExecutor]
    _profile: Optional[CompletenessProfile]
    _profile_note: str
    _on_network: Optional[bool]
    _private: list[Path]
    _private_here: list[Path]
    _root_prefix: str
    _hints: set[str]
    _dir_hints: set[str]
    _observer_kind: str
    _next_rescan: float
    _next_liveness: float
    _scans: int
    _last_scan_seconds: Optional[float]
    _originals_let_go: int
    _last_original: Optional[str]
    _originals_kept: dict[str, str]

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
