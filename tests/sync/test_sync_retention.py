"""Retention (issue #11 item 5) over the real SeaweedFS + nx-27017: ``benchdata purge``
frees only local copies whose central copy is verified, a freed file comes back
byte-exact, a dry run says what would be freed and what a wiped PC would lose, and the
facility can lock the retention age."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.service import BenchService
from servers import central_env
from sync.engine import SyncEngine

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from app.cli import main; main()"]


@pytest.fixture
def bench(tmp_path: Path, central: Any, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[BenchService, SyncEngine]]:
    for key, value in central_env(central).items():
        monkeypatch.setenv(key, value)
    with BenchService(tmp_path / "a") as service, SyncEngine(service, central) as engine:
        yield service, engine


def _capture(service: BenchService, folder: Path, name: str, data: bytes) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return service.capture_file(folder / name, label=name).datapoint_id


def _cli(service: BenchService, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--data-dir", str(service.paths.data_dir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _purge_json(service: BenchService, *args: str) -> dict[str, Any]:
    done = _cli(service, "purge", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_purge_frees_only_verified_copies_and_a_freed_file_comes_back(
        bench: tuple[BenchService, SyncEngine], tmp_path: Path) -> None:
    service, engine = bench
    verified, shared = os.urandom(300_000), os.urandom(1000)
    freed_id = _capture(service, tmp_path / "src", "verified.bin", verified)
    _capture(service, tmp_path / "src", "shared-synced.bin", shared)
    report = engine.run_pass(force=True)
    assert report.ok and report.remaining == 0, report
    # Captured after the pass: not verified central. One has the same bytes as a synced file,
    # so the blob they share must stay too.
    unverified = os.urandom(5000)
    lonely_id = _capture(service, tmp_path / "src", "unsynced.bin", unverified)
    twin_id = _capture(service, tmp_path / "src", "shared-unsynced.bin", shared)

    assert _purge_json(service, "--older-than", "1")["freed"]["count"] == 0  # verified today

    dry = _purge_json(service, "--older-than", "0", "--dry-run")
    assert dry["would_free"] == {"count": 1, "bytes": len(verified)}
    lost = dry["would_be_lost_if_wiped"]
    assert [item["datapoint_id"] for item in lost["items"]] == [lonely_id, twin_id]
    assert lost["bytes"] == len(unverified) + len(shared)
    assert all(0 <= item["age_days"] < 1 for item in lost["items"])
    assert service.files.exists(_sha(verified))  # a dry run frees nothing

    done = _cli(service, "purge", "--older-than", "0", "--dry-run")
    assert "would free 1 local copy" in done.stdout
    assert "would be LOST if this PC were wiped now: 2 datapoint(s)" in done.stdout

    assert _purge_json(service, "--older-than", "0")["freed"] == {
        "count": 1, "bytes": len(verified)}
    assert not service.files.exists(_sha(verified))
    assert service.files.exists(_sha(unverified)) and service.files.exists(_sha(shared))
    assert service.get(freed_id) is not None  # the record stays

    with service.open_file(freed_id) as stream:  # fetched again, verified
        assert stream.read() == verified
    assert service.files.exists(_sha(verified))


def test_the_service_frees_with_the_same_policy(bench: tuple[BenchService, SyncEngine],
                                                 central: Any, tmp_path: Path) -> None:
    service, engine = bench
    data = os.urandom(2000)
    ident = _capture(service, tmp_path / "src", "a.bin", data)
    assert engine.run_pass(force=True).ok
    freeing = central.model_copy(update={"free_verified_after_days": 0})
    with SyncEngine(service, freeing) as engine_freeing:
        assert engine_freeing.run_pass(force=True).freed_files == 1
    assert not service.files.exists(_sha(data))
    with service.open_file(ident) as stream:
        assert stream.read() == data


def _lock_site(days: Any) -> None:
    Path(os.environ["BENCHDATA_SITE_CONFIG"]).write_text(json.dumps({
        "central": {"free_verified_after_days": days},
        "locked": ["central.free_verified_after_days"]}), encoding="utf-8")


def test_the_facility_can_lock_the_retention_age(bench: tuple[BenchService, SyncEngine],
                                                  tmp_path: Path) -> None:
    service, engine = bench
    data = os.urandom(2000)
    _capture(service, tmp_path / "src", "kept.bin", data)
    assert engine.run_pass(force=True).ok
    _lock_site(30)

    done = _cli(service, "purge", "--older-than", "0")
    assert done.returncode == 1
    assert "the facility keeps local copies for 30 day(s)" in done.stderr
    assert service.files.exists(_sha(data))

    assert _purge_json(service, "--dry-run")["older_than_days"] == 30  # the locked age
    done = _cli(service, "sync", "configure", "--free-after-days", "0.5")
    assert done.returncode == 1 and "set by the facility" in done.stderr
    with SyncEngine(service) as configured:  # the service reads the locked value too
        assert configured.settings.free_verified_after_days == 30
        assert configured.run_pass(force=True).freed_files == 0
    assert service.files.exists(_sha(data))

    _lock_site(None)
    done = _cli(service, "purge", "--older-than", "100")
    assert done.returncode == 1
    assert "does not allow freeing local copies" in done.stderr
