"""Faults injected into the in-memory central store (``sync.memory_backend``: a failure on
the next call of one operation, uploads aged at will), which the real servers cannot
produce the same way. Every scenario without injected faults runs on both the memory
store and SeaweedFS + nx-27017 (the ``sync_backend`` fixture: ``test_sync_push.py``,
``test_sync_pull.py``, ``test_fetch_verify.py`` ...); killed and restarted servers are
``test_sync_faults.py``'s; the backends themselves keep one contract
(``test_backend_contract.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.sync.central_stores import (MEMORY_BUCKET, MIB, CentralStore, memory_settings,
                                       open_central)

from app.service import BenchService
from sync.engine import SyncEngine
from sync.faults import CentralConfigError, RejectedError
from sync.memory_backend import MemoryCentral, MemoryObjects
from sync.objects import ObjectStore


@pytest.fixture
def sync_backend(request: pytest.FixtureRequest) -> Iterator[CentralStore]:
    """The in-memory store only (the conftest's ``bench``, ``engine`` use this one)."""
    store = open_central(request, "memory")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def central(sync_backend: CentralStore) -> MemoryCentral:
    assert sync_backend.memory is not None
    return sync_backend.memory


def _object_bytes(central: MemoryCentral, datapoint_id: str) -> bytes:
    record = central.collections["datapoints"][datapoint_id]
    return central.buckets[MEMORY_BUCKET][record["object_name"]].data


def test_a_broken_multipart_upload_resumes_with_the_parts_already_sent(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(11 * MIB)  # three parts of 5 MiB
    source.write_bytes(data)
    captured = bench.capture_file(source)
    central.fail_next("complete_multipart", ConnectionResetError("connection reset"))
    report = engine.run_pass(force=True)
    assert report.retrying == 1 and report.confirmed == 0, report
    assert central.calls["upload_part"] == 3
    report = engine.run_pass(force=True)
    assert report.ok and report.confirmed == 1, report
    assert central.calls["upload_part"] == 3  # no part sent twice
    assert _object_bytes(central, captured.datapoint_id) == data
    assert not central.uploads[MEMORY_BUCKET]


def test_a_failed_record_write_is_retried_and_confirmed_once(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral) -> None:
    captured = bench.capture_value(7, label="flaky")
    central.fail_next("bulk_write", ConnectionResetError("the server went away"))
    report = engine.run_pass(force=True)
    assert report.retrying == 1 and report.confirmed == 0, report
    assert bench.get_stored(captured.datapoint_id).sync_state != "confirmed"
    report = engine.run_pass(force=True)
    assert report.ok and report.confirmed == 1, report
    assert central.collections["datapoints"][captured.datapoint_id]["value"] == 7


def test_a_refused_file_is_quarantined_and_values_go_on(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral, tmp_path: Path) -> None:
    source = tmp_path / "refused.bin"
    source.write_bytes(b"refused")
    refused = bench.capture_file(source)
    value = bench.capture_value(1)
    central.fail_next("put", RejectedError("EntityTooLarge (the bucket policy)"))
    report = engine.run_pass(force=True)
    assert report.quarantined == 1 and report.confirmed == 1, report
    assert bench.get_stored(refused.datapoint_id).sync_state == "quarantined"
    assert central.collections["datapoints"][value.datapoint_id]["value"] == 1


@pytest.mark.allow_error_logs
def test_a_missing_bucket_is_created_and_a_refused_one_holds_files_back(
        tmp_path: Path) -> None:
    central = MemoryCentral()  # no bucket yet: the engine creates it, as MADSci does
    with BenchService(tmp_path / "bench") as bench, \
            SyncEngine(bench, memory_settings(), backends=central.backends()) as engine:
        bench.capture_value(1)
        assert engine.run_pass(force=True).ok
        assert MEMORY_BUCKET in central.buckets
    refusing = MemoryCentral()
    refusing.fail_next("make_bucket", CentralConfigError("may not create the bucket"), times=9)
    with BenchService(tmp_path / "other") as bench, \
            SyncEngine(bench, memory_settings(), backends=refusing.backends()) as engine:
        source = tmp_path / "held.bin"
        source.write_bytes(b"held back")
        held = bench.capture_file(source)
        value = bench.capture_value(2)
        report = engine.run_pass(force=True)
        assert report.config_error and "may not create" in report.config_error
        assert bench.get_stored(value.datapoint_id).sync_state == "confirmed"
        assert bench.get_stored(held.datapoint_id).sync_state != "confirmed"


def test_abandoned_uploads_of_this_bench_are_aborted(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(6 * MIB))
    dp = bench.capture_file(source)
    central.fail_next("upload_part", ConnectionResetError("reset"), times=2)
    engine.run_pass(force=True)
    assert central.uploads[MEMORY_BUCKET]
    bench.delete(dp.datapoint_id)  # nobody will resume it now
    MemoryObjects(central, MEMORY_BUCKET).age_uploads(timedelta(days=30))
    assert engine.run_pass(force=True).ok
    assert not central.uploads[MEMORY_BUCKET]


def test_an_error_a_backend_sorted_itself_is_not_made_its_own_cause(
        central: MemoryCentral) -> None:
    """``raise classify(exc) from exc`` over an error the backend raised already sorted
    once made it its own cause: ``doctor``, walking the causes, hung on a wrong secret."""
    central.fail_next("bucket_exists", CentralConfigError("access denied to the bucket"))
    store = ObjectStore(memory_settings(), backend=MemoryObjects(central, MEMORY_BUCKET))
    with pytest.raises(CentralConfigError, match="access denied") as raised:
        store.check_access()
    chain: list[BaseException] = []
    current: Any = raised.value
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__
    assert len(chain) == 2  # the error raised, caused by the one the backend raised
