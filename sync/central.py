"""The central MongoDB: MADSci's datapoints collection and our tombstones beside it.

Only standard MongoDB operations (bulk upserts, ``$currentDate``, ``$in``, sorts), so a real
MongoDB or a FerretDB replica set behaves like the nx-27017 test server. Connections fail
fast (seconds, not pymongo's 30 s default) so a dead server costs one short wait per pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sync.documents import BENCH, REVISION, UNDELETES, WRITTEN_AT
from sync.faults import classify_mongo
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


class CentralDatabase:
    """The datapoints and tombstones collections of the central store."""

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
        self.datapoints: Any = database[settings.mongo_collection]
        self.tombstones: Any = database[settings.tombstone_collection]
        self.benches: Any = database[settings.benches_collection]
        self._indexed = False
        self._scope_indexed: tuple[str, ...] = ()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "CentralDatabase":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

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
