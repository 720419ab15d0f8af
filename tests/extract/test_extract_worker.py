"""The extraction worker end to end: captured files are queued by every capture path,
extracted in the background into ``custom_metadata["extracted.*"]`` (a new revision),
queryable and searchable; slow, crashing and memory-hungry extractors cost only their file;
plug-ins come from the ``benchdata.extractors`` entry point group."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import extract_samples as samples
from app.core import extractqueue
from app.core.config import save_section
from app.core.store import SYNC_PENDING
from app.extract.component import ExtractComponent, make_component
from app.extract.worker import ExtractSettings
from app.runner import RunOptions
from app.service import BenchService
from tests.support.waiting import wait_until

PLUGIN = '''
import os, pathlib, signal, time

class Slow:
    name = "slow"
    def matches(self, path, head):
        return path.suffix == ".slow"
    def extract(self, path):
        pathlib.Path(os.environ["BENCHPLUG_STARTED"]).write_text("started")
        time.sleep(3600)

class Crash:
    name = "crash"
    def matches(self, path, head):
        return path.suffix == ".crash"
    def extract(self, path):
        os.kill(os.getpid(), signal.SIGKILL)

class Hog:
    name = "hog"
    def matches(self, path, head):
        return path.suffix == ".hog"
    def extract(self, path):
        return {"size": len(bytearray(8 * 1024 ** 3))}

class Answer:
    name = "answer"
    formats = "Answer files (.answer)"
    def matches(self, path, head):
        return path.suffix == ".answer" or head.startswith(b"ANSWER")
    def extract(self, path):
        print("noise on stdout must not break the protocol")
        return {"format": "answer-format", "format_version": "1", "answer": 42,
                "nested": {"deep": "yes"}}
'''


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny installed distribution with ``benchdata.extractors`` entry points, on the
    PYTHONPATH of the extractor process (and of CLI subprocesses)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "benchplug.py").write_text(PLUGIN, encoding="utf-8")
    info = site / "benchplug-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: benchplug\nVersion: 1.0\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [benchdata.extractors]
        slow = benchplug:Slow
        crash = benchplug:Crash
        hog = benchplug:Hog
        answer = benchplug:Answer
        """), encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("BENCHPLUG_STARTED", str(tmp_path / "slow-started"))
    return site


@pytest.fixture
def service(tmp_path: Path) -> Iterator[BenchService]:
    with BenchService(tmp_path / "store") as bench:
        yield bench


def start_worker(service: BenchService, **settings: object) -> ExtractComponent:
    component = ExtractComponent(service, ExtractSettings(
        **{"poll_seconds": 0.05, "timeout_seconds": 60, **settings}))
    component.start()
    return component


@pytest.fixture
def worker(service: BenchService) -> Iterator[ExtractComponent]:
    component = start_worker(service)
    yield component
    component.stop()


def extracted(service: BenchService, datapoint_id: str) -> dict[str, str]:
    return {k.removeprefix("extracted."): v
            for k, v in service.get(datapoint_id).custom_metadata.items()
            if k.startswith("extracted.")}


def wait_extracted(service: BenchService, datapoint_id: str, timeout: float = 60) -> dict:
    wait_until(lambda: extracted(service, datapoint_id), timeout, f"extraction of {datapoint_id}")
    return extracted(service, datapoint_id)


def test_every_capture_path_queues_files_and_only_files(service: BenchService,
                                                        tmp_path: Path) -> None:
    csv_file = samples.write_csv(tmp_path / "a.csv")
    by_path = service.capture_file(csv_file)
    by_upload = service.capture_stream(io.BytesIO(b"t,v\n1,2\n"), filename="upload.csv")
    value = service.capture_value({"t": 1})
    queued = extractqueue.pending(service.store, 10, 3)
    assert queued == [by_path.datapoint_id, by_upload.datapoint_id]
    assert value.datapoint_id not in queued


