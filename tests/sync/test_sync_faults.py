"""Faults: dead servers, uploads cut mid-way, quarantine and retry, abandoned uploads."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from app.service import BenchService
from tests.support.servers import PrivateCentral
from tests.support.waiting import wait_until
from sync import engine as engine_module
from sync.engine import SyncEngine
from sync.objects import ObjectStore


def _sha256_of_object(settings: Any, name: str) -> str:
    digest = hashlib.sha256()
    with ObjectStore(settings) as objects:
        response = objects.client.get_object(settings.bucket, name)
        try:
            for chunk in response.stream(4 * 1024 * 1024):
                digest.update(chunk)
        finally:
            response.close()
            response.release_conn()
    return digest.hexdigest()


def _big_file(path: Path, size: int) -> Path:
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as out:
        for index in range(size // len(block)):
            out.write(index.to_bytes(8, "big") + block[8:])
        out.write(block[: size % len(block)])
    return path


def test_dead_mongo_retries_with_backoff_and_capture_keeps_working(
        tmp_path: Path, private_central: PrivateCentral) -> None:
    settings = private_central.settings.model_copy(update={"timeout_s": 2.0})
    with BenchService(tmp_path / "b") as bench, SyncEngine(bench, settings) as engine:
        first = bench.capture_value(1)
        private_central.mongo.kill()
        report = engine.run_pass(force=True)
        assert not report.ok and report.config_error is None
        second = bench.capture_value(2)  # capture does not care
        status = engine.status()
        assert status["backlog"]["count"] == 2 and status["quarantined"] == []
        private_central.mongo.start()
        report = engine.run_pass(force=True)
        assert report.ok and report.remaining == 0, report
        for dp in (first, second):
            assert bench.get_stored(dp.datapoint_id).sync_state == "confirmed"


def test_upload_cut_by_a_dead_s3_resumes_after_restart(
        tmp_path: Path, private_central: PrivateCentral, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="sync.objects")
    settings = private_central.settings.model_copy(
        update={"part_size": 5 * 1024 * 1024, "timeout_s": 3.0})
    source = _big_file(tmp_path / "big.raw", 40 * 1024 * 1024 + 123)
    with BenchService(tmp_path / "b") as bench, SyncEngine(bench, settings) as engine:
        dp = bench.capture_file(source)

        def parts_saved() -> int:
            with bench.store.reader() as conn:
                return int(conn.execute("SELECT COUNT(*) FROM sync_parts").fetchone()[0])

        killer = threading.Thread(target=lambda: (
            wait_until(lambda: parts_saved() >= 2, 60, "two parts uploaded", 0.01),
            private_central.weed.kill()))
        killer.start()
        report = engine.run_pass(force=True)
        killer.join()
        assert not report.ok
        with bench.store.reader() as conn:
            upload_id = conn.execute("SELECT upload_id FROM sync_uploads").fetchone()[0]
        assert parts_saved() >= 2
        private_central.weed.start()
        report = engine.run_pass(force=True)
        assert report.ok and report.remaining == 0, report
        assert report.uploaded_bytes == dp.size_bytes
        assert upload_id
        resumed = [r.getMessage() for r in caplog.records if "resuming upload" in r.getMessage()]
        assert resumed and "0 part(s)" not in resumed[-1]  # finished parts were kept
        doc_name = engine.outbox.objects_for([dp.datapoint_id])[dp.datapoint_id]["object_name"]
        assert _sha256_of_object(settings, doc_name) == dp.sha256
        with ObjectStore(settings) as objects:
            assert objects.list_uploads() == []


def test_rejected_item_is_quarantined_and_retried_after_a_fix(
        tmp_path: Path, central: Any) -> None:
    settings = central.model_copy(update={"max_object_size": 1000})
    small, large = tmp_path / "small.txt", tmp_path / "large.bin"
    small.write_bytes(b"s" * 10)
    large.write_bytes(os.urandom(5000))
    with BenchService(tmp_path / "b") as bench:
        with SyncEngine(bench, settings) as engine:
            ok = bench.capture_file(small)
            bad = bench.capture_file(large, label="too big")
            report = engine.run_pass(force=True)
            assert report.quarantined == 1 and report.confirmed == 1
            status = engine.status()
            assert [q["datapoint_id"] for q in status["quarantined"]] == [bad.datapoint_id]
            assert "at most 1000 bytes" in status["quarantined"][0]["reason"]
            assert bench.get_stored(bad.datapoint_id).sync_state == "quarantined"
            assert bench.get_stored(ok.datapoint_id).sync_state == "confirmed"
            assert engine.run_pass(force=True).quarantined == 0  # stays put, not retried
        with SyncEngine(bench, central) as fixed:  # the bucket policy was raised
            assert fixed.outbox.retry_quarantined() == 1
            report = fixed.run_pass(force=True)
            assert report.ok and report.remaining == 0
            assert fixed.status()["quarantined"] == []


def test_abandoned_multipart_uploads_are_aborted(tmp_path: Path, central: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    monkeypatch.setattr(engine_module, "ABANDONED_UPLOAD_AGE", timedelta(0))
    with ObjectStore(central) as objects, BenchService(tmp_path / "b") as bench:
        captured = bench.capture_value(1, label="its upload was left behind")
        objects.client._create_multipart_upload(
            central.bucket, f"{central.object_prefix}{captured.datapoint_id}/left.bin", {})
        objects.client._create_multipart_upload(central.bucket, "not-ours/other.bin", {})
        assert len(objects.list_uploads()) == 1
        with SyncEngine(bench, central) as engine:
            report = engine.run_pass(force=True)
            assert report.aborted_uploads == 1
        assert objects.list_uploads() == []


@pytest.mark.slow
def test_300_mb_file_multipart_byte_exact(tmp_path: Path, central: Any) -> None:
    source = _big_file(tmp_path / "huge.raw", 300 * 1024 * 1024)
    with BenchService(tmp_path / "b") as bench, SyncEngine(bench, central) as engine:
        dp = bench.capture_file(source)
        source.unlink()  # the capture is what gets pushed
        report = engine.run_pass(force=True)
        assert report.ok and report.remaining == 0
        stored = engine.outbox.objects_for([dp.datapoint_id])[dp.datapoint_id]
        assert stored["size"] == 300 * 1024 * 1024 and stored["etag"].endswith("-19")
        assert _sha256_of_object(central, stored["object_name"]) == dp.sha256
