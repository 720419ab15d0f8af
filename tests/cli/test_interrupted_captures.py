"""Captures a crash cut short are reported, and can be captured again or dismissed.

A real ``benchdata add file`` process is SIGKILLed in the middle of copying a large file
(the crash-trial helpers of tests/cli/test_crash_capture.py); afterwards the capture is
listed (CLI and service), a retry captures it exactly once, and a dismissal forgets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core import capture_notes
from app.core.errors import NotFoundError, SourceMissingError, ValidationError
from app.service import BenchService
from tests.cli.test_crash_capture import CLI, ROOT, Attempt, _kill_when, _start

BIG = 96 * 1024 * 1024


def _big_file(path: Path) -> Path:
    with open(path, "wb") as out:  # incompressible enough, fast to write
        block = os.urandom(1024 * 1024)
        for _ in range(BIG // len(block)):
            out.write(block)
    return path


def _copy_under_way(bench: BenchService) -> bool:
    return any(p.stat().st_size > 4 * 1024 * 1024 for p in bench.files.tmp_dir.glob("*.part"))


def _kill_mid_copy(data_dir: Path, source: Path, label: str) -> None:
    with BenchService(data_dir) as bench:
        process = _start(data_dir, ["file", str(source), "--quiet", "--label", label])
        attempt = Attempt("file", label, None, process, time.monotonic())
        killed = _kill_when([(attempt, lambda: _copy_under_way(bench),
                              time.monotonic() + 120)])
    assert killed == 1 and process.returncode == -9, "the copy ended before the kill"


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", CLI, "--data-dir", str(data_dir), *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def interrupted_bench(tmp_path: Path) -> tuple[Path, Path]:
    data_dir = tmp_path / "bench"
    BenchService(data_dir).close()
    source = _big_file(tmp_path / "run-42.raw")
    _kill_mid_copy(data_dir, source, "run 42")
    return data_dir, source


def test_a_capture_killed_mid_copy_is_listed_then_retried_once(
        interrupted_bench: tuple[Path, Path]) -> None:
    data_dir, source = interrupted_bench
    listed = _cli(data_dir, "interrupted", "--json")
    assert listed.returncode == 0, listed.stderr
    [note] = json.loads(listed.stdout)
    assert note["source"] == str(source)
    assert note["size_bytes"] == BIG
    assert note["front_end"] == capture_notes.COMMAND_LINE
    assert note["can_retry"] is True
    assert "run-42.raw" in _cli(data_dir, "interrupted").stdout
    doctor = _cli(data_dir, "doctor", "--json")
    assert "1 capture(s) were cut short" in doctor.stdout

    retried = _cli(data_dir, "interrupted", "--retry", note["id"])
    assert retried.returncode == 0, retried.stderr
    again = _cli(data_dir, "interrupted", "--retry", note["id"])
    assert again.returncode == 1 and "no interrupted capture" in again.stderr
    with BenchService(data_dir) as bench:
        rows = list(bench.iter_query({"label": "run 42"}))
        assert [r.datapoint_id for r in rows] == [note["datapoint_id"]]
        assert rows[0].size_bytes == BIG
        assert bench.interrupted_captures() == []
        assert not list(bench.files.tmp_dir.iterdir())


def test_dismiss_forgets_an_interrupted_capture(interrupted_bench: tuple[Path, Path]) -> None:
    data_dir, _source = interrupted_bench
    with BenchService(data_dir) as bench:
        [note] = bench.interrupted_captures()
        bench.dismiss_interrupted(note.note_id)
        assert bench.interrupted_captures() == []
        assert bench.count() == 0
        with pytest.raises(NotFoundError):
            bench.dismiss_interrupted(note.note_id)


def test_captures_in_flight_and_finished_ones_are_not_interrupted(tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("hello")
    with BenchService(tmp_path / "bench") as bench:
        seen: list[list[capture_notes.CaptureNote]] = []

        def progress(*_args: object) -> None:
            seen.append(bench.interrupted_captures())

        bench.capture_file(source, progress=progress)
        with pytest.raises(SourceMissingError):
            bench.capture_file(tmp_path / "missing.txt")
        assert seen and all(found == [] for found in seen)  # in flight: not a crash
        assert bench.interrupted_captures() == []
        assert not any(bench.capture_notes.dir.iterdir())


def _left_by_a_dead_process(bench: BenchService, note_id: str, **body: object) -> None:
    """A note as a killed capture leaves it: written, nobody holding its lock."""
    bench.capture_notes.dir.mkdir(parents=True, exist_ok=True)
    (bench.capture_notes.dir / f"{note_id}.json").write_text(json.dumps(
        {"started_at": "2026-12-07T04:00:00.000000Z", **body}))


def test_watched_folder_and_vanished_sources_are_not_offered_again(tmp_path: Path) -> None:
    with BenchService(tmp_path / "bench") as bench:
        _left_by_a_dead_process(bench, "aa", source=str(tmp_path / "w.txt"), size_bytes=3,
                                front_end=capture_notes.WATCHED_FOLDER)
        _left_by_a_dead_process(bench, "bb", source=str(tmp_path / "gone.txt"), size_bytes=3,
                                front_end=capture_notes.WINDOW,
                                datapoint={"datapoint_id": "01JAAAAAAAAAAAAAAAAAAAAAAA"})
        watched, vanished = bench.interrupted_captures()
        assert watched.retry_hint().startswith("the folder watcher") and not watched.can_retry
        assert vanished.retry_hint() == "the source file no longer exists"
        with pytest.raises(ValidationError, match="no longer exists"):
            bench.retry_interrupted(vanished.note_id)
        bench.dismiss_interrupted(watched.note_id)
        assert bench.interrupted_captures() == [vanished]


def test_a_stream_without_a_path_is_noted_as_an_upload(tmp_path: Path) -> None:
    """A spooled upload's ``name`` is a descriptor number, not a path."""
    import tempfile

    with BenchService(tmp_path / "bench") as bench, tempfile.TemporaryFile() as upload:
        upload.write(b"uploaded bytes")
        upload.seek(0)
        seen: list[str] = []
        bench.capture_notes.begin = _spy(bench.capture_notes.begin, seen)  # type: ignore
        captured = bench.capture_stream(upload, filename="u.bin")
        assert bench.value(captured.datapoint_id) == b"uploaded bytes"
        assert seen == ["an upload"]


def _spy(begin, seen: list[str]):  # type: ignore[no-untyped-def]
    def recording(source: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        seen.append(source)
        return begin(source, *args, **kwargs)
    return recording
