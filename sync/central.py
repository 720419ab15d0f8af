"""The central MongoDB: MADSci's datapoints collection and our tombstones beside it.

The real ``RecordBackend`` (``sync.backends``): each collection is a
:class:`MongoCollection`, pymongo's collection behind the protocol's few operations.

Only standard MongoDB operations (bulk upserts, ``$currentDate``, ``$in``, sorts), so a real
MongoDB or a FerretDB replica set behaves like the nx-27017 test server. Connections fail
fast (seconds, not pymongo's 30 s default) so a dead server costs one short wait per pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from sync.backends import BulkWriteError, ClassifiedErrors, DeleteOne, Document, Filter, \
    Projection, Sort, UpdateOne, WriteOp, sorted_already
from sync.documents import BENCH, REVISION, UNDELETES, WRITTEN_AT
from sync.faults import SyncError, classify_mongo
from sync.settings import CentralSettings

log = logging.getLogger(__name__)


def url_uses_tls(url: str) -> bool:
    """Whether a MongoDB URL asks for TLS (``tls``/``ssl`` true, or ``mongodb+srv``)."""
    parts = urlsplit(url)
    options = {k.lower(): v[-1].strip().lower() for k, v in parse_qs(parts.query).items()}
    flag = options.get("tls", options.get("ssl"))
    if flag is not None:
        return flag in ("true", "1", "yes")
    return parts.scheme.lower() == "mongodb+srv"  # SRV URLs default to TLS


def tls_options(settings: CentralSettings, url: str) -> dict[str, Any]:
    """``tlsCAFile`` from ``ca_file`` when the URL uses TLS and names no CA file itself.

    Only then: pymongo takes ``tlsCAFile`` as "turn TLS on", which would break a plain
    MongoDB beside an HTTPS bucket that needs the lab's CA.
    """
    if not settings.ca_file or not url_uses_tls(url):
        return {}
    if "tlscafile" in {k.lower() for k in parse_qs(urlsplit(url).query)}:
        return {}  # the URL's own choice wins
    return {"tlsCAFile": settings.ca_bundle()}


def _pymongo_op(op: WriteOp) -> Any:
    import pymongo

    if isinstance(op, UpdateOne):
        return pymongo.UpdateOne(dict(op.filter), dict(op.update), upsert=op.upsert)
    if isinstance(op, DeleteOne):
        return pymongo.DeleteOne(dict(op.filter))
    raise TypeError(f"not a write operation: {op!r}")


class MongoCollection:
    """A pymongo collection as a ``RecordCollection``. Other attributes (``list_indexes``,
    ``insert_one`` ...) reach pymongo's collection itself, for tools and tests."""

    def __init__(self, collection: Any,
                 classify: Callable[..., SyncError] = classify_mongo) -> None:
        self.raw = collection
        #: The backend's error classifier (``sync.backends.RecordCollection.classify``).
        self.classify = classify

    def __getattr__(self, name: str) -> Any:
        if name == "raw":  # not set yet (copying, unpickling): not pymongo's to answer
            raise AttributeError(name)
        return getattr(self.raw, name)

    def find(self, filter: Filter, projection: Projection = None, *, sort: Sort = None,
             limit: int = 0, batch_size: int = 0) -> Any:
        return self.raw.find(filter, projection, sort=list(sort) if sort else None,
                             limit=limit, batch_size=batch_size)

    def find_one(self, filter: Filter, projection: Projection = None) -> Optional[Document]:
        found: Optional[Document] = self.raw.find_one(filter, projection)
        return found

    def find_one_and_update(self, filter: Filter, update: Mapping[str, Any], *,
                            upsert: bool = False, projection: Projection = None
                            ) -> Optional[Document]:
        from pymongo import ReturnDocument

        found: Optional[Document] = self.raw.find_one_and_update(
            filter, update, upsert=upsert, return_document=ReturnDocument.AFTER,
            projection=projection)
        return found

    def update_one(self, filter: Filter, update: Mapping[str, Any], *,
                   upsert: bool = False) -> None:
        self.raw.update_one(filter, update, upsert=upsert)

    def update_many(self, filter: Filter, update: Mapping[str, Any]) -> None:
        self.raw.update_many(filter, update)

    def delete_one(self, filter: Filter) -> None:
        self.raw.delete_one(filter)

    def delete_many(self, filter: Filter) -> None:
        self.raw.delete_many(filter)

    def bulk_write(self, operations: Sequence[WriteOp]) -> None:
        from pymongo.errors import BulkWriteError as PymongoBulkWriteError

        try:
            self.raw.bulk_write([_pymongo_op(op) for op in operations], ordered=False)
        except PymongoBulkWriteError as exc:
            raise BulkWriteError(exc.details.get("writeErrors", [])) from exc

    def create_index(self, keys: Sequence[tuple[str, int]], *, name: str) -> None:
        self.raw.create_index(list(keys), name=name)


