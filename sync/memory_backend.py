"""An in-memory central store: both backends of ``sync.backends`` in one process.

For fast unit tests of push, pull and conflict logic (no servers), and faithful where
that logic looks: objects keep their bytes, size, content type, user metadata and an
S3-style ETag (MD5, or MD5-of-MD5s ``-N`` for a multipart upload); multipart uploads keep
their parts until completed or aborted. Records follow MongoDB for what sync asks of it
(``sync.memory_query``): filters, inclusion projections, sorts and limits, ``$set``,
``$max`` and ``$currentDate`` (the store's own clock, never a bench's), conditional
upserts that answer a duplicate ``_id`` with MongoDB's error 11000.

Several benches share one :class:`MemoryCentral`; each engine builds its backends from it
(``MemoryCentral.backends()``), as real ones are built from settings. ``fail_next`` makes
the next call of an operation raise, for tests of the engine's error handling.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from sync.backends import Backends, BulkWriteError, ClassifiedErrors, DeleteOne, Document, Filter, \
    ObjectInfo, PartInfo, Projection, Sort, UpdateOne, UploadInfo, WriteOp, sorted_already
from sync.faults import DUPLICATE_KEY, CentralConfigError, RejectedError, RetryableError, SyncError
from sync.memory_query import apply_update, matches, project, sort_key, upsert_seed


class DuplicateKeyError(Exception):
    """A write would give two documents the same ``_id``."""

    def __init__(self, collection: str, ident: Any) -> None:
        super().__init__(f"E11000 duplicate key error collection: {collection} index: _id_ "
                         f"dup key: {{ _id: {ident!r} }}")
        self.details = {"code": DUPLICATE_KEY, "errmsg": str(self), "keyPattern": {"_id": 1},
                        "keyValue": {"_id": ident}}


class MemoryErrors(ClassifiedErrors):
    """Errors of the in-memory backends: ours as they are, a duplicate key refuses the
    item, anything else (``fail_next`` with a plain exception) is worth retrying."""

    def classify(self, exc: BaseException, *, what: str) -> SyncError:
        if isinstance(exc, SyncError):
            return sorted_already(exc)
        if isinstance(exc, DuplicateKeyError):
            return RejectedError(f"{what}: {exc}")
        return RetryableError(f"{what}: {type(exc).__name__}: {exc}")


@dataclass
class _Object:
    data: bytes
    content_type: str
    metadata: dict[str, str]
    etag: str


@dataclass
class _Upload:
    name: str
    content_type: str
    metadata: dict[str, str]
    initiated: datetime
    parts: dict[int, tuple[str, bytes]] = field(default_factory=dict)


class MemoryCentral:
    """The shared state: buckets of objects, collections of documents, a clock."""

    def __init__(self, buckets: Sequence[str] = ()) -> None:
        self.lock = threading.RLock()
        self.buckets: dict[str, dict[str, _Object]] = {name: {} for name in buckets}
        self.uploads: dict[str, dict[str, _Upload]] = {}
        self.collections: dict[str, dict[Any, Document]] = {}
        self._failures: dict[str, list[BaseException]] = {}
        self._late_commits: list[float] = []
        self._upload_ids = itertools.count(1)
        self._last_time = datetime(2000, 1, 1, tzinfo=timezone.utc)
        self.calls: dict[str, int] = {}

    def now(self) -> datetime:
        """The store's write time: UTC milliseconds, as MongoDB keeps them, never backwards."""
        with self.lock:
            moment = datetime.now(timezone.utc)
            moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
            self._last_time = max(moment, self._last_time)
            return self._last_time

    def fail_next(self, operation: str, error: BaseException, times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` (a backend method name) raise ``error``."""
        with self.lock:
            self._failures.setdefault(operation, []).extend([error] * times)

    def commit_late(self, seconds: float, times: int = 1) -> None:
        """The next ``times`` bulk writes or ``update_many`` calls are stamped as they
        start and become readable ``seconds`` later, while other writes and reads go on: a
        loaded server's write in flight, whose stamps a reader can pass before it commits."""
        with self.lock:
            self._late_commits.extend([seconds] * times)

    def late_commit(self) -> float:
        """How long the write starting now stays in flight (0: it commits at once)."""
        with self.lock:
            return self._late_commits.pop(0) if self._late_commits else 0.0

    def enter(self, operation: str) -> None:
        """Count the call; raise an injected failure if one is due."""
        with self.lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            pending = self._failures.get(operation)
            error = pending.pop(0) if pending else None
        if error is not None:
            raise error

    def new_upload_id(self) -> str:
        return f"upload-{next(self._upload_ids)}"

    def backends(self) -> Backends:
        """Factories an engine builds its backends with (the bucket named in its settings)."""
        return Backends(records=lambda _settings: MemoryRecords(self),
                        objects=lambda settings, _clock: MemoryObjects(self, str(settings.bucket)))


# -- objects ----------------------------------------------------------------------------


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class MemoryStream:
    """A download of an object held in memory."""

    def __init__(self, item: _Object) -> None:
        self.headers = {"content-length": str(len(item.data)), "etag": f'"{item.etag}"',
                        "content-type": item.content_type}
        self._body = io.BytesIO(item.data)

    def read(self, amount: int = -1) -> bytes:
        return self._body.read(amount)

    def close(self) -> None:
        self._body.close()

    def release_conn(self) -> None:
        pass


class MemoryObjects(MemoryErrors):
    """One bucket of a :class:`MemoryCentral` (``ObjectBackend``)."""

    def __init__(self, central: MemoryCentral, bucket: str) -> None:
        self.central = central
        self.bucket = bucket

    def close(self) -> None:
        pass  # the central keeps its objects, as a server would

    def _objects(self, bucket: Optional[str] = None) -> dict[str, _Object]:
        found = self.central.buckets.get(bucket or self.bucket)
        if found is None:
            raise CentralConfigError(f"bucket {bucket or self.bucket} does not exist (NoSuchBucket)")
        return found

    def bucket_exists(self) -> bool:
        self.central.enter("bucket_exists")
        return self.bucket in self.central.buckets

    def make_bucket(self) -> None:
        self.central.enter("make_bucket")
        with self.central.lock:
            self.central.buckets.setdefault(self.bucket, {})

    def stat(self, name: str, bucket: Optional[str] = None) -> Optional[ObjectInfo]:
        self.central.enter("stat")
        with self.central.lock:
            item = self._objects(bucket).get(name)
        if item is None:
            return None
        return ObjectInfo(name=name, size=len(item.data), etag=item.etag,
                          content_type=item.content_type, metadata=dict(item.metadata))

    def put(self, name: str, data: bytes, *, content_type: str,
            metadata: Mapping[str, str]) -> None:
        self.central.enter("put")
        with self.central.lock:
            self._objects()[name] = _Object(bytes(data), content_type,
                                            {k.lower(): v for k, v in metadata.items()},
                                            _md5(data))

    def copy(self, source: str, target: str, *, content_type: str,
             metadata: Mapping[str, str]) -> None:
        self.central.enter("copy")
        with self.central.lock:
            objects = self._objects()
            if source not in objects:
                raise RejectedError(f"copying {source}: NoSuchKey")
            data = objects[source].data
            objects[target] = _Object(data, content_type,
                                      {k.lower(): v for k, v in metadata.items()}, _md5(data))

    def remove(self, name: str) -> None:
        self.central.enter("remove")
        with self.central.lock:
            self._objects().pop(name, None)

    def open_stream(self, bucket: str, name: str) -> MemoryStream:
        self.central.enter("open_stream")
        with self.central.lock:
            item = self._objects(bucket).get(name)
        if item is None:
            raise RejectedError(f"downloading {name}: NoSuchKey")
        return MemoryStream(item)

    # -- multipart -------------------------------------------------------------------------

    def _uploads(self) -> dict[str, _Upload]:
        return self.central.uploads.setdefault(self.bucket, {})

    def create_multipart(self, name: str, *, content_type: str,
                         metadata: Mapping[str, str]) -> str:
        self.central.enter("create_multipart")
        with self.central.lock:
            self._objects()  # the bucket must exist
            upload_id = self.central.new_upload_id()
            self._uploads()[upload_id] = _Upload(
                name, content_type, {k.lower(): v for k, v in metadata.items()},
                self.central.now())
            return upload_id

    def upload_part(self, name: str, upload_id: str, number: int, data: bytes) -> str:
        self.central.enter("upload_part")
        with self.central.lock:
            upload = self._uploads().get(upload_id)
            if upload is None or upload.name != name:
                raise RejectedError(f"uploading part {number} of {name}: NoSuchUpload")
            etag = _md5(data)
            upload.parts[number] = (etag, bytes(data))
            return etag

    def list_parts(self, name: str, upload_id: str) -> Optional[list[PartInfo]]:
        self.central.enter("list_parts")
        with self.central.lock:
            upload = self._uploads().get(upload_id)
            if upload is None or upload.name != name:
                return None
            return [PartInfo(n, etag, len(data)) for n, (etag, data) in
                    sorted(upload.parts.items())]

    def complete_multipart(self, name: str, upload_id: str,
                           parts: Sequence[tuple[int, str]]) -> None:
        self.central.enter("complete_multipart")
        with self.central.lock:
            upload = self._uploads().get(upload_id)
            if upload is None or upload.name != name:
                raise RejectedError(f"completing {name}: NoSuchUpload")
            chunks = []
            for number, etag in parts:
                held = upload.parts.get(number)
                if held is None or held[0] != etag.strip('"'):
                    raise RejectedError(f"completing {name}: InvalidPart {number}")
                chunks.append(held[1])
            digests = b"".join(bytes.fromhex(upload.parts[n][0]) for n, _e in parts)
            self._objects()[name] = _Object(b"".join(chunks), upload.content_type,
                                            upload.metadata, f"{_md5(digests)}-{len(parts)}")
            del self._uploads()[upload_id]

    def abort_multipart(self, name: str, upload_id: str) -> None:
        self.central.enter("abort_multipart")
        with self.central.lock:
            upload = self._uploads().get(upload_id)
            if upload is not None and upload.name == name:
                del self._uploads()[upload_id]

    def list_multipart_uploads(self, limit: int = 1000) -> list[UploadInfo]:
        self.central.enter("list_multipart_uploads")
        with self.central.lock:
            return [UploadInfo(u.name, upload_id, u.initiated)
                    for upload_id, u in list(self._uploads().items())[:limit]]

    def age_uploads(self, by: timedelta) -> None:
        """Make every unfinished upload older (tests of abandoned uploads)."""
        with self.central.lock:
            for upload in self._uploads().values():
                upload.initiated -= by


# -- records ----------------------------------------------------------------------------


class MemoryCollection(MemoryErrors):
    """One collection of a :class:`MemoryCentral` (``RecordCollection``)."""

    def __init__(self, central: MemoryCentral, name: str) -> None:
        self.central = central
        self.name = name
        self.indexes: dict[str, list[tuple[str, int]]] = {}

    @property
    def _docs(self) -> dict[Any, Document]:
        return self.central.collections.setdefault(self.name, {})

    def find(self, filter: Filter, projection: Projection = None, *, sort: Sort = None,
             limit: int = 0, batch_size: int = 0) -> list[Document]:
        self.central.enter("find")
        with self.central.lock:
            found = [d for d in self._docs.values() if matches(d, filter)]
            if sort:
                found.sort(key=lambda d: sort_key(d, sort))
            if limit:
                found = found[:limit]
            return [project(d, projection) for d in found]

    def find_one(self, filter: Filter, projection: Projection = None) -> Optional[Document]:
        found = self.find(filter, projection, limit=1)
        return found[0] if found else None

    def find_one_and_update(self, filter: Filter, update: Mapping[str, Any], *,
                            upsert: bool = False, projection: Projection = None
                            ) -> Optional[Document]:
        self.central.enter("find_one_and_update")
        with self.central.lock:
            document = self._update(filter, update, upsert=upsert, many=False)
            return project(document, projection) if document is not None else None

    def update_one(self, filter: Filter, update: Mapping[str, Any], *,
                   upsert: bool = False) -> None:
        self.central.enter("update_one")
        with self.central.lock:
            self._update(filter, update, upsert=upsert, many=False)

    def update_many(self, filter: Filter, update: Mapping[str, Any]) -> None:
        self.central.enter("update_many")
        stamp = self._in_flight()
        with self.central.lock:
            self._update(filter, update, upsert=False, many=True, now=stamp)

    def delete_one(self, filter: Filter) -> None:
        self.central.enter("delete_one")
        with self.central.lock:
            self._delete(filter, many=False)

    def delete_many(self, filter: Filter) -> None:
        self.central.enter("delete_many")
        with self.central.lock:
            self._delete(filter, many=True)

    def bulk_write(self, operations: Sequence[WriteOp]) -> None:
        """Unordered: every operation is tried; the failures are raised together."""
        self.central.enter("bulk_write")
        errors: list[dict[str, Any]] = []
        stamp = self._in_flight()
        with self.central.lock:
            for index, op in enumerate(operations):
                try:
                    if isinstance(op, UpdateOne):
                        self._update(op.filter, op.update, upsert=op.upsert, many=False,
                                     now=stamp)
                    elif isinstance(op, DeleteOne):
                        self._delete(op.filter, many=False)
                except DuplicateKeyError as exc:
                    errors.append({"index": index, **exc.details})
        if errors:
            raise BulkWriteError(errors)

    def _in_flight(self) -> Optional[datetime]:
        """For a write due to commit late (``commit_late``): its stamp, taken now, once it
        has been in flight (stamped, not yet readable; others go on meanwhile)."""
        seconds = self.central.late_commit()
        if not seconds:
            return None
        stamp = self.central.now()
        time.sleep(seconds)
        return stamp

    def create_index(self, keys: Sequence[tuple[str, int]], *, name: str) -> None:
        self.central.enter("create_index")
        self.indexes[name] = list(keys)

    def insert(self, document: Document) -> None:
        """Put a document as another writer would (MADSci's own Data Manager, say)."""
        with self.central.lock:
            self._docs[document["_id"]] = copy.deepcopy(document)

    def _update(self, filter: Filter, update: Mapping[str, Any], *, upsert: bool,
                many: bool, now: Optional[datetime] = None) -> Optional[Document]:
        now = now or self.central.now()
        last: Optional[Document] = None
        for document in [d for d in self._docs.values() if matches(d, filter)]:
            apply_update(document, update, now)
            last = document
            if not many:
                return copy.deepcopy(document)
        if last is not None or not upsert:
            return copy.deepcopy(last) if last is not None else None
        document = upsert_seed(filter)
        apply_update(document, update, now, inserting=True)
        if document["_id"] in self._docs:
            raise DuplicateKeyError(self.name, document["_id"])
        self._docs[document["_id"]] = document
        return copy.deepcopy(document)

    def _delete(self, filter: Filter, *, many: bool) -> None:
        for ident in [i for i, d in self._docs.items() if matches(d, filter)]:
            del self._docs[ident]
            if not many:
                return


class MemoryRecords(MemoryErrors):
    """The record store of a :class:`MemoryCentral` (``RecordBackend``)."""

    def __init__(self, central: MemoryCentral) -> None:
        self.central = central
        self.datapoints = MemoryCollection(central, "datapoints")
        self.tombstones = MemoryCollection(central, "tombstones")
        self.benches = MemoryCollection(central, "benches")

    def ping(self) -> None:
        self.central.enter("ping")

    def ensure_indexes(self) -> None:
        self.central.enter("ensure_indexes")

    def ensure_scope_indexes(self, fields: list[str]) -> None:
        self.central.enter("ensure_scope_indexes")

    def server_time(self) -> Optional[datetime]:
        return self.central.now()

    def close(self) -> None:
        pass  # the central keeps its documents, as a server would
