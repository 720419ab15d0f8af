"""Extracted fields travel with the datapoint to the central store (real SeaweedFS +
nx-27017), also when extraction finishes after the file was already synced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from tests.support import extract_samples as samples
from app.extract.process import ExtractorProcess
from app.extract.worker import extract_datapoint
from app.service import BenchService
from sync.engine import SyncEngine


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[BenchService]:
    with BenchService(tmp_path / "bench") as service:
        yield service


@pytest.fixture
def process() -> Iterator[ExtractorProcess]:
    extractor = ExtractorProcess(timeout_seconds=60, memory_mb=2048)
    yield extractor
    extractor.close()


def _central_metadata(settings: Any, datapoint_id: str) -> dict[str, str]:
    client: Any = pymongo.MongoClient(settings.mongo_url.get_secret_value(),
                                      serverSelectionTimeoutMS=5000)
    try:
        doc = client[settings.mongo_database][settings.mongo_collection].find_one(
            {"_id": datapoint_id})
    finally:
        client.close()
    assert doc is not None
    return dict(doc["custom_metadata"])


def test_extracted_fields_sync_before_and_after_the_first_push(
        bench: BenchService, process: ExtractorProcess, central: Any, tmp_path: Path) -> None:
    early = bench.capture_file(samples.write_ome_tiff(tmp_path / "cells.ome.tif"))
    late = bench.capture_file(samples.write_acqus(tmp_path / "10"))
    extract_datapoint(bench, process, early.datapoint_id)
    with SyncEngine(bench, central) as engine:
        report = engine.run_pass()
        assert report.ok and report.confirmed == 2, report
        assert _central_metadata(central, early.datapoint_id)["extracted.format"] == "ome-tiff"
        assert "extracted.format" not in _central_metadata(central, late.datapoint_id)
        extract_datapoint(bench, process, late.datapoint_id)  # a new revision
        report = engine.run_pass()
        assert report.ok and report.confirmed == 1, report
    central_late = _central_metadata(central, late.datapoint_id)
    assert central_late["extracted.pulse_program"] == "zg30"
    assert bench.get_stored(late.datapoint_id).sync_state == "confirmed"
