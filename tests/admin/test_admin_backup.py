"""``benchdata backup`` / ``restore``: online backup while capturing, safe restore."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.admin.backup import backup, restore
from app.admin.lock import ServiceLock
from app.cli import cli
from app.core.errors import ConflictError
from app.core.paths import bench_paths
from app.service import BenchService


def _capture_until(service: BenchService, stop: threading.Event, errors: list[BaseException],
                   started: threading.Event) -> None:
    number = 0
    try:
        while not stop.is_set():
            service.capture_value({"n": number}, label=f"bg{number}")
            service.capture_stream(io.BytesIO(f"bg {number}".encode() * 100),
                                   filename=f"bg{number}.txt")
            number += 1
            if number == 3:
                started.set()
    except BaseException as exc:  # noqa: BLE001
        errors.append(exc)
        started.set()


def test_backup_while_capturing_then_restore(tmp_path: Path) -> None:
    source = tmp_path / "bench"
    files: dict[str, bytes] = {}
    with BenchService(source) as service:
        before = []
        for number in range(20):
            data = f"file {number} ".encode() * (number * 50 + 1)
            path = tmp_path / f"in{number}.bin"
            path.write_bytes(data)
            datapoint = service.capture_file(path, label=f"f{number}")
            files[datapoint.datapoint_id] = data
            before.append(datapoint.datapoint_id)
        before += [service.capture_value({"i": i}).datapoint_id for i in range(30)]
        service.paths.config_file.write_text('{"watch": {"rules": []}}', encoding="utf-8")

        stop, started, errors = threading.Event(), threading.Event(), []
        worker = threading.Thread(target=_capture_until, args=(service, stop, errors, started))
        worker.start()
        try:
            assert started.wait(20)
            report = backup(service.paths, tmp_path / "backup")
        finally:
            stop.set()
            worker.join(20)
        assert not errors
        assert report.datapoints > len(before) and report.files.copied > len(files)
        # backing up into the same folder again copies only what is new since
        again = backup(service.paths, tmp_path / "backup")
        assert again.files.skipped >= report.files.copied
        assert backup(service.paths, tmp_path / "backup").files.copied == 0

    target = bench_paths(tmp_path / "restored")
    restored = restore(target, tmp_path / "backup")
    assert restored.datapoints == again.datapoints and restored.config
    with BenchService(target.data_dir) as service:
        assert service.store.integrity_check() == "ok"
        for datapoint_id in before:
            service.get(datapoint_id)
        with service.store.reader() as conn:
            digests = [row[0] for row in conn.execute(
                "SELECT sha256 FROM datapoints WHERE sha256 IS NOT NULL")]
        assert len(digests) > len(files)  # background captures included
        assert all(service.files.verify(digest) for digest in digests)
        for datapoint_id, data in files.items():
            with service.open_file(datapoint_id) as handle:
                assert hashlib.sha256(handle.read()).digest() == hashlib.sha256(data).digest()
    assert target.config_file.read_text(encoding="utf-8") == '{"watch": {"rules": []}}'


def test_restore_refuses_running_service_and_non_empty_store(tmp_path: Path) -> None:
    with BenchService(tmp_path / "bench") as service:
        kept = service.capture_value({"old": True}).datapoint_id
        backup(service.paths, tmp_path / "backup")
        service.capture_value({"new": True})
        paths = service.paths
    with ServiceLock(paths):
        with pytest.raises(ConflictError, match="already running.*stopped first"):
            restore(paths, tmp_path / "backup", force=True)
    with pytest.raises(ConflictError, match="--force"):
        restore(paths, tmp_path / "backup")
    result = CliRunner().invoke(cli, ["--data-dir", str(paths.data_dir), "restore",
                                      str(tmp_path / "backup")])
    assert result.exit_code == 1 and "--force" in result.output
    result = CliRunner().invoke(cli, ["--data-dir", str(paths.data_dir), "restore", "--force",
                                      str(tmp_path / "backup")])
    assert result.exit_code == 0, result.output
    with BenchService(paths.data_dir) as service:
        assert service.count() == 1 and service.get(kept)


def test_backup_command(tmp_path: Path) -> None:
    with BenchService(tmp_path / "bench") as service:
        service.capture_value(1)
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "bench"), "backup",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Backed up 1 datapoint(s)" in result.output
    conn = sqlite3.connect(tmp_path / "out" / "store.sqlite3")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "bench"), "backup",
                                      str(tmp_path / "bench" / "inside")])
    assert result.exit_code == 1 and "outside the data directory" in result.output
