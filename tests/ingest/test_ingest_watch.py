"""The folder watcher with real files, the real store and real watchdog observers."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import SourceUnreadableError
from app.core.models import FileDataPoint
from app.ingest.ledger import Ledger, LedgerEntry
from app.service import BenchService

#: watchdog 7's inotify reader warns (RuntimeWarning) when a folder's watch is added twice
#: as folders are created in quick succession, and carries on. Under ``filterwarnings =
#: error`` that warning would become an exception that kills watchdog's reader thread —
#: a test-only failure (the watcher detects and restarts a dead reader; see
#: test_a_dead_inotify_reader_is_detected).
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

Start = Callable[..., Any]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def slow_write(path: Path, chunks: int, delay: float, size: int = 4096) -> list[float]:
    """An instrument writing ``chunks`` pieces ``delay`` seconds apart; returns write times."""
    times = []
    with open(path, "ab") as out:
        for index in range(chunks):
            out.write(bytes([65 + index % 26]) * size)
            out.flush()
            times.append(time.time())
            if index < chunks - 1:
                time.sleep(delay)  # the instrument's pace, not a wait for the code under test
    return times


@pytest.mark.parametrize("observer", ["native", "polling"])
def test_a_slowly_written_file_is_captured_once_after_its_last_write(
        start_watch: Start, watched: Path, service: BenchService, observer: str) -> None:
    h = start_watch(observer=observer, poll_interval=0.1, quiet_seconds=0.5)
    h.wait_first_scan()
    target = watched / "spectrum.csv"
    times = slow_write(target, chunks=8, delay=0.3)  # 2.1 s of writing, pauses < quiet

    [datapoint] = h.wait_captured(1, "spectrum.csv")
    captured_event = h.of_kind("captured", "spectrum.csv")[0]
    assert captured_event.at >= times[-1] + 0.5  # not before the quiet period after the last write
    assert datapoint.sha256 == sha256_of(target)
    assert datapoint.size_bytes == 8 * 4096
    with service.open_file(datapoint.datapoint_id) as stored:
        assert stored.read() == target.read_bytes()

    h.rescan_and_wait()
    assert len(h.captured()) == 1
    assert service.count() == 1


def test_write_to_a_temporary_name_then_rename_is_one_capture(
        start_watch: Start, watched: Path, service: BenchService) -> None:
    h = start_watch()
    h.wait_first_scan()
    partial = watched / "result.csv.part"
    slow_write(partial, chunks=4, delay=0.15)
    os.replace(partial, watched / "result.csv")
    for ignored in ("~$result.csv", ".result.csv.swp", "scratch.tmp", ".hidden.csv"):
        (watched / ignored).write_text("temporary")

    [datapoint] = h.wait_captured(1, "result.csv")
    assert datapoint.filename == "result.csv"
    assert datapoint.sha256 == sha256_of(watched / "result.csv")
    h.rescan_and_wait()
    assert [e.rel_path for e in h.of_kind("captured")] == ["result.csv"]


def test_a_burst_of_1000_files_gives_1000_datapoints_without_duplicates(
        start_watch: Start, watched: Path, service: BenchService) -> None:
    h = start_watch(quiet_seconds=0.3)
    h.wait_first_scan()
    for folder in range(10):
        (watched / f"plate{folder}").mkdir()
        for well in range(100):
            (watched / f"plate{folder}" / f"well{well:03d}.txt").write_text(f"{folder}-{well}\n")

    h.wait_captured(1000, timeout=120)
    h.rescan_and_wait()
    paths = [e.rel_path for e in h.of_kind("captured")]
    assert len(paths) == 1000 and len(set(paths)) == 1000
    assert service.count() == 1000
    assert h.component.ledger.count("rule1") == 1000


def test_files_that_arrived_while_the_service_was_stopped_are_captured_at_start(
        service: BenchService, watched: Path, start_watch: Start) -> None:
    (watched / "before.csv").write_text("captured in the first run")
    first = start_watch()
    first.wait_captured(1, "before.csv")
    first.stop()

    (watched / "offline1.csv").write_text("arrived while stopped")
    (watched / "sub").mkdir()
    (watched / "sub" / "offline2.csv").write_text("also while stopped")

    second = start_watch()
    second.wait_captured(2)
    second.rescan_and_wait()
    assert sorted(e.rel_path for e in second.of_kind("captured")) == ["offline1.csv",
                                                                      "sub/offline2.csv"]
    assert service.count() == 3


def test_a_modified_file_becomes_a_new_version_that_replaces_the_old_one(
        start_watch: Start, watched: Path, service: BenchService) -> None:
    target = watched / "run.csv"
    target.write_text("first result\n")
    h = start_watch()
    [first] = h.wait_captured(1, "run.csv")

    with open(target, "a") as out:
        out.write("second result\n")
    second = h.wait_captured(2, "run.csv")[1]
    assert second.datapoint_id != first.datapoint_id
    assert second.replaces == first.datapoint_id
    assert service.get(second.datapoint_id).replaces == first.datapoint_id  # stored
    assert second.sha256 == sha256_of(target)
    assert h.component.ledger.lookup("rule1", "run.csv").datapoint_id == second.datapoint_id

    # Touched, same content: no new datapoint, the ledger just learns the new mtime.
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    h.wait_event("unchanged", "run.csv")
    h.rescan_and_wait()
    assert len(h.captured()) == 2 and service.count() == 2


def test_a_folder_captured_as_one_dataset_archive(
        start_watch: Start, watched: Path, service: BenchService) -> None:
    h = start_watch(datasets=True, quiet_seconds=0.5, label_template="NMR {name}")
    h.wait_first_scan()
    experiment = watched / "exp7"
    (experiment / "pdata" / "1").mkdir(parents=True)
    (experiment / "acqus").write_text("##TITLE= parameters\n")
    slow_write(experiment / "fid", chunks=4, delay=0.2)
    (experiment / "pdata" / "1" / "1r").write_bytes(b"\x00\x01" * 1000)
    (experiment / "pdata" / "1" / "1r.tmp").write_text("partial")

    [datapoint] = h.wait_captured(1, "exp7")
    assert datapoint.label == "NMR exp7"
    assert datapoint.filename == "exp7.zip" and datapoint.content_type == "application/zip"
    assert datapoint.custom_metadata["ingest_kind"] == "dataset"
    assert datapoint.custom_metadata["dataset_files"] == "3"
    with service.open_file(datapoint.datapoint_id) as stored:
        archive = zipfile.ZipFile(io.BytesIO(stored.read()))
    assert sorted(archive.namelist()) == ["acqus", "fid", "pdata/1/1r"]
    assert archive.read("fid") == (experiment / "fid").read_bytes()

    # Another file in the dataset later: a new version that replaces the first.
    (experiment / "pdata" / "1" / "procs").write_text("##TITLE= processing\n")
    second = h.wait_captured(2, "exp7")[1]
    assert second.replaces == datapoint.datapoint_id
    h.rescan_and_wait()
    assert service.count() == 2


def test_path_template_maps_folders_onto_ownership_and_metadata(
        start_watch: Start, watched: Path, service: BenchService) -> None:
    h = start_watch(path_template="{experiment}/{sample}/*", label_template="{sample} {stem}",
                    metadata={"user_id": "alice", "instrument": "UV-1800"})
    h.wait_first_scan()
    (watched / "EXP42" / "S7").mkdir(parents=True)
    (watched / "EXP42" / "S7" / "absorbance.csv").write_text("nm,abs\n")
    (watched / "stray.csv").write_text("not where the convention says\n")

    [matched] = h.wait_captured(1, "EXP42/S7/absorbance.csv")
    [stray] = h.wait_captured(1, "stray.csv")
    assert matched.label == "S7 absorbance"
    assert matched.ownership_info.experiment_id == service.names.resolve("experiment", "EXP42")
    assert matched.ownership_info.user_id == service.names.resolve("user", "alice")
    assert matched.custom_metadata["experiment_name"] == "EXP42"
    assert matched.custom_metadata["user_name"] == "alice"
    assert matched.custom_metadata["sample"] == "S7"
    assert matched.custom_metadata["instrument"] == "UV-1800"
    assert matched.custom_metadata["template_match"] == "yes"
    assert stray.custom_metadata["template_match"] == "no"
    assert stray.label == "stray.csv"  # the label needs {sample}: falls back to the name
    assert stray.ownership_info.user_id == matched.ownership_info.user_id
    assert service.count({"custom_metadata.template_match": "no"}) == 1


def test_a_file_that_vanishes_before_it_is_complete_is_reported_not_captured(
        start_watch: Start, watched: Path, service: BenchService, wait: Any) -> None:
    h = start_watch(quiet_seconds=1.0)
    h.wait_first_scan()
    doomed = watched / "doomed.csv"
    doomed.write_text("here for a moment")
    wait(lambda: h.status().waiting == 1, what="the file to be tracked")
    doomed.unlink()
    h.wait_event("vanished", "doomed.csv")
    (watched / "kept.csv").write_text("stays")
    h.wait_captured(1, "kept.csv")
    h.rescan_and_wait()
    assert [e.rel_path for e in h.of_kind("captured")] == ["kept.csv"]


def test_an_unreadable_file_is_retried_and_reported_until_it_can_be_read(
        start_watch: Start, watched: Path, service: BenchService,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Root can read any file, so the refusal is injected at the file store (the one
    place that opens sources); the watcher sees the same error a locked share gives."""
    real_put_file = service.files.put_file
    refusals = {"count": 0}

    def refuse_twice(source: Any, **kwargs: Any) -> Any:
        if Path(source).name == "guarded.csv" and refusals["count"] < 2:
            refusals["count"] += 1
            raise SourceUnreadableError(f"{source} cannot be read (Permission denied)")
        return real_put_file(source, **kwargs)

    monkeypatch.setattr(service.files, "put_file", refuse_twice)
    h = start_watch()
    (watched / "guarded.csv").write_text("readable later")
    (watched / "open.csv").write_text("readable now")

    problem = h.wait_event("problem", "guarded.csv")
    assert "cannot be read" in problem.message
    h.wait_captured(1, "open.csv")
    [datapoint] = h.wait_captured(1, "guarded.csv")
    assert refusals["count"] == 2
    assert datapoint.sha256 == sha256_of(watched / "guarded.csv")
    h.wait_event("resolved", "guarded.csv")
    assert h.status().problems == {}


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="needs a POSIX user that file permissions apply to")
def test_a_file_without_read_permission_is_retried(
        start_watch: Start, watched: Path) -> None:
    guarded = watched / "guarded.csv"
    guarded.write_text("secret for now")
    guarded.chmod(0)
    h = start_watch()
    h.wait_event("problem", "guarded.csv")
    guarded.chmod(0o644)
    h.wait_captured(1, "guarded.csv")