def test_a_captured_ome_tiff_is_extracted_queryable_and_searchable(
        service: BenchService, worker: ExtractComponent, tmp_path: Path) -> None:
    captured = service.capture_file(samples.write_ome_tiff(tmp_path / "cells.ome.tif"),
                                    metadata={"sample": "S-7"})
    assert "extracted.format" not in captured.custom_metadata  # capture did not wait
    got = wait_extracted(service, captured.datapoint_id)
    assert got["format"] == "ome-tiff" and got["ome.SizeZ"] == "3"
    stored = service.get_stored(captured.datapoint_id)
    assert stored.revision == 2 and stored.sync_state == SYNC_PENDING  # an edit sync carries
    assert stored.datapoint.custom_metadata["sample"] == "S-7"
    assert [d.datapoint_id for d in service.query(
        {"custom_metadata.extracted.format": "ome-tiff"}).items] == [captured.datapoint_id]
    assert service.count({"custom_metadata.extracted.objective.Immersion": "Oil"}) == 1
    assert service.count({"custom_metadata.extracted.format": "tiff"}) == 0
    assert service.count({"custom_metadata.sample": "S-7"}) == 1  # plain keys as before
    assert [d.datapoint_id for d in service.search("DAPI").items] == [captured.datapoint_id]
    wait_until(lambda: extractqueue.count(service.store) == 0, 30, "the queue to empty")


def test_acqus_fields_are_searchable(service: BenchService, worker: ExtractComponent,
                                     tmp_path: Path) -> None:
    captured = service.capture_file(samples.write_acqus(tmp_path / "10"))
    assert wait_extracted(service, captured.datapoint_id)["pulse_program"] == "zg30"
    assert [d.datapoint_id for d in service.search("zg30").items] == [captured.datapoint_id]
    assert service.count({"custom_metadata.extracted.nucleus": "1H"}) == 1


@pytest.mark.parametrize("kind", samples.CORRUPT_KINDS)
def test_a_damaged_file_is_captured_and_its_error_recorded(
        service: BenchService, worker: ExtractComponent, tmp_path: Path, kind: str) -> None:
    path = samples.write_corrupt(kind, tmp_path / kind)
    captured = service.capture_file(path)
    assert service.get(captured.datapoint_id).size_bytes == path.stat().st_size
    got = wait_extracted(service, captured.datapoint_id)
    assert got["error"] and got["extractor"]
    assert "format" not in got


def test_pending_extractions_survive_a_restart(tmp_path: Path) -> None:
    with BenchService(tmp_path / "store") as bench:
        ident = bench.capture_file(samples.write_nexus(tmp_path / "run.nxs")).datapoint_id
    with BenchService(tmp_path / "store") as bench:  # as after a crash: nothing ran
        assert extractqueue.pending(bench.store, 10, 3) == [ident]
        component = start_worker(bench)
        try:
            assert wait_extracted(bench, ident)["sample_name"] == "lysozyme"
        finally:
            component.stop()


def test_a_slow_extractor_is_stopped_and_never_delays_capture(
        service: BenchService, plugin_site: Path, tmp_path: Path) -> None:
    started = Path(os.environ["BENCHPLUG_STARTED"])
    component = start_worker(service, timeout_seconds=5)
    try:
        slow = service.capture_file(_file(tmp_path / "stuck.slow", b"x"))
        wait_until(started.exists, 60, "the slow extractor to start")
        # Capture while the extractor hangs: it returns, committed, before the hang ends.
        during = service.capture_file(samples.write_csv(tmp_path / "during.csv"))
        assert service.get(during.datapoint_id).sha256
        assert not extracted(service, slow.datapoint_id)  # still hanging meanwhile
        error = wait_extracted(service, slow.datapoint_id)["error"]
        assert "longer than 5 seconds" in error
        # A fresh extractor process takes the next file.
        assert wait_extracted(service, during.datapoint_id)["format"] == "csv"
    finally:
        component.stop()


