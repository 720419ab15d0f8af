"""Turning a complete file or dataset folder into a datapoint, exactly once.

The watcher decides *when* (see ``watcher``); this module does *what*:

* :meth:`Capturer.prepare_file` / :meth:`Capturer.prepare_dataset` copy (and hash) the unit
  into the file store outside any transaction and say what it is: a new datapoint
  (:class:`Prepared`, possibly replacing an earlier one), the same content under new stats
  (:class:`Unchanged`), or nothing to do (``None``: the ledger already has it).
* :meth:`Capturer.store` commits a batch: intent, datapoints, ledger rows (see ``ledger``
  for why three commits). It raises if the datapoints could not be stored, after dropping
  the intents and any blob no datapoint uses.

Capture errors (``SourceChangedError``, ``SourceMissingError``, ``SourceUnreadableError``,
``DiskFullError`` ...) propagate; the watcher classifies them.
"""

from __future__ import annotations

import errno
import logging
import os
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Optional

from app.core import capture_notes, fsnames
from app.core.errors import SourceChangedError, SourceMissingError, SourceRefusedError
from app.core.models import DataPoint, FileDataPoint
from app.core.timestamps import format_canonical
from app.ingest.completeness import file_signature
from app.ingest.ledger import Ledger, LedgerEntry
from app.ingest.rules import WatchRule
from app.ingest.scanner import (
    DatasetListing,
    FileEntry,
    RootMissingError,
    link_refusal,
    list_dataset,
)
from app.ingest.templates import describe
from app.service import BenchService, guess_content_type
from app.staging import StagedBlobs

log = logging.getLogger(__name__)

_ARCHIVE_DATE: Final = (1980, 1, 1, 0, 0, 0)
_READ_CHUNK: Final = 4 * 1024 * 1024


@dataclass(frozen=True)
class Prepared:
    """A unit copied into the file store, ready to become a datapoint.

    ``staged`` holds its blob until the caller settles it after the commit (or failure),
    so a concurrent failing capture of the same bytes cannot remove it meanwhile."""

    key: str
    datapoint: FileDataPoint
    entry: LedgerEntry
    staged: StagedBlobs
    replaced: Optional[str]


@dataclass(frozen=True)
class Unchanged:
    """Touched but not changed: the ledger learns the new stats, no datapoint."""

    key: str
    entry: LedgerEntry


def _iso(mtime_ns: int) -> str:
    return format_canonical(datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc))