def test_lock_test_waits_until_the_writer_releases_its_lock(
        start_watch: Start, watched: Path) -> None:
    h = start_watch(lock_test=True)
    h.wait_first_scan()
    locked = watched / "locked.csv"
    with open(locked, "wb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
        writer.write(b"written under an exclusive lock")
        writer.flush()
        (watched / "free.csv").write_text("nobody holds this one")
        h.wait_captured(1, "free.csv")
        assert h.captured("locked.csv") == []
        assert h.status().waiting == 1
    [datapoint] = h.wait_captured(1, "locked.csv")
    assert datapoint.size_bytes == len(b"written under an exclusive lock")


def test_a_marker_file_says_when_a_file_is_complete(
        start_watch: Start, watched: Path, wait: Any) -> None:
    h = start_watch(marker="{name}.done")
    h.wait_first_scan()
    (watched / "run1.raw").write_bytes(b"\x00" * 1000)
    (watched / "run2.raw").write_bytes(b"\x01" * 1000)
    (watched / "run2.raw.done").write_text("")
    h.wait_captured(1, "run2.raw")
    assert h.captured("run1.raw") == []
    (watched / "run1.raw.done").write_text("")
    h.wait_captured(1, "run1.raw")
    h.rescan_and_wait()
    assert sorted(e.rel_path for e in h.of_kind("captured")) == ["run1.raw", "run2.raw"]


def test_a_removed_folder_is_reported_missing_and_watched_again_when_restored(
        start_watch: Start, watched: Path, service: BenchService, tmp_path: Path) -> None:
    (watched / "a.csv").write_text("before the share went away")
    h = start_watch()
    [first] = h.wait_captured(1, "a.csv")

    parked = tmp_path / "parked"
    os.rename(watched, parked)  # the share is unmounted
    h.wait_event("missing")
    assert h.status().state == "missing"
    assert service.get(first.datapoint_id)  # nothing was treated as deleted

    (parked / "b.csv").write_text("written while the share was away")
    os.rename(parked, watched)  # the share is back
    h.wait_event("restored")
    h.wait_captured(1, "b.csv")
    h.rescan_and_wait()
    assert sorted(e.rel_path for e in h.of_kind("captured")) == ["a.csv", "b.csv"]
    assert h.status().state == "watching"


def test_a_dead_observer_is_restarted_and_the_folder_rescanned(
        start_watch: Start, watched: Path) -> None:
    h = start_watch()
    h.wait_first_scan()
    worker = h.component.worker("rule1")
    observer = worker.observer
    assert observer is not None
    observer.stop()  # as if its thread had died on an exception
    observer.join(10)
    (watched / "after.csv").write_text("written while the observer was dead")
    h.wait_event("observer_restarted")
    h.wait_captured(1, "after.csv")
    assert worker.observer is not None and worker.observer is not observer


def test_an_interrupted_capture_is_finished_at_start_not_repeated(
        service: BenchService, watched: Path, start_watch: Start) -> None:
    """A crash after the datapoint commit but before the ledger row: the intent written
    before the datapoint lets the next start finish the ledger instead of capturing again."""
    committed = watched / "committed.csv"
    committed.write_text("the datapoint of this one was committed")
    lost = watched / "lost.csv"
    lost.write_text("the datapoint of this one was not")
    ledger = Ledger(service.store)

    datapoint = service.submit(FileDataPoint(path=str(committed)))
    stat = committed.stat()
    ledger.begin([LedgerEntry("rule1", "committed.csv", stat.st_size, stat.st_mtime_ns,
                              str(datapoint.sha256), datapoint.datapoint_id)])
    ledger.begin([LedgerEntry("rule1", "lost.csv", lost.stat().st_size,
                              lost.stat().st_mtime_ns, "0" * 64, "01JD3Q9V6X5J8Z0K2M4N6P8R0T")])

    h = start_watch()
    h.wait_captured(1, "lost.csv")
    h.rescan_and_wait()
    assert [e.rel_path for e in h.of_kind("captured")] == ["lost.csv"]
    assert ledger.lookup("rule1", "committed.csv").datapoint_id == datapoint.datapoint_id
    assert ledger.pending_count() == 0
    assert service.count() == 2


def test_files_above_the_dataset_level_and_empty_folders_are_not_datasets(
        start_watch: Start, watched: Path) -> None:
    h = start_watch(datasets=True)
    (watched / "loose.txt").write_text("a file directly in the watched folder")
    (watched / "empty").mkdir()
    (watched / "full").mkdir()
    (watched / "full" / "data.bin").write_bytes(b"1234")
    h.wait_captured(1, "full")
    h.rescan_and_wait()
    assert [e.rel_path for e in h.of_kind("captured")] == ["full"]


@pytest.mark.allow_error_logs  # a listener that raises on purpose is logged
def test_the_service_keeps_going_when_a_listener_fails(
        start_watch: Start, watched: Path) -> None:
    h = start_watch()

    def broken(_event: Any) -> None:
        raise RuntimeError("a listener bug")

    h.component.add_listener(broken)
    (watched / "x.csv").write_text("x")
    h.wait_captured(1, "x.csv")


def test_a_dead_inotify_reader_is_detected(start_watch: Start, watched: Path) -> None:
    """The emitters of a dead inotify reader look alive but hear nothing."""
    h = start_watch()
    h.wait_first_scan()
    observer = h.component.worker("rule1").observer
    reader = getattr(observer, "_inotify_fd", None)
    if reader is None:
        pytest.skip("not watchdog's inotify observer")
    reader.stop()  # as if an exception had killed its thread
    reader.join(10)
    h.wait_event("observer_restarted")
    (watched / "heard.csv").write_text("after the restart")
    h.wait_captured(1, "heard.csv")
