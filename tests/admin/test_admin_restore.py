"""Restore is atomic (old store or new, never rows without files), doctor finds a missing
or damaged file, and a backup is fsynced before it says it is done."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app.admin import backup as backup_module
from app.admin.backup import backup, restore
from app.cli import cli
from app.core.paths import bench_paths
from app.service import BenchService

ROOT = Path(__file__).resolve().parents[2]
NEW_ROWS = 150
OLD_ROWS = 8


def _fill(data_dir: Path, files: int, values: int, tag: str) -> None:
    import io

    with BenchService(data_dir) as service:
        for number in range(files):
            data = f"{tag} {number} ".encode() + os.urandom(16 * 1024)
            service.capture_stream(io.BytesIO(data), filename=f"{tag}{number}.bin")
        for number in range(values):
            service.capture_value({tag: number})


def check_consistent(data_dir: Path) -> int:
    """Independently of the app: every live file row's blob is there and hashes right.
    Returns the number of live rows."""
    conn = sqlite3.connect(data_dir / "store.sqlite3")
    try:
        count = conn.execute("SELECT COUNT(*) FROM datapoints WHERE deleted = 0").fetchone()[0]
        digests = [row[0] for row in conn.execute(
            "SELECT sha256 FROM datapoints WHERE deleted = 0 AND data_type = 'file'")]
    finally:
        conn.close()
    for digest in digests:
        blob = data_dir / "files" / "blobs" / digest[:2] / digest[2:4] / digest
        assert blob.is_file(), f"a row's file is missing ({digest}) of {count} rows"
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest
    return int(count)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A backup of 150 file datapoints, and an older store (8 rows) to restore over."""
    root = tmp_path_factory.mktemp("restore")
    _fill(root / "source", NEW_ROWS, 0, "new")
    backup(bench_paths(root / "source"), root / "backup")
    _fill(root / "old", OLD_ROWS // 2, OLD_ROWS // 2, "old")
    return {"backup": root / "backup", "old": root / "old"}


def _old_copy(stores: dict[str, Path], target: Path) -> Path:
    shutil.copytree(stores["old"], target)
    assert check_consistent(target) == OLD_ROWS
    return target


def test_restore_interrupted_while_copying_files_keeps_the_old_store(
        stores: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after 64 files (the issue's trial: 150 rows, 64 blobs) leaves the old store."""
    target = _old_copy(stores, tmp_path / "bench")
    copied = []
    real_copyfile = shutil.copyfile

    def crash_after_64(src: Any, dst: Any, **kwargs: Any) -> Any:
        if len(copied) == 64:
            raise KeyboardInterrupt("power cut")
        copied.append(src)
        return real_copyfile(src, dst, **kwargs)

    monkeypatch.setattr(backup_module.shutil, "copyfile", crash_after_64)
    with pytest.raises(KeyboardInterrupt):
        restore(bench_paths(target), stores["backup"], force=True)
    assert check_consistent(target) == OLD_ROWS
    code, checks = _doctor_json(target)
    assert checks["restore"]["status"] == "WARN" and "interrupted" in checks["restore"]["detail"]
    assert checks["stored files"]["status"] == "OK"
    monkeypatch.setattr(backup_module.shutil, "copyfile", real_copyfile)
    report = restore(bench_paths(target), stores["backup"], force=True)  # again: completes
    assert report.datapoints == NEW_ROWS and check_consistent(target) == NEW_ROWS
    assert not (target / backup_module.STAGING_NAME).exists()
    kept = target / ("store.sqlite3" + backup_module.BEFORE_RESTORE_SUFFIX)
    with sqlite3.connect(kept) as conn:  # the replaced store is kept beside
        assert conn.execute("SELECT COUNT(*) FROM datapoints").fetchone()[0] == OLD_ROWS
    with BenchService(target) as service:
        assert service.count() == NEW_ROWS


def _restore_process(target: Path, backup_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "app", "--data-dir", str(target),
                             "restore", "--force", str(backup_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_until_staging(process: subprocess.Popen[bytes], target: Path) -> bool:
    """Until the restore has begun (its staging folder exists); False if it ended first."""
    staging = target / backup_module.STAGING_NAME
    deadline = time.monotonic() + 60
    while not staging.exists():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the restore never started"
        time.sleep(0.001)
    return True


@pytest.mark.slow
def test_restore_killed_at_random_points_leaves_old_or_new(stores: dict[str, Path],
                                                           tmp_path: Path) -> None:
    # How long a restore runs once it has begun: the range the kills are drawn from.
    calibration = _old_copy(stores, tmp_path / "calibration")
    process = _restore_process(calibration, stores["backup"])
    assert _wait_until_staging(process, calibration)
    began = time.monotonic()
    assert process.wait(120) == 0
    span = max(time.monotonic() - began, 0.05)
    assert check_consistent(calibration) == NEW_ROWS

    rng = random.Random(14)
    outcomes = []
    for trial in range(6):
        target = _old_copy(stores, tmp_path / f"trial{trial}")
        process = _restore_process(target, stores["backup"])
        if _wait_until_staging(process, target):
            time.sleep(rng.uniform(0, span))  # the kill point, not a synchronisation
            process.send_signal(signal.SIGKILL)
        process.wait(60)
        rows = check_consistent(target)
        assert rows in (OLD_ROWS, NEW_ROWS)
        outcomes.append(rows)
    # Whatever was interrupted, the next restore finishes the job.
    assert _restore_process(target, stores["backup"]).wait(120) == 0
    assert check_consistent(target) == NEW_ROWS
    assert OLD_ROWS in outcomes, f"no kill landed before the swap: {outcomes}"


def _doctor_json(data_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "doctor", "--json", *args])
    report = json.loads(result.output)
    return result.exit_code, {c["name"]: c for c in report["checks"]}


@pytest.mark.parametrize("full", [False, True])
def test_doctor_finds_a_missing_and_a_damaged_file(tmp_path: Path, full: bool) -> None:
    data_dir = tmp_path / "bench"
    _fill(data_dir, 5, 2, "d")
    args = ("--full",) if full else ()
    name = "stored files (all)" if full else "stored files"
    code, checks = _doctor_json(data_dir, *args)
    assert checks[name]["status"] == "OK", checks[name]
    with sqlite3.connect(data_dir / "store.sqlite3") as conn:
        rows = conn.execute("SELECT id, sha256 FROM datapoints WHERE data_type = 'file' "
                            "ORDER BY id").fetchall()
    blobs = [data_dir / "files" / "blobs" / sha[:2] / sha[2:4] / sha for _, sha in rows]
    blobs[0].unlink()
    code, checks = _doctor_json(data_dir, *args)
    assert code == 1 and checks[name]["status"] == "FAIL"
    assert f"1 file(s) missing (e.g. datapoint {rows[0][0]})" in checks[name]["detail"]
    blobs[1].chmod(0o644)
    blobs[1].write_bytes(b"rotted bits")
    code, checks = _doctor_json(data_dir, *args)
    assert code == 1 and "1 file(s) damaged" in checks[name]["detail"]
    assert rows[1][0] in checks[name]["detail"]


def test_backup_fsyncs_every_file_and_directory_before_it_says_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit test of the fsync path (os.fsync recorded, then called for real)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the descriptors that were fsynced")
    _fill(tmp_path / "bench", 6, 1, "f")
    paths = bench_paths(tmp_path / "bench")
    paths.config_file.write_text('{"disk": {"low_space_mb": 10}}', encoding="utf-8")
    synced: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    dest = tmp_path / "backup"
    backup(paths, dest)

    def final_name(path: Path) -> Path:  # temp names become the final ones by a rename
        name = path.name.removesuffix(".copying").removesuffix(".partial")
        if name.startswith(".") and name.endswith(".part"):
            name = name[1:].rsplit(".", 2)[0]
        return path.with_name(name)

    durable = [final_name(path) for path in synced]
    files = {path for path in dest.rglob("*") if path.is_file()}
    directories = {dest, *(path for path in dest.rglob("*") if path.is_dir())}
    assert files <= set(durable), sorted(files - set(durable))
    assert directories <= set(durable), sorted(directories - set(durable))
    manifest = durable.index(dest / "backup.json")
    blobs = [i for i, path in enumerate(durable) if "blobs" in path.parts]
    assert blobs and max(blobs) < manifest and durable[-1] == dest