class Capturer:
    """Copies, describes and stores the units of one rule. Thread-safe for ``prepare_*``."""

    def __init__(self, service: BenchService, ledger: Ledger, rule: WatchRule,
                 staging_dir: Path) -> None:
        self.service = service
        self.ledger = ledger
        self.rule = rule
        self.root = rule.root
        self._staging = staging_dir

    # -- files -------------------------------------------------------------------------

    def prepare_file(self, key: str, before: os.stat_result) -> Optional[Prepared | Unchanged]:
        """Copy ``root/key`` (seen quiet with stats ``before``) into the file store.

        A file whose size and mtime match the ledger but whose inode or ctime do not (a
        copy tool kept the mtime) is read here once: the content decides (new version, or
        the ledger learns the new identity)."""
        path = self.root / key
        row = self.ledger.lookup(self.rule.id, key)
        if row is not None and row.matches(before.st_size, before.st_mtime_ns,
                                           before.st_ino, before.st_ctime_ns):
            return None  # captured meanwhile (a rescan raced an event): exactly once
        self.refuse_outside(key)
        staged = self.service.stage_blobs(front_end=capture_notes.WATCHED_FOLDER)
        try:
            blob = staged.put_file(path, follow_symlinks=False)
            try:
                after: Optional[os.stat_result] = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                after = None  # moved away after a complete, verified copy: keep the capture
            if after is not None and (file_signature(after) != file_signature(before)
                                      or after.st_ctime_ns != before.st_ctime_ns):
                # Changed between our quiet check and the copy (the ctime catches a rewrite
                # that restored size and mtime): the ledger would record stats that do not
                # belong to the bytes stored. Wait for quiet again.
                raise SourceChangedError(f"{fsnames.readable(str(path))} changed while it "
                                         "was captured")
            entry = LedgerEntry(self.rule.id, key, 0, 0, blob.sha256,
                                row.datapoint_id if row else "").with_stats(before)
            if row is not None and row.sha256 == blob.sha256:
                staged.settle(committed=True)  # the row that uses it exists
                return Unchanged(key, entry)
            replaces = row.datapoint_id if row else None
            datapoint = self.datapoint(key, path, before.st_mtime_ns, blob.sha256,
                                       blob.size_bytes, replaces=replaces)
        except BaseException:
            staged.settle(committed=False)
            raise
        return Prepared(key, datapoint, replace(entry, datapoint_id=datapoint.datapoint_id),
                        staged, replaces)

    def refuse_outside(self, key: str) -> None:
        """Refuse ``root/key`` when, links resolved, it is not inside the watched folder or
        is in the bench's own folders: a folder on the way may have been swapped for a link
        since the scan (the last component is opened without following links)."""
        path = self.root / key
        real_root = os.path.realpath(self.root)
        private = self.service.paths.private_dirs()
        reason = link_refusal(str(path), real_root, private)
        if reason is not None:
            raise SourceRefusedError(f"{fsnames.readable(key)} is {reason}")

    # -- datasets ----------------------------------------------------------------------

    def prepare_dataset(self, key: str, listing: DatasetListing) -> Optional[Prepared | Unchanged]:
        """Archive the dataset folder ``root/key`` (listed quiet as ``listing``)."""
        folder = self.root / key
        row = self.ledger.lookup(self.rule.id, key)
        if row is not None and row.same_stats(listing.total_size, listing.max_mtime_ns,
                                              listing.fingerprint):
            return None
        self.refuse_outside(key)
        staged = self.service.stage_blobs(front_end=capture_notes.WATCHED_FOLDER)
        try:
            sha256, size = self._archive(folder, listing, staged)
            entry = LedgerEntry(self.rule.id, key, listing.total_size, listing.max_mtime_ns,
                                sha256, row.datapoint_id if row else "", listing.fingerprint)
            if row is not None and row.sha256 == sha256:
                staged.settle(committed=True)  # the row that uses it exists
                return Unchanged(key, entry)
            replaces = row.datapoint_id if row else None
            datapoint = self.datapoint(
                key, folder, listing.max_mtime_ns, sha256, size, replaces=replaces,
                filename=f"{folder.name}.zip", content_type="application/zip",
                metadata={"ingest_kind": "dataset", "dataset_files": str(len(listing.files))})
        except BaseException:
            staged.settle(committed=False)
            raise
        return Prepared(key, datapoint, replace(entry, datapoint_id=datapoint.datapoint_id),
                        staged, replaces)

    def _archive(self, folder: Path, listing: DatasetListing,
                 staged: StagedBlobs) -> tuple[str, int]:
        """Zip the dataset (deterministically) into staging, then into the file store.

        Entries are sorted, stored uncompressed, with a fixed timestamp, so the same files
        give the same bytes and the same SHA-256: a folder that is only touched is not
        captured again. Each file is checked against the listing as it is read, and the
        listing is taken again at the end.
        """
        self._staging.mkdir(parents=True, exist_ok=True)
        archive = self._staging / f"{uuid.uuid4().hex}.zip.part"
        try:
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED, allowZip64=True) as bundle:
                for item in listing.files:
                    _add_to_archive(bundle, folder, item)
            after = list_dataset(self.root, self.rule, listing.rel_path,
                                 skip=self.service.paths.private_dirs())
            if after.signature != listing.signature:
                raise SourceChangedError(f"{folder} changed while it was archived")
            blob = staged.put_file(archive, note_source=folder)
            return blob.sha256, blob.size_bytes
        except RootMissingError as exc:
            raise SourceMissingError(f"{folder} vanished while it was archived") from exc
        finally:
            archive.unlink(missing_ok=True)

    # -- metadata ----------------------------------------------------------------------

    def datapoint(self, key: str, path: Path, mtime_ns: int, sha256: str, size: int, *,
                  replaces: Optional[str], filename: Optional[str] = None,
                  content_type: Optional[str] = None,
                  metadata: Optional[dict[str, str]] = None) -> FileDataPoint:
        """The datapoint for a stored blob, with the rule's conventions applied."""
        rule = self.rule
        # Every stored string is valid text: a name that is not UTF-8 is described by its
        # readable form, and its exact bytes are kept in custom metadata (fsnames).
        shown = fsnames.readable(key)
        described = describe(shown, path_template=rule.compiled_template,
                             label_template=rule.label_template, fixed_metadata=rule.metadata,
                             rule_name=rule.name, mtime_ns=mtime_ns)
        ownership = self.service.ownership(**described.ownership)  # names -> ids, remembered
        custom = {**described.custom_metadata, **(metadata or {}),
                  "ingest_rule": rule.id, "ingest_path": shown, "source_mtime": _iso(mtime_ns),
                  **fsnames.raw_metadata(str(path))}
        extra: dict[str, Any] = {"replaces": replaces} if replaces else {}
        name = fsnames.readable(filename or path.name)
        return FileDataPoint(
            label=described.label, path=fsnames.readable(str(path)), filename=name,
            size_bytes=size, sha256=sha256, content_type=content_type or guess_content_type(name),
            ownership_info=ownership, custom_metadata=custom, **extra)

    # -- storing -----------------------------------------------------------------------

    def store(self, prepared: Sequence[Prepared]) -> list[DataPoint]:
        """Intent, datapoints (one transaction), ledger rows; all or none of the batch."""
        entries = [item.entry for item in prepared]
        self.ledger.begin(entries)
        try:
            stored = self.service.submit_many([item.datapoint for item in prepared])
        except BaseException:
            # Blobs stay held: the caller may retry the items one by one, and settles each.
            self.ledger.abandon([entry.datapoint_id for entry in entries])
            raise
        for item in prepared:
            item.staged.settle(committed=True)
        self.ledger.commit(entries)
        return stored

    def refresh(self, unchanged: Unchanged) -> None:
        self.ledger.refresh(unchanged.entry)

    @staticmethod
    def abandon(prepared: Prepared) -> None:
        """The unit will not be stored now: end its hold and remove its blob if unused."""
        try:
            prepared.staged.settle(committed=False)
        except Exception:
            log.debug("could not settle the blob of %s", prepared.key, exc_info=True)


def _add_to_archive(bundle: zipfile.ZipFile, folder: Path, item: FileEntry) -> None:
    info = zipfile.ZipInfo(item.rel_path, date_time=_ARCHIVE_DATE)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_STORED
    source = folder / item.rel_path
    try:
        with open(source, "rb", opener=_open_no_link) as handle:
            found = os.fstat(handle.fileno())
            if (found.st_size, found.st_mtime_ns) != (item.size, item.mtime_ns):
                raise SourceChangedError(f"{source} changed while it was archived")
            copied = 0
            with bundle.open(info, "w", force_zip64=item.size >= 2**31) as out:
                while chunk := handle.read(_READ_CHUNK):
                    out.write(chunk)
                    copied += len(chunk)
    except FileNotFoundError as exc:
        raise SourceChangedError(f"{source} vanished while it was archived") from exc
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise SourceChangedError(f"{source} became a link while it was archived") from exc
    if copied != item.size:
        raise SourceChangedError(f"{source} changed while it was archived")


def _open_no_link(path: str, flags: int) -> int:
    """Open without following a link in the last component (a link swapped in after the
    listing is refused with ELOOP, reported as a change)."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))
