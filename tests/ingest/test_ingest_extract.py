"""A Bruker experiment folder written file by file into a watched folder: captured as one
dataset, and its acqus fields found by search and query once extracted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import extract_samples as samples
from app.extract.component import ExtractComponent
from app.extract.worker import ExtractSettings
from app.service import BenchService


def test_a_watched_bruker_dataset_gets_its_acqus_fields(
        start_watch: Any, watched: Path, service: BenchService, wait: Any) -> None:
    worker = ExtractComponent(service, ExtractSettings(poll_seconds=0.05))
    worker.start()
    try:
        h = start_watch(datasets=True, quiet_seconds=0.5)
        h.wait_first_scan()
        experiment = watched / "exp10"
        samples.write_acqus(experiment)
        (experiment / "pulseprogram").write_text("; zg30\n", encoding="utf-8")
        (experiment / "fid").write_bytes(b"\x00\x01" * 5000)
        [datapoint] = h.wait_captured(1, "exp10")
        ident = datapoint.datapoint_id
        wait(lambda: "extracted.format" in service.get(ident).custom_metadata, timeout=60)
    finally:
        worker.stop()
    metadata = service.get(ident).custom_metadata
    assert metadata["extracted.format"] == "bruker-acqus"
    assert metadata["extracted.container"] == "zip" and metadata["extracted.nucleus"] == "1H"
    assert [d.datapoint_id for d in service.search("zg30").items] == [ident]
    assert service.count({"custom_metadata.extracted.pulse_program": "zg30"}) == 1
