"""The one download-and-verify step (``sync.fetch.fetch_verified``) on the in-memory
central store and on SeaweedFS + nx-27017: a bench file's central copy must hash to its
record; an object MADSci wrote (no SHA-256) must keep the size and ETag it was recorded
with. The front ends over it (REST, CLI) are tested in ``test_sync_bytes.py``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from tests.sync.central_stores import CentralStore, sync_all
from ulid import ULID

from app.core import custody
from app.core.errors import FileDamagedError
from app.service import BenchService
from sync.engine import SyncEngine
from sync.fetch import fetch_verified
from sync.objects import ObjectStore


def _fetch(service: BenchService, central: CentralStore, ident: str) -> str:
    objects = ObjectStore(central.settings, backend=central.objects_in(central.settings.bucket))
    return fetch_verified(service, objects, service.get(ident))


def _madsci_write(central: CentralStore, data: bytes, label: str) -> str:
    """An object_storage datapoint as MADSci 0.8.1's server writes one: the object, then
    a record with its size and ETag but no SHA-256."""
    ident = str(ULID())
    name = f"{ident}_{label}"
    central.objects.put(name, data, content_type="application/octet-stream",
                        metadata={"original_datapoint_id": ident})
    info = central.objects.stat(name)
    assert info is not None
    endpoint, bucket = central.settings.endpoint, central.settings.bucket
    central.insert({
        "_id": ident, "label": label, "data_type": "object_storage",
        "data_timestamp": "2026-11-23T22:10:32.072422", "ownership_info": {},
        "custom_metadata": {}, "path": f"/tmp/tmpabc_{label}", "bucket_name": bucket,
        "object_name": name, "etag": info.etag, "size_bytes": len(data),
        "content_type": "application/octet-stream", "storage_endpoint": endpoint,
        "public_endpoint": endpoint, "url": f"http://{endpoint}/{bucket}/{name}"})
    return ident


def _replace(central: CentralStore, name: str, data: bytes) -> None:
    """Replace an object's bytes, keeping its content type and metadata. In memory its
    ETag stays too (only the bytes tell, as a damaged disk would leave it); S3 gives a
    put a new one."""
    if central.memory is not None:
        central.memory.buckets[str(central.settings.bucket)][name].data = data
        return
    info = central.objects.stat(name)
    assert info is not None
    central.objects.put(name, data, content_type=info.content_type, metadata=info.metadata)


def test_a_central_copy_that_does_not_hash_to_its_record_is_refused(
        benches: list[tuple[BenchService, SyncEngine]], sync_backend: CentralStore,
        tmp_path: Path) -> None:
    (a, _engine_a), (b, _engine_b) = benches
    source = tmp_path / "data.bin"
    data = os.urandom(200_000)
    source.write_bytes(data)
    ident = a.capture_file(source).datapoint_id
    sync_all(benches)
    name = sync_backend.written(ident)["object_name"]
    forged = bytearray(data)
    forged[-1] ^= 0xFF  # same size and metadata: only the bytes tell
    _replace(sync_backend, name, bytes(forged))
    with pytest.raises(FileDamagedError, match="does not match its record"):
        _fetch(b, sync_backend, ident)
    assert custody.custody_of(b.store, ident) is None
    assert not b.files.exists(hashlib.sha256(forged).hexdigest())
    _replace(sync_backend, name, data)
    assert _fetch(b, sync_backend, ident) == hashlib.sha256(data).hexdigest()
    assert b.value(ident) == data


@pytest.mark.allow_error_logs  # the refused fetch is logged
def test_objects_madsci_wrote_are_verified_by_size_and_etag(
        benches: list[tuple[BenchService, SyncEngine]], sync_backend: CentralStore) -> None:
    (b, engine_b) = benches[1]
    good = _madsci_write(sync_backend, b"original bytes", "good.bin")
    tampered = _madsci_write(sync_backend, b"original bytes", "tampered.bin")
    sync_backend.objects.put(f"{tampered}_tampered.bin", b"modified bytes",
                             content_type="application/octet-stream", metadata={})
    assert engine_b.run_pass(force=True).ok
    _fetch(b, sync_backend, good)
    assert b.value(good) == b"original bytes"
    record = custody.custody_of(b.store, good)
    assert record is not None and record.how == "etag"
    with pytest.raises(FileDamagedError, match="has changed since it was recorded"):
        _fetch(b, sync_backend, tampered)
    assert custody.custody_of(b.store, tampered) is None
