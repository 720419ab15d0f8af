"""The central stores a sync scenario runs on, one way to open each: the in-memory one
(``sync.memory_backend``: fast, no servers, faults injected at will), the real SeaweedFS +
nx-27017 (the ``central`` fixture) and both of those over TLS (``tls_central``).

A scenario is written once against :class:`CentralStore` and parametrized over the kinds
(the ``sync_backend`` fixture in ``tests/sync/conftest.py``; ``test_backend_contract.py``
adds TLS). Tests read and write the central side through the backends' own protocol
(``sync.backends``), which that contract holds to what MongoDB and S3 do.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest

from app.service import BenchService
from sync.backends import REAL_BACKENDS, Backends, ObjectBackend, RecordBackend
from sync.clock import ServerClock
from sync.engine import SyncEngine
from sync.memory_backend import MemoryCentral
from sync.settings import CentralSettings

MIB = 1024 * 1024
MEMORY_BUCKET = "bench"
#: The stores a scenario runs on; the contract adds "tls".
KINDS = ["memory", "servers"]


def memory_settings(**overrides: Any) -> CentralSettings:
    """Settings as a configured bench has them; the memory backends ignore the addresses."""
    values: dict[str, Any] = dict(endpoint="central.invalid:9000", access_key="bench",
                                  secret_key="unused", bucket=MEMORY_BUCKET,
                                  region="us-east-1", mongo_url="mongodb://central.invalid/",
                                  part_size=5 * MIB)
    values.update(overrides)
    return CentralSettings(**values)


@dataclass
class CentralStore:
    """One central store: the settings and backends an engine is built with, and the
    records and bucket a test reads (and tampers with) behind the engines' backs."""

    kind: str
    settings: CentralSettings
    backends: Backends
    #: The in-memory state (call counts, injected faults); None on real servers.
    memory: Optional[MemoryCentral] = None
    _opened: list[Any] = field(default_factory=list)
    _records: Optional[RecordBackend] = None
    _objects: Optional[ObjectBackend] = None

    # -- engines ----------------------------------------------------------------------

    def engine(self, service: BenchService, **overrides: Any) -> SyncEngine:
        """A sync engine of ``service`` on this store (settings changed by ``overrides``)."""
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        return SyncEngine(service, settings, backends=self.backends)

    # -- the central side, as a test sees it -------------------------------------------

    @property
    def records(self) -> RecordBackend:
        if self._records is None:
            self._records = self.backends.records(self.settings)
            self._opened.append(self._records)
        return self._records

    @property
    def objects(self) -> ObjectBackend:
        if self._objects is None:
            self._objects = self.objects_in(str(self.settings.bucket))
        return self._objects

    def objects_in(self, bucket: str) -> ObjectBackend:
        """The object backend of ``bucket`` on this store (closed with the store)."""
        settings = self.settings.model_copy(update={"bucket": bucket})
        objects = self.backends.objects(settings, ServerClock())
        self._opened.append(objects)
        return objects

    def missing_bucket(self) -> ObjectBackend:
        """The object backend of a bucket that does not exist."""
        return self.objects_in(f"missing-{secrets.token_hex(4)}")

    def record(self, ident: str) -> Optional[dict[str, Any]]:
        """The central record of a datapoint, or None."""
        return self.records.datapoints.find_one({"_id": ident})

    def written(self, ident: str) -> dict[str, Any]:
        """The central record of a datapoint, which must be there."""
        found = self.record(ident)
        assert found is not None, f"no central record of {ident}"
        return found

    def tombstone(self, ident: str) -> Optional[dict[str, Any]]:
        return self.records.tombstones.find_one({"_id": ident})

    def insert(self, document: dict[str, Any]) -> None:
        """Write a record as another writer (MADSci's own server) would: as it is, none of
        our bookkeeping added."""
        fields = {k: v for k, v in document.items() if k != "_id"}
        self.records.datapoints.update_one({"_id": document["_id"]}, {"$set": fields},
                                           upsert=True)

    def change(self, ident: str, fields: dict[str, Any]) -> None:
        """Change fields of a central record behind the benches' backs."""
        self.records.datapoints.update_one({"_id": ident}, {"$set": fields})

    def object_bytes(self, name: str) -> bytes:
        return read_object(self.objects, name)[1]

    def close(self) -> None:
        for opened in reversed(self._opened):
            opened.close()
        self._opened.clear()


def sync_all(pairs: list[tuple[BenchService, SyncEngine]], rounds: int = 2) -> None:
    """Every bench syncs, ``rounds`` times over: what one pushed, the others pulled."""
    for _ in range(rounds):
        for _service, engine in pairs:
            report = engine.run_pass(force=True)
            assert report.ok and report.retrying == 0, report


def read_object(objects: ObjectBackend, name: str) -> tuple[dict[str, str], bytes]:
    """An object's response headers (lower-case names) and bytes."""
    stream = objects.open_stream(objects.bucket, name)
    try:
        headers = {k.lower(): v for k, v in stream.headers.items()}
        chunks = []
        while chunk := stream.read(1 << 20):
            chunks.append(chunk)
    finally:
        stream.close()
        stream.release_conn()
    return headers, b"".join(chunks)


def open_central(request: pytest.FixtureRequest, kind: str) -> CentralStore:
    """A fresh central store of ``kind``: "memory", "servers" or "tls" (the real servers'
    fixtures are asked for only when needed, so a memory run starts no server)."""
    if kind == "memory":
        memory = MemoryCentral(buckets=[MEMORY_BUCKET])
        return CentralStore(kind, memory_settings(), memory.backends(), memory=memory)
    if kind not in ("servers", "tls"):
        raise ValueError(f"no central store of kind {kind!r}")
    settings = request.getfixturevalue("central" if kind == "servers" else "tls_central")
    return CentralStore(kind, settings, REAL_BACKENDS)
