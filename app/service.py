"""The bench service: the one place that wires the local store, file store and names.

The Python API (``DataClient``), the CLI, the REST API and the GUI all sit on this class;
the folder watcher and the sync engine plug into it. It is Qt-free and thread-safe: the
store serialises writes on its single writer connection.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Optional

from app.core import capture_notes, custody, deletions, extractqueue
from app.core import query as querylang
from app.core.atomic import atomic_writer
from app.core import fsnames
from app.core.config import load_section
from app.core.errors import (
    CentralNotConfiguredError,
    FileNotReachableError,
    NotFoundError,
    SourceRefusedError,
    ValidationError,
)
from app.core.filestore import FileStore, ProgressCallback
from app.core.ids import OWNERSHIP_KINDS
from app.core.datatype import DataPointTypeEnum
from app.core.rows import RowSummary

# The models (pydantic) load where a datapoint is built or checked, not with the service:
# `benchdata list` reads row summaries without them (bench/bench_startup.py).
if TYPE_CHECKING:
    from app.core.models import DataPoint, FileDataPoint, OwnershipInfo
from app.core.names import NAME_KEYS, NameRegistry, check_name_keys, name_key, refuse_name_keys
from app.core.paths import BenchPaths, bench_paths
from app.core.store import LocalStore, Page, StoredDataPoint
from app.central_access import CentralAccess
from app.staging import StagedBlobs

log = logging.getLogger(__name__)


def query_time_budget(paths: BenchPaths) -> float:
    """``query.time_budget_seconds`` from config.json; the default if unset or invalid."""
    try:
        return querylang.time_budget_setting(load_section(paths, "query"))
    except ValidationError as exc:
        log.warning("%s; using %g seconds", exc, querylang.DEFAULT_TIME_BUDGET_SECONDS)
        return querylang.DEFAULT_TIME_BUDGET_SECONDS


def guess_content_type(filename: str) -> str:
    guessed, _encoding = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


class BenchService:
    """Capture, read, edit and query datapoints on one bench's local store."""

    def __init__(self, data_dir: Optional[os.PathLike[str] | str] = None) -> None:
        self.paths: BenchPaths = bench_paths(data_dir)
        self.paths.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = LocalStore(self.paths.database)
        self.files = FileStore(self.paths.files)
        self.names = NameRegistry(self.store)
        self.store.resolve_name = self.names.lookup
        self.store.query_seconds = query_time_budget(self.paths)
        custody.install(self.store)
        deletions.install(self.store)
        self.capture_notes = capture_notes.CaptureNotes(self.files.root)
        extractqueue.install(self.store)  # captured files wait here for app/extract
        # The central store, reached on first need: files (file_blob) and records (get).
        self._central = CentralAccess(self)

    def close(self) -> None:
        self._central.close()
        self.store.close()

    def __enter__(self) -> "BenchService":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- names -------------------------------------------------------------------------

    def ownership(self, **names_or_ids: Optional[str]) -> OwnershipInfo:
        """OwnershipInfo from names (``experiment="EXP42", user="alice"``) or ULIDs."""
        from app.core.models import OwnershipInfo

        ids = {
            f"{self._kind(kind)}_id": self.names.resolve(self._kind(kind), value)
            for kind, value in names_or_ids.items()
            if value
        }
        return OwnershipInfo(**ids)

    @staticmethod
    def _kind(kind: str) -> str:
        kind = kind[:-3] if kind.endswith("_id") else kind
        if kind not in OWNERSHIP_KINDS:
            raise ValidationError(
                f"unknown ownership kind {kind!r}; known: {', '.join(OWNERSHIP_KINDS)}"
            )
        return kind

    def _with_names(self, datapoint: DataPoint,
                    cache: Optional[dict[tuple[tuple[str, str], ...], dict[str, str]]] = None,
                    ) -> DataPoint:
        """Keep the human name beside each ownership id this bench knows a name for.

        ``cache`` shares the lookup between the datapoints of one batch, which usually
        carry the same ownership."""
        if datapoint.ownership_info is None:
            return datapoint
        ids = tuple(datapoint.ownership_info.ids().items())
        names = cache.get(ids) if cache is not None else None
        if names is None:
            names = {}
            for field, ident in ids:
                name = self.names.name_for(field[:-3], ident)
                if name is not None:
                    names[f"{field[:-3]}_name"] = name
            if cache is not None:
                cache[ids] = names
        missing = {k: v for k, v in names.items() if k not in datapoint.custom_metadata}
        if not missing:
            return datapoint
        return datapoint.model_copy(
            update={"custom_metadata": {**datapoint.custom_metadata, **missing}})

    def _check_names(self, datapoint: DataPoint) -> None:
        """A ``<kind>_name`` sent as metadata must name the id sent (see ``app.core.names``)."""
        metadata = datapoint.custom_metadata
        if metadata and not NAME_KEYS.keys().isdisjoint(metadata):
            check_name_keys(metadata,
                            datapoint.ownership_info.ids() if datapoint.ownership_info else {},
                            self.names.lookup)

    def with_names(self, datapoints: Iterable[DataPoint]) -> Iterator[DataPoint]:
        """Datapoints with the name beside each id this bench knows a name for (pins
        included), as every reader shows them (export, CLI)."""
        cache: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        for datapoint in datapoints:
            yield self._with_names(datapoint, cache)

    # -- capture -----------------------------------------------------------------------

    def submit(self, datapoint: DataPoint, *, progress: Optional[ProgressCallback] = None) -> DataPoint:
        """Capture one datapoint durably; a file is copied into the store first."""
        return self.submit_many([datapoint], progress=progress)[0]

    def submit_many(self, datapoints: Sequence[DataPoint], *,
                    progress: Optional[ProgressCallback] = None) -> list[DataPoint]:
        """Capture several datapoints; the rows are committed in one transaction.

        Files are copied (and hashed) before the transaction; if anything fails, blobs
        that no committed row uses are removed again, so nothing half-captured remains.
        """
        from app.core.models import DataPoint, FileDataPoint

        prepared: list[DataPoint] = []
        names_cache: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        with self.stage_blobs() as staged:
            for datapoint in datapoints:
                if not isinstance(datapoint, DataPoint):
                    raise ValidationError(
                        f"expected a datapoint, got {type(datapoint).__name__}"
                    )
                if isinstance(datapoint, FileDataPoint) and not self._blob_present(datapoint):
                    datapoint = self._capture_file(datapoint, staged, progress)
                self._check_names(datapoint)
                prepared.append(self._with_names(datapoint, names_cache))
            return self.store.insert(prepared)

    def stage_blobs(self, front_end: Optional[str] = None) -> "StagedBlobs":
        """The one way a capture brings bytes into the file store before its row exists.

        Blobs put through the returned :class:`StagedBlobs` are held from the instant
        they are in place until it is settled, so a concurrent failing capture of the
        same bytes cannot remove them. Used as ``with service.stage_blobs() as staged:``,
        leaving the block normally means the rows are committed (the holds end); leaving
        it with an exception also removes every blob no committed row uses. A capture
        that commits later, on another thread, calls ``staged.settle(committed)``.
        """
        return StagedBlobs(self, front_end)

    def settle_blobs(self, held: Sequence[str], committed: bool) -> None:
        """Release the holds a capture took; after a failure, remove the blobs it brought
        in that no committed row uses (nothing half-captured remains)."""
        for sha256 in held:
            self.files.release(sha256)
        if not committed:
            for sha256 in held:
                self.discard_blob_if_unused(sha256)

    def discard_blob_if_unused(self, sha256: str) -> bool:
        """Remove a blob no datapoint row uses and no capture in flight holds."""
        if self.store.blob_in_use(sha256):
            return False
        # Checked again under the blob's lock: a capture in another process may commit a
        # row using it in between.
        return self.files.remove(sha256,
                                 still_unused=lambda: not self.store.blob_in_use(sha256))

    def _blob_present(self, datapoint: FileDataPoint) -> bool:
        return bool(datapoint.sha256) and self.files.exists(str(datapoint.sha256))

    def _capture_file(self, datapoint: FileDataPoint, staged: "StagedBlobs",
                      progress: Optional[ProgressCallback]) -> FileDataPoint:
        source = Path(datapoint.path).expanduser()
        self.refuse_private(source)
        blob = staged.put_file(source, progress=progress, datapoint=datapoint)
        filename = datapoint.filename or source.name
        path = str(source.absolute())
        # Names that are not UTF-8 are stored readably, their bytes kept in metadata.
        return datapoint.model_copy(
            update={
                "path": fsnames.readable(path),
                "filename": fsnames.readable(filename),
                "size_bytes": blob.size_bytes,
                "sha256": blob.sha256,
                "content_type": datapoint.content_type or guess_content_type(filename),
                "custom_metadata": {**datapoint.custom_metadata, **fsnames.raw_metadata(path)},
            }
        )

    def refuse_private(self, source: Path) -> None:
        """Raise SourceRefusedError for a file in (or linked into) the bench's own folders:
        they hold the store and the central store's secrets, which must never be captured
        (and so synced)."""
        if self.paths.owns(source):
            raise SourceRefusedError(
                f"{fsnames.readable(str(source))} is in (or links into) this bench's own data "
                "or configuration folder, which is never captured; copy the file elsewhere "
                "if you really mean to capture it")

    def capture_value(self, value: Any, *, label: Optional[str] = None,
                      ownership: Optional[OwnershipInfo] = None,
                      metadata: Optional[Mapping[str, str]] = None,
                      **extra: Any) -> DataPoint:
        from app.core.models import OwnershipInfo, ValueDataPoint

        return self.submit(
            ValueDataPoint(label=label, value=value,
                           ownership_info=ownership or OwnershipInfo(),
                           custom_metadata=dict(metadata or {}), **extra)
        )

    def capture_file(self, path: os.PathLike[str] | str, *, label: Optional[str] = None,
                     ownership: Optional[OwnershipInfo] = None,
                     metadata: Optional[Mapping[str, str]] = None,
                     progress: Optional[ProgressCallback] = None, **extra: Any) -> DataPoint:
        from app.core.models import FileDataPoint, OwnershipInfo

        return self.submit(
            FileDataPoint(label=label, path=str(path),
                          ownership_info=ownership or OwnershipInfo(),
                          custom_metadata=dict(metadata or {}), **extra),
            progress=progress,
        )

    def capture_stream(self, stream: BinaryIO, *, filename: str,
                       datapoint: Optional[FileDataPoint] = None,
                       expected_size: Optional[int] = None,
                       progress: Optional[ProgressCallback] = None) -> DataPoint:
        """Capture bytes arriving from a stream (an upload) as a file datapoint."""
        from app.core.models import FileDataPoint

        with self.stage_blobs() as staged:
            blob = staged.put_stream(stream, expected_size=expected_size, progress=progress)
            base = datapoint or FileDataPoint(path=filename)
            captured = base.model_copy(update={
                "filename": filename,
                "size_bytes": blob.size_bytes,
                "sha256": blob.sha256,
                "content_type": base.content_type or guess_content_type(filename),
            })
            self._check_names(captured)
            return self.store.insert([self._with_names(captured)])[0]

    # -- interrupted captures (app/core/capture_notes.py) -------------------------------

    def interrupted_captures(self) -> list[capture_notes.CaptureNote]:
        """Captures a crash cut short, oldest first. A note whose row was committed just
        before the crash is not one: it is removed here."""
        found = []
        for note in self.capture_notes.interrupted():
            if note.datapoint_id and self._committed(note.datapoint_id):
                with self.capture_notes.claimed(note.note_id) as claimed:
                    if claimed is not None:
                        self.capture_notes.discard(note.note_id)
                continue
            found.append(note)
        return found

    def retry_interrupted(self, note_id: str) -> DataPoint:
        """Capture an interrupted capture again, as it was meant (same id, label,
        ownership and metadata), then forget it; exactly once even if run twice."""
        from app.core.models import DataPoint

        with self.capture_notes.claimed(note_id) as note:
            if note is None:
                raise NotFoundError(f"no interrupted capture {note_id!r} (see benchdata "
                                    "interrupted); it may have been captured or dismissed")
            if not note.can_retry:
                raise ValidationError(f"{fsnames.readable(note.source)} cannot be captured "
                                      f"again from here: {note.retry_hint()}")
            ident = str(note.datapoint_id)
            if self._committed(ident):
                captured = self.get(ident)
            else:
                captured = self.submit(DataPoint.discriminate(note.datapoint))
            self.capture_notes.discard(note_id)
            return captured

    def _committed(self, datapoint_id: str) -> bool:
        try:
            self.store.get_stored(datapoint_id, include_deleted=True)
        except NotFoundError:
            return False
        return True

    def dismiss_interrupted(self, note_id: str) -> None:
        """Forget an interrupted capture without capturing it again."""
        with self.capture_notes.claimed(note_id) as note:
            if note is None:
                raise NotFoundError(f"no interrupted capture {note_id!r} (see benchdata "
                                    "interrupted)")
            self.capture_notes.discard(note_id)

    # -- reading -----------------------------------------------------------------------

    def get(self, datapoint_id: str) -> DataPoint:
        """The datapoint; one this bench does not hold (outside its pull scope) is read
        from the central store, if one is configured, and kept as a pulled row."""
        try:
            return self.store.get(datapoint_id)
        except NotFoundError:
            if not self._central.pull(datapoint_id):
                raise
            return self.store.get(datapoint_id)

    def query_central(self, selector: Optional[Mapping[str, Any]] = None, *,
                      text: Optional[str] = None, limit: int = 100) -> list[DataPoint]:
        """Datapoints in the central store matching a selector and/or search words, newest
        first, whether or not this bench holds them (outside its pull scope, say); none is
        stored here (``get`` keeps one). Raises CentralNotConfiguredError without a central
        MongoDB, CentralUnavailableError when it cannot answer, QueryError for a selector
        it cannot be asked (``sync.centralquery``)."""
        records = self._central.records()
        if records is None:
            raise CentralNotConfiguredError(
                "no central store is configured on this bench, so there is nothing to search "
                "centrally (benchdata sync configure sets one up)")
        return list(records.query(self, selector, text, limit))

    def get_stored(self, datapoint_id: str) -> StoredDataPoint:
        return self.store.get_stored(datapoint_id)

    # -- a datapoint's bytes: the one path ----------------------------------------------

    def held_blob(self, datapoint: DataPoint) -> Optional[str]:
        """The SHA-256 of the local blob holding ``datapoint``'s bytes, if this bench
        captured, fetched or verified them for it (its custody record) and still has them.

        A blob that merely has the digest a record names is not enough: anyone can post a
        record naming any digest (app/core/custody.py)."""
        record = custody.custody_of(self.store, datapoint.datapoint_id)
        if record is None:
            return None
        claimed = getattr(datapoint, "sha256", None)
        if claimed and claimed != record.sha256:
            return None
        return record.sha256 if self.files.exists(record.sha256) else None

    def file_blob(self, datapoint_id: str) -> tuple[DataPoint, str]:
        """The datapoint and the SHA-256 of the local blob with its bytes: the blob held
        here, else the central copy, downloaded, verified and cached first.

        Raises FileNotReachableError (a NotFoundError) when no copy can be reached from
        here, FileUnavailableError when the central store cannot be reached now, and
        FileDamagedError when the central copy does not match its record."""
        stored = self.get_stored(datapoint_id)
        datapoint = stored.datapoint
        if datapoint.data_type == DataPointTypeEnum.JSON:
            raise ValidationError(f"datapoint {datapoint_id} holds a JSON value, not a file")
        held = self.held_blob(datapoint)
        if held is not None:
            return datapoint, held
        if datapoint.data_type == DataPointTypeEnum.FILE and stored.origin != "local":
            raise FileNotReachableError(
                f"the file of datapoint {datapoint.datapoint_id} is not reachable from this "
                f"bench: it exists only on the disk of the server that stored it "
                f"({datapoint.path}), and the central bucket has no copy")
        with self._central.fetch_lock(datapoint.datapoint_id):
            held = self.held_blob(datapoint)  # fetched by another request meanwhile
            if held is not None:
                return datapoint, held
            fetcher = self._central.fetcher()
            if fetcher is None:
                raise FileNotReachableError(
                    f"the file of datapoint {datapoint.datapoint_id} is not on this bench and "
                    "no central object storage is configured here to fetch it from "
                    "(benchdata sync configure)")
            return datapoint, str(fetcher.fetch(self, datapoint))

    def custody(self, datapoint_id: str) -> Optional[dict[str, Any]]:
        """The custody receipt of a file datapoint (``app.core.custody.receipt``) as a
        dict, None for a JSON value; what ``get --json``, REST and the window show."""
        found = custody.receipt(self.store, self.files, datapoint_id)
        return None if found is None else found.as_dict()

    def open_file(self, datapoint_id: str) -> BinaryIO:
        """A binary stream of a file datapoint's bytes (fetched first if only central)."""
        _datapoint, sha256 = self.file_blob(datapoint_id)
        return self.files.open(sha256)

    def value(self, datapoint_id: str) -> Any:
        """The JSON value, or the file's bytes (as MADSci's client returns them)."""
        from app.core.models import ValueDataPoint

        datapoint = self.get(datapoint_id)
        if isinstance(datapoint, ValueDataPoint):
            return datapoint.value
        with self.open_file(datapoint_id) as stream:
            return stream.read()

    def save_value(self, datapoint_id: str, destination: os.PathLike[str] | str) -> Path:
        """Write the value (JSON text) or file to ``destination`` atomically, with the
        permissions any file this user creates gets (colleagues may read a saved copy)."""
        from app.core.models import ValueDataPoint

        target = Path(destination).expanduser()
        datapoint = self.get(datapoint_id)
        with atomic_writer(target, shared=True) as out:
            if isinstance(datapoint, ValueDataPoint):
                out.write(json.dumps(datapoint.value, ensure_ascii=False, indent=2).encode())
            else:
                with self.open_file(datapoint_id) as source:
                    shutil.copyfileobj(source, out, 4 * 1024 * 1024)
        return target

    def latest(self, number: int = 10) -> list[DataPoint]:
        return self.store.latest(number)

    def latest_summaries(self, number: int = 10) -> list[RowSummary]:
        """What :meth:`latest` finds, as listing summaries (no model is built)."""
        return self.store.latest_summaries(number)

    def query(self, selector: Optional[Mapping[str, Any]] = None, *, sort: Any = None,
              limit: Optional[int] = None, cursor: Optional[str] = None,
              text: Optional[str] = None) -> Page:
        return self.store.query(selector, sort=sort, limit=limit, cursor=cursor, text=text)

    def iter_query(self, selector: Optional[Mapping[str, Any]] = None, *,
                   sort: Any = None, text: Optional[str] = None) -> Iterator[DataPoint]:
        return self.store.iter_query(selector, sort=sort, text=text)

    def count(self, selector: Optional[Mapping[str, Any]] = None, *,
              text: Optional[str] = None) -> int:
        return self.store.count(selector, text=text)

    def search(self, text: str, selector: Optional[Mapping[str, Any]] = None, *,
               sort: Any = None, limit: Optional[int] = 50,
               cursor: Optional[str] = None) -> Page:
        """Full-text search (``app.core.search``), optionally narrowed by a selector."""
        return self.store.query(selector, sort=sort, limit=limit, cursor=cursor, text=text)

    # -- editing -----------------------------------------------------------------------

    def update(self, datapoint_id: str, *, label: Optional[str] = None,
               set_metadata: Optional[Mapping[str, str]] = None,
               remove_metadata: Iterable[str] = (),
               ownership: Optional[Mapping[str, Optional[str]]] = None) -> DataPoint:
        """Edit a datapoint as a new revision that sync carries.

        ``ownership`` moves it: ``{"experiment": "EXP43"}`` (a kind or ``<kind>_id`` to a
        name or ULID; ``""``/``None`` clears it) changes the id and the name kept beside
        it together. The ``<kind>_name`` metadata keys cannot be edited directly.
        """
        removed = list(remove_metadata)
        refuse_name_keys([*(set_metadata or {}), *removed])
        ids, names = self._ownership_edit(ownership or {})
        return self.store.update(
            datapoint_id, label=label,
            set_metadata={**(set_metadata or {}),
                          **{key: name for key, name in names.items() if name is not None}},
            remove_metadata=[*removed, *(key for key, name in names.items() if name is None)],
            ownership=ids)

    def update_metadata_many(
            self, edits: Mapping[str, tuple[Mapping[str, str], Iterable[str]]]) -> list[str]:
        """Metadata edits of several datapoints (id -> (set, remove)) in one transaction,
        each a new revision sync carries; ids no longer present are skipped. The ids edited."""
        refuse_name_keys([key for set_metadata, remove in edits.values()
                          for key in (*set_metadata, *remove)])
        return self.store.update_metadata_many(edits)

    def _ownership_edit(self, ownership: Mapping[str, Optional[str]],
                        ) -> tuple[dict[str, Optional[str]], dict[str, Optional[str]]]:
        """New ``<kind>_id`` values and the ``<kind>_name`` keys to set (or drop: None)."""
        ids: dict[str, Optional[str]] = {}
        names: dict[str, Optional[str]] = {}
        for given, value in ownership.items():
            kind = self._kind(str(given))
            text = value.strip() if isinstance(value, str) else value
            if text is not None and not isinstance(text, str):
                raise ValidationError(f"the {kind} must be a name or a ULID, got {value!r}")
            if not text:
                ids[f"{kind}_id"], names[name_key(kind)] = None, None
                continue
            ident = self.names.resolve(kind, text)
            ids[f"{kind}_id"] = ident
            names[name_key(kind)] = self.names.name_for(kind, ident)
        return ids, names

    def delete(self, datapoint_id: str, *, by: Optional[str] = None) -> None:
        """A tombstone: hidden here at once, removed centrally by sync; restorable for
        ``deleted.retention_days`` (app/core/deletions.py), and its file stays that long
        (and until sync has verified a central copy)."""
        self.store.delete(datapoint_id)
        # Who, for "Recently deleted" (a second, small commit: the tombstone is what counts).
        deletions.note_deleted_by(self.store, {datapoint_id.upper(): by or
                                               deletions.who_deletes(self.paths)})

    def recently_deleted(self, limit: int = 1000) -> list[deletions.Deleted]:
        """Deleted datapoints that can still be restored, newest deletion first."""
        return deletions.recently_deleted(self.store, deletions.restorable_since(self.paths),
                                          limit=limit)

    def restore(self, datapoint_id: str) -> DataPoint:
        """Undo a deletion as a new revision, which sync pushes as an undelete (also after
        the deletion has reached the central store and other benches)."""
        deletions.restore(self.store, datapoint_id, deletions.restorable_since(self.paths))
        return self.get(datapoint_id.upper())

