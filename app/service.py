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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Optional

from app.core.atomic import atomic_writer
from app.core.errors import NotFoundError, ValidationError
from app.core.filestore import BlobInfo, FileStore, ProgressCallback
from app.core.ids import OWNERSHIP_KINDS
from app.core.models import (
    DataPoint,
    DataPointTypeEnum,
    FileDataPoint,
    ObjectStorageDataPoint,
    OwnershipInfo,
    ValueDataPoint,
)
from app.core.names import NAME_KEYS, NameRegistry, check_name_keys, name_key, refuse_name_keys
from app.core.paths import BenchPaths, bench_paths
from app.core.store import LocalStore, Page, StoredDataPoint

log = logging.getLogger(__name__)


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
        #: Downloads the file of a datapoint whose bytes are only central (stored by
        #: another bench, or freed locally); returns its SHA-256. The sync engine installs
        #: it while it runs; without it such files are reported as not on this bench.
        self.remote_files: Optional[Callable[[str], str]] = None

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "BenchService":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- names -------------------------------------------------------------------------

    def ownership(self, **names_or_ids: Optional[str]) -> OwnershipInfo:
        """OwnershipInfo from names (``experiment="EXP42", user="alice"``) or ULIDs."""
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
        prepared: list[DataPoint] = []
        held: list[str] = []
        names_cache: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        committed = False
        try:
            for datapoint in datapoints:
                if not isinstance(datapoint, DataPoint):
                    raise ValidationError(
                        f"expected a datapoint, got {type(datapoint).__name__}"
                    )
                if isinstance(datapoint, FileDataPoint) and not self._blob_present(datapoint):
                    datapoint, blob = self._capture_file(datapoint, progress)
                    held.append(blob.sha256)
                self._check_names(datapoint)
                prepared.append(self._with_names(datapoint, names_cache))
            stored = self.store.insert(prepared)
            committed = True
            return stored
        finally:
            self.settle_blobs(held, committed)

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

    def _capture_file(self, datapoint: FileDataPoint,
                      progress: Optional[ProgressCallback]) -> tuple[FileDataPoint, BlobInfo]:
        source = Path(datapoint.path).expanduser()
        blob = self.files.put_file(source, progress=progress, hold=True)
        filename = datapoint.filename or source.name
        captured = datapoint.model_copy(
            update={
                "path": str(source.absolute()),
                "filename": filename,
                "size_bytes": blob.size_bytes,
                "sha256": blob.sha256,
                "content_type": datapoint.content_type or guess_content_type(filename),
            }
        )
        return captured, blob

    def capture_value(self, value: Any, *, label: Optional[str] = None,
                      ownership: Optional[OwnershipInfo] = None,
                      metadata: Optional[Mapping[str, str]] = None,
                      **extra: Any) -> DataPoint:
        return self.submit(
            ValueDataPoint(label=label, value=value,
                           ownership_info=ownership or OwnershipInfo(),
                           custom_metadata=dict(metadata or {}), **extra)
        )

    def capture_file(self, path: os.PathLike[str] | str, *, label: Optional[str] = None,
                     ownership: Optional[OwnershipInfo] = None,
                     metadata: Optional[Mapping[str, str]] = None,
                     progress: Optional[ProgressCallback] = None, **extra: Any) -> DataPoint:
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
        blob = self.files.put_stream(stream, expected_size=expected_size, progress=progress,
                                     hold=True)
        base = datapoint or FileDataPoint(path=filename)
        captured = base.model_copy(update={
            "filename": filename,
            "size_bytes": blob.size_bytes,
            "sha256": blob.sha256,
            "content_type": base.content_type or guess_content_type(filename),
        })
        committed = False
        try:
            self._check_names(captured)
            stored = self.store.insert([self._with_names(captured)])[0]
            committed = True
            return stored
        finally:
            self.settle_blobs([blob.sha256], committed)

    # -- reading -----------------------------------------------------------------------

    def get(self, datapoint_id: str) -> DataPoint:
        return self.store.get(datapoint_id)

    def get_stored(self, datapoint_id: str) -> StoredDataPoint:
        return self.store.get_stored(datapoint_id)

    def open_file(self, datapoint_id: str) -> BinaryIO:
        """A binary stream of a file datapoint's captured bytes."""
        datapoint = self.get(datapoint_id)
        sha256 = getattr(datapoint, "sha256", None)
        if datapoint.data_type == DataPointTypeEnum.JSON:
            raise ValidationError(f"datapoint {datapoint_id} holds a JSON value, not a file")
        if (not sha256 or not self.files.exists(sha256)) and self.remote_files is not None \
                and datapoint.data_type == DataPointTypeEnum.OBJECT_STORAGE:
            sha256 = self.remote_files(datapoint.datapoint_id)
        if not sha256 or not self.files.exists(sha256):
            raise NotFoundError(
                f"the file of datapoint {datapoint_id} is not in this bench's file store"
                + (" (it is in central object storage; configure and start sync to download it)"
                   if isinstance(datapoint, ObjectStorageDataPoint) else "")
            )
        return self.files.open(sha256)

    def value(self, datapoint_id: str) -> Any:
        """The JSON value, or the file's bytes (as MADSci's client returns them)."""
        datapoint = self.get(datapoint_id)
        if isinstance(datapoint, ValueDataPoint):
            return datapoint.value
        with self.open_file(datapoint_id) as stream:
            return stream.read()

    def save_value(self, datapoint_id: str, destination: os.PathLike[str] | str) -> Path:
        """Write the value (JSON text) or file to ``destination`` atomically."""
        target = Path(destination).expanduser()
        datapoint = self.get(datapoint_id)
        with atomic_writer(target) as out:
            if isinstance(datapoint, ValueDataPoint):
                out.write(json.dumps(datapoint.value, ensure_ascii=False, indent=2).encode())
            else:
                with self.open_file(datapoint_id) as source:
                    shutil.copyfileobj(source, out, 4 * 1024 * 1024)
        return target

    def latest(self, number: int = 10) -> list[DataPoint]:
        return self.store.latest(number)

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

    def delete(self, datapoint_id: str) -> None:
        """A tombstone: hidden here at once, removed centrally by sync; the file stays
        in the local file store until sync has verified the deletion centrally."""
        self.store.delete(datapoint_id)