class CentralDatabase(ClassifiedErrors):
    """The datapoints and tombstones collections of the central store (MongoDB)."""

    def __init__(self, settings: CentralSettings, listeners: Sequence[Any] = ()) -> None:
        """``listeners``: pymongo command listeners (tests and benchmarks count requests)."""
        import pymongo

        if not settings.mongo_configured:
            from sync.faults import CentralConfigError

            raise CentralConfigError("MongoDB is not configured: set BENCHDATA_MONGO_URL "
                                     "(or `benchdata sync configure`)")
        assert settings.mongo_url is not None
        url = settings.mongo_url.get_secret_value()
        timeout_ms = int(settings.timeout_s * 1000)
        tls = tls_options(settings, url)  # a missing CA file: a config error, said now
        try:
            self._client: Any = pymongo.MongoClient(
                url, appname="benchdata-sync",
                serverSelectionTimeoutMS=min(timeout_ms, 5000), connectTimeoutMS=min(timeout_ms, 5000),
                socketTimeoutMS=max(timeout_ms, 30000), tz_aware=True, connect=False,
                uuidRepresentation="standard", event_listeners=list(listeners), **tls)
        except Exception as exc:  # noqa: BLE001 - bad URL and the like
            raise classify_mongo(exc, what="opening MongoDB") from exc
        database = self._client[settings.mongo_database]
        self.datapoints = MongoCollection(database[settings.mongo_collection], self.classify)
        self.tombstones = MongoCollection(database[settings.tombstone_collection], self.classify)
        self.benches = MongoCollection(database[settings.benches_collection], self.classify)
        self._indexed = False
        self._scope_indexed: tuple[str, ...] = ()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "CentralDatabase":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def classify(self, exc: BaseException, *, what: str) -> SyncError:
        if isinstance(exc, SyncError):
            return sorted_already(exc)
        return classify_mongo(exc, what=what)

    def server_time(self) -> Optional[datetime]:
        """The MongoDB server's clock (``hello``'s ``localTime``), or None if it will not say."""
        try:
            moment = self._client.admin.command("hello").get("localTime")
        except Exception:  # noqa: BLE001 - the caller has another way to judge
            return None
        return moment if isinstance(moment, datetime) else None

    def ping(self) -> None:
        try:
            self._client.admin.command("ping")
        except Exception as exc:  # noqa: BLE001
            raise classify_mongo(exc, what="connecting to MongoDB") from exc

    def ensure_scope_indexes(self, fields: list[str]) -> None:
        """(ownership field, write time) for each field a pull scope selects on, so a
        scoped pull reads its scope's index range rather than the whole collection.
        Created once per process and field list."""
        wanted = tuple(sorted(fields))
        if not wanted or wanted == self._scope_indexed:
            return
        try:
            for field in wanted:
                self.datapoints.create_index([(f"ownership_info.{field}", 1), (WRITTEN_AT, 1)],
                                             name=f"benchdata_scope_{field}")
        except Exception as exc:  # noqa: BLE001
            raise classify_mongo(exc, what="creating the pull scope's indexes") from exc
        self._scope_indexed = wanted

    def supports_id_compound_indexes(self) -> bool:
        """Whether the server can hold indexes that name ``_id`` beside other fields.

        MongoDB (and FerretDB) can; nx-27017 (0.8.1 breaks writes once an index names
        ``_id``) cannot, and says who it is in ``buildInfo``: creating the index to find
        out would be the very thing that breaks it."""
        try:
            info = self._client.admin.command("buildInfo")
        except Exception:  # noqa: BLE001 - a server that will not say: the safe side
            log.info("buildInfo unavailable; not creating compound _id indexes")
            return False
        return not str(info.get("process", "")).lower().startswith("nx")

    def ensure_indexes(self) -> None:
        """The pull's indexes; created once per process.

        On a server that can, (write time, _id, revision, bench, undeletes) covers the pull's window
        scan and its keyset sort (no blocking sort, no document read); elsewhere (write
        time) alone serves the range and the server sorts each page."""
        if self._indexed:
            return
        try:
            compound = self.supports_id_compound_indexes()
            for collection in (self.datapoints, self.tombstones):
                collection.create_index([(WRITTEN_AT, 1)], name="benchdata_sync_written_at")
                collection.create_index([(BENCH, 1)], name="benchdata_sync_bench")
                if compound:  # covers the window scan and its keyset sort
                    collection.create_index(
                        [(WRITTEN_AT, 1), ("_id", 1), (REVISION, 1), (BENCH, 1), (UNDELETES, 1)],
                        name="benchdata_sync_pull")
            self.benches.create_index([("seen_at", 1)], name="benchdata_seen_at")
        except Exception as exc:  # noqa: BLE001
            raise classify_mongo(exc, what="creating the sync indexes") from exc
        self._indexed = True
