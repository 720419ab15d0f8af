"""Restoring a deleted datapoint after its deletion synced: a new revision that syncs as an
undelete; on the in-memory central store and on the real SeaweedFS + nx-27017 servers,
where MADSci's own server reads it too."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

import pytest
from tests.sync.central_stores import CentralStore, sync_all

from app.core.errors import NotFoundError
from app.service import BenchService
from sync.engine import SyncEngine
from tests.sync.test_sync_madsci import madsci_server  # noqa: F401  (fixture)


@pytest.mark.parametrize("sync_backend", [
    "memory", pytest.param("servers", marks=pytest.mark.slow)], indirect=True)
def test_a_restore_after_the_delete_synced_brings_it_back_everywhere(
        benches: list[tuple[BenchService, SyncEngine]], sync_backend: CentralStore,
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    (a, engine_a), (b, engine_b) = benches
    data = b"spectrum 7\n" * 1000
    source = tmp_path / "spectrum-7.csv"
    source.write_bytes(data)
    doomed = a.capture_file(source, label="spectrum 7")
    ident = doomed.datapoint_id
    sync_all(benches)
    assert b.get(ident).label == "spectrum 7"

    a.delete(ident, by="alice on UV-Vis 2")
    sync_all(benches)
    assert sync_backend.record(ident) is None
    assert (sync_backend.tombstone(ident) or {})["sync_deleted_by"] == "alice on UV-Vis 2"
    with pytest.raises(NotFoundError):
        b.get(ident)
    # Within the retention period the local copy stays (verified central or not).
    assert a.files.exists(str(doomed.sha256))
    [seen] = b.recently_deleted()
    assert seen.datapoint.datapoint_id == ident
    assert seen.deleted_by == "alice on UV-Vis 2"

    # Bench b restores what bench a deleted, after the deletion reached everyone.
    restored = b.restore(ident)
    assert restored.label == "spectrum 7" and b.recently_deleted() == []
    sync_all(benches)
    record = sync_backend.written(ident)
    assert record["data_type"] == "object_storage"
    assert record["sync_undeletes"] == seen.revision
    assert record["sync_revision"] == seen.revision + 1
    assert sync_backend.tombstone(ident) is None
    # Bench a pulls it back, bytes included; nothing is waiting anywhere.
    assert a.get(ident).label == "spectrum 7"
    assert a.value(ident) == data  # its copy, kept while restorable
    engine_b.fetch_file(ident)  # bench b never held the bytes
    assert b.value(ident) == data
    assert a.recently_deleted() == []
    for service in (a, b):
        assert service.get_stored(ident).sync_state == "confirmed"

    if sync_backend.memory is None:
        # MADSci's own server serves the restored datapoint and its file.
        server = request.getfixturevalue("madsci_server")
        with urllib.request.urlopen(f"{server}datapoint/{ident}", timeout=30) as response:
            assert json.loads(response.read())["label"] == "spectrum 7"
        with urllib.request.urlopen(f"{server}datapoint/{ident}/value",
                                    timeout=30) as response:
            assert hashlib.sha256(response.read()).digest() == hashlib.sha256(data).digest()

    # A later deletion wins over the restore again (a higher revision).
    a.delete(ident)
    sync_all(benches)
    for service in (a, b):
        with pytest.raises(NotFoundError):
            service.get(ident)
    assert sync_backend.record(ident) is None
