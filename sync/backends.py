"""The two things sync talks to, as small protocols: object storage and a record store.

Like restic's backends and MLflow's artifact repositories, a backend only moves bytes or
documents; what sync *means* by them (verified uploads, resumable multipart, revisions,
read-back, tombstones) lives above, in ``sync.objects``, ``sync.push`` and ``sync.pull``,
and is the same for every backend. Two implementations:

* the real ones: S3 through the minio SDK (``sync.s3.S3Backend``) and MongoDB through
  pymongo (``sync.central.CentralDatabase``);
* an in-memory one (``sync.memory_backend``) for fast unit tests of push, pull and
  conflict logic.

``tests/sync/test_backend_contract.py`` holds every backend to the same behaviour.

Errors: a backend raises what its SDK raises (or one of ``sync.faults``' kinds itself);
``classify(exc, what=...)`` sorts any of them into retryable, rejected (permanent) or a
configuration error, and ``is_permanent``/``is_config_error`` ask that one classifier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional, Protocol, Union

from sync.clock import ServerClock
from sync.faults import CentralConfigError, RejectedError, SyncError
from sync.settings import CentralSettings

Document = dict[str, Any]
Filter = Mapping[str, Any]
#: A projection: field -> 1 (only these fields, and ``_id``).
Projection = Optional[Mapping[str, int]]
#: A sort: (field, 1 or -1) pairs, first key first.
Sort = Optional[Sequence[tuple[str, int]]]


# -- errors -----------------------------------------------------------------------------


def sorted_already(error: SyncError) -> SyncError:
    """What ``classify`` answers for an error a backend sorted itself: a fresh one of the
    same kind, so ``raise classify(exc) from exc`` never makes an error its own cause
    (code that walks ``__cause__``, such as ``doctor``'s, would loop forever)."""
    return type(error)(*error.args)


class ClassifiedErrors:
    """``is_permanent`` and ``is_config_error`` from a backend's one ``classify``."""

    def classify(self, exc: BaseException, *, what: str) -> SyncError:  # pragma: no cover
        raise NotImplementedError

    def is_permanent(self, exc: BaseException) -> bool:
        """Retrying the same request unchanged will not help (the item is refused)."""
        return isinstance(self.classify(exc, what="request"), RejectedError)

    def is_config_error(self, exc: BaseException) -> bool:
        """Nothing will succeed until a person changes the settings."""
        return isinstance(self.classify(exc, what="request"), CentralConfigError)


# -- object storage ---------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD of an object tells."""

    name: str
    size: int
    #: Without quotes.
    etag: str
    content_type: str
    #: User metadata, keys lower case without ``x-amz-meta-``.
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PartInfo:
    number: int
    etag: str
    size: int


@dataclass(frozen=True)
class UploadInfo:
    """An unfinished multipart upload."""

    object_name: str
    upload_id: str
    initiated: Optional[datetime]


class ObjectStream(Protocol):
    """A download: ``headers`` (``content-length``, ``etag``) first, then the body."""

    headers: Mapping[str, str]

    def read(self, amount: int) -> bytes: ...

    def close(self) -> None: ...

    def release_conn(self) -> None: ...


class ObjectBackend(Protocol):
    """One bucket (``bucket``), plus reading objects of other buckets by name."""

    bucket: str

    def bucket_exists(self) -> bool: ...

    def make_bucket(self) -> None:
        """Create the bucket; one created meanwhile by someone else of ours is fine."""
        ...

    def stat(self, name: str, bucket: Optional[str] = None) -> Optional[ObjectInfo]:
        """None when there is no such object."""
        ...

    def put(self, name: str, data: bytes, *, content_type: str,
            metadata: Mapping[str, str]) -> None: ...

    def create_multipart(self, name: str, *, content_type: str,
                         metadata: Mapping[str, str]) -> str: ...

    def upload_part(self, name: str, upload_id: str, number: int, data: bytes) -> str:
        """Upload one part; return its ETag (without quotes)."""
        ...

    def list_parts(self, name: str, upload_id: str) -> Optional[list[PartInfo]]:
        """The parts the server holds, or None when the upload is gone."""
        ...

    def complete_multipart(self, name: str, upload_id: str,
                           parts: Sequence[tuple[int, str]]) -> None: ...

    def abort_multipart(self, name: str, upload_id: str) -> None:
        """An upload that is already gone is fine."""
        ...

    def list_multipart_uploads(self, limit: int = 1000) -> list[UploadInfo]: ...

    def copy(self, source: str, target: str, *, content_type: str,
             metadata: Mapping[str, str]) -> None:
        """Server-side copy within the bucket, with this content type and metadata."""
        ...

    def remove(self, name: str) -> None:
        """An object that is already gone is fine."""
        ...

    def open_stream(self, bucket: str, name: str) -> ObjectStream: ...

    def close(self) -> None: ...

    def classify(self, exc: BaseException, *, what: str) -> SyncError: ...

    def is_permanent(self, exc: BaseException) -> bool: ...

    def is_config_error(self, exc: BaseException) -> bool: ...


# -- record store -----------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateOne:
    """One conditional update in a bulk write (MongoDB's operators: ``$set``,
    ``$currentDate``, ``$max``); ``upsert`` inserts when nothing matches."""

    filter: Filter
    update: Mapping[str, Any]
    upsert: bool = False


@dataclass(frozen=True)
class DeleteOne:
    filter: Filter


WriteOp = Union[UpdateOne, DeleteOne]


class BulkWriteError(Exception):
    """Some operations of a bulk write failed; the others were applied.

    ``write_errors``: one mapping per failed operation with ``index`` (into the list of
    operations), ``code``, ``errmsg`` and, where the server says, ``keyPattern`` and
    ``keyValue`` (``sync.faults.duplicate_key_on_id`` reads them)."""

    def __init__(self, write_errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(f"{len(write_errors)} write error(s)")
        self.write_errors = list(write_errors)


class RecordCollection(Protocol):
    """The operations sync uses of a MongoDB collection: filters with ``$in``, ``$lt``,
    ``$lte``, ``$gte``, ``$gt``, ``$ne``, ``$exists``, ``$and``, ``$or`` and dotted
    fields; inclusion projections; sorts; ``$currentDate`` as the server's write time."""

    def find(self, filter: Filter, projection: Projection = None, *, sort: Sort = None,
             limit: int = 0, batch_size: int = 0) -> Iterable[Document]: ...

    def find_one(self, filter: Filter, projection: Projection = None) -> Optional[Document]: ...

    def find_one_and_update(self, filter: Filter, update: Mapping[str, Any], *,
                            upsert: bool = False, projection: Projection = None
                            ) -> Optional[Document]:
        """Apply ``update``; return the document after it."""
        ...

    def update_one(self, filter: Filter, update: Mapping[str, Any], *,
                   upsert: bool = False) -> None: ...

    def update_many(self, filter: Filter, update: Mapping[str, Any]) -> None: ...

    def delete_one(self, filter: Filter) -> None: ...

    def delete_many(self, filter: Filter) -> None: ...

    def bulk_write(self, operations: Sequence[WriteOp]) -> None:
        """Unordered; raises :class:`BulkWriteError` for the operations that failed."""
        ...

    def create_index(self, keys: Sequence[tuple[str, int]], *, name: str) -> None: ...

    def classify(self, exc: BaseException, *, what: str) -> SyncError:
        """The backend's classifier, for callers that hold only a collection."""
        ...


class RecordBackend(Protocol):
    """The central record store: MADSci's datapoints, our tombstones, the benches'
    heartbeats."""

    datapoints: RecordCollection
    tombstones: RecordCollection
    benches: RecordCollection

    def ping(self) -> None: ...

    def ensure_indexes(self) -> None: ...

    def ensure_scope_indexes(self, fields: list[str]) -> None: ...

    def server_time(self) -> Optional[datetime]:
        """The server's clock, or None if it will not say."""
        ...

    def close(self) -> None: ...

    def classify(self, exc: BaseException, *, what: str) -> SyncError: ...

    def is_permanent(self, exc: BaseException) -> bool: ...

    def is_config_error(self, exc: BaseException) -> bool: ...


# -- wiring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Backends:
    """How an engine reaches the central store: a factory per backend, called when it
    (re)connects. The real ones by default; tests hand in memory ones."""

    records: Callable[[CentralSettings], RecordBackend]
    objects: Callable[[CentralSettings, ServerClock], ObjectBackend]


def _mongo(settings: CentralSettings) -> RecordBackend:
    from sync.central import CentralDatabase

    return CentralDatabase(settings)


def _s3(settings: CentralSettings, clock: ServerClock) -> ObjectBackend:
    from sync.s3 import S3Backend

    return S3Backend(settings, clock)


#: MongoDB and S3, from the central settings.
REAL_BACKENDS = Backends(records=_mongo, objects=_s3)