def test_a_crashing_or_greedy_extractor_costs_only_its_file(
        service: BenchService, plugin_site: Path, tmp_path: Path) -> None:
    component = start_worker(service, memory_mb=1024)
    try:
        crash = service.capture_file(_file(tmp_path / "bad.crash", b"x"))
        hog = service.capture_file(_file(tmp_path / "big.hog", b"x"))
        fine = service.capture_file(samples.write_png(tmp_path / "plate.png"))
        assert "crashed" in wait_extracted(service, crash.datapoint_id)["error"]
        if sys.platform != "win32":  # the address-space cap is POSIX
            assert "MemoryError" in wait_extracted(service, hog.datapoint_id)["error"]
        assert wait_extracted(service, fine.datapoint_id)["format"] == "png"
    finally:
        component.stop()


def test_an_installed_plugin_is_listed_and_used(service: BenchService, plugin_site: Path,
                                                tmp_path: Path) -> None:
    listed = json.loads(_cli(tmp_path, "formats", "--json"))
    answer = next(row for row in listed if row["name"] == "answer")
    assert answer == {"name": "answer", "formats": "Answer files (.answer)",
                      "source": "plug-in benchplug", "status": "ready"}
    names = [row["name"] for row in listed]
    assert names.index("answer") < names.index("tiff")  # plug-ins are tried first
    component = start_worker(service)
    try:
        captured = service.capture_file(_file(tmp_path / "q.answer", b"ANSWER"))
        got = wait_extracted(service, captured.datapoint_id)
    finally:
        component.stop()
    assert got == {"format": "answer-format", "format_version": "1", "answer": "42",
                   "nested.deep": "yes", "extractor": "answer"}


def test_benchdata_extract_reruns_and_replaces_stale_fields(service: BenchService,
                                                            tmp_path: Path) -> None:
    ident = service.capture_file(samples.write_jcamp(tmp_path / "ir.jdx")).datapoint_id
    service.update(ident, set_metadata={"extracted.stale": "old", "note": "kept"})
    out = _cli(tmp_path, "extract", ident, "--json")
    assert json.loads(out)[ident]["title"] == "Benzoic acid IR"
    metadata = service.get(ident).custom_metadata
    assert "extracted.stale" not in metadata and metadata["note"] == "kept"
    assert metadata["extracted.data_type"] == "INFRARED SPECTRUM"
    assert extractqueue.pending(service.store, 10, 3) == []
    before = service.get_stored(ident).revision
    _cli(tmp_path, "extract", ident)
    assert service.get_stored(ident).revision == before  # nothing changed, nothing written
    bad = subprocess.run([sys.executable, "-m", "app", "--data-dir", str(tmp_path / "store"),
                          "extract", "01JD3Q9V6X5J8Z0K2M4N6P8R0T"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("error: no datapoint")


def test_the_service_runs_the_worker_unless_switched_off(service: BenchService) -> None:
    component = make_component(service, RunOptions())
    assert isinstance(component, ExtractComponent)
    save_section(service.paths, "extract", {"enabled": False})
    assert make_component(service, RunOptions()) is None


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _cli(tmp_path: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "app", "--data-dir", str(tmp_path / "store"),
                             *args], capture_output=True, text=True, timeout=120, check=True)
    return result.stdout


def test_a_steady_stream_of_captures_delays_extraction_but_cannot_stop_it(
        service: BenchService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.extract import component as component_module

    monkeypatch.setattr(component_module, "YIELD_MAX_SECONDS", 1.0)
    first = service.capture_file(samples.write_png(tmp_path / "first.png"))
    worker = start_worker(service)
    try:
        captured = 0
        # Captures keep arriving (well within the quiet period) until the first file's
        # header is extracted; without the cap on waiting that would never happen.
        while not extracted(service, first.datapoint_id):
            service.capture_file(_file(tmp_path / f"stream-{captured}.bin", b"%d" % captured))
            captured += 1
            assert captured < 2000, "extraction never got a turn"
    finally:
        worker.stop()
    assert extracted(service, first.datapoint_id)["format"] == "png"
