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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.ingest import originals
from app.ingest.component import IngestComponent
from app.ingest.rules import WatchRule
from app.ingest.watcher import WorkerOptions
from app.service import BenchService
from tests.support.servers import central_env
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


# -- the instrument's originals (opt-in per watched folder) -------------------------------

FAST = WorkerOptions(liveness_interval=0.1, retry_base=0.2, retry_max=1.0, marker_recheck=0.05)


def _wait(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _watch(service: BenchService, rule: WatchRule) -> IngestComponent:
    component = IngestComponent(service, [rule], options=FAST)
    component.start()
    return component


def _rescan(component: IngestComponent, rule_id: str) -> None:
    """One more full scan (and the sweep after it), done."""
    scans = component.worker(rule_id).status().scans
    component.rescan(rule_id)
    _wait(lambda: component.worker(rule_id).status().scans > scans, "a rescan")


def _captured(service: BenchService) -> int:
    return service.count({"data_type": "file"})


def test_originals_are_let_go_only_when_verified_unchanged_and_inside_the_folder(
        bench: tuple[BenchService, SyncEngine], tmp_path: Path) -> None:
    service, engine = bench
    watched, outside, archive = tmp_path / "instrument", tmp_path / "outside", tmp_path / "archive"
    (watched / "sub").mkdir(parents=True)
    outside.mkdir()
    files = {"a.csv": b"a" * 1000, "changed.csv": b"c" * 1000, "sub/linked.csv": b"l" * 500,
             "moved.csv": b"m" * 10}
    for rel, data in files.items():
        (watched / rel).write_bytes(data)
    rule = WatchRule(id="inst", path=str(watched), quiet_seconds=0.2, observer="polling",
                     poll_interval=0.2, originals_after_days=0)
    component = _watch(service, rule)
    try:
        _wait(lambda: _captured(service) == len(files), "the captures")
        # Captured, not yet verified central: nothing is let go.
        assert originals.sweep(service.store, rule) == ([], {})
    finally:
        component.stop()
    assert engine.run_pass(force=True).ok

    # Changed after capture with the same size and mtime restored: must stay.
    before = os.stat(watched / "changed.csv")
    (watched / "changed.csv").write_bytes(b"X" * 1000)
    os.utime(watched / "changed.csv", ns=(before.st_atime_ns, before.st_mtime_ns))
    # A folder swapped for a link to elsewhere: the link is never followed.
    (watched / "sub" / "linked.csv").rename(outside / "linked.csv")
    (watched / "sub").rmdir()
    (watched / "sub").symlink_to(outside, target_is_directory=True)

    moving = WatchRule(**{**rule.model_dump(), "originals_action": "move",
                          "originals_move_to": str(archive)})
    assert originals.due(service.store, rule.model_copy(update={"originals_after_days": 1})) == []
    done, kept = originals.sweep(service.store, moving)
    assert sorted((d.rel_path, d.action) for d in done) == [("a.csv", "moved"),
                                                             ("moved.csv", "moved")]
    assert (archive / "a.csv").read_bytes() == files["a.csv"]
    assert not (watched / "a.csv").exists()
    assert (watched / "changed.csv").read_bytes() == b"X" * 1000
    assert "changed since it was captured" in kept["changed.csv"]
    assert (outside / "linked.csv").read_bytes() == files["sub/linked.csv"]
    assert "link" in kept["sub/linked.csv"]
    assert originals.sweep(service.store, moving)[0] == []  # recorded: not again


def test_the_watcher_removes_originals_after_a_scan_and_says_so(
        bench: tuple[BenchService, SyncEngine], tmp_path: Path) -> None:
    service, engine = bench
    watched = tmp_path / "instrument"
    watched.mkdir()
    (watched / "old.csv").write_bytes(b"old")
    plain = WatchRule(id="inst", path=str(watched), quiet_seconds=0.2, observer="polling",
                      poll_interval=0.2)
    component = _watch(service, plain)  # not opted in: nothing is ever removed
    try:
        _wait(lambda: _captured(service) == 1, "the capture")
        assert engine.run_pass(force=True).ok
        _rescan(component, plain.id)
        assert (watched / "old.csv").exists()
    finally:
        component.stop()

    (watched / "new.csv").write_bytes(b"new, not yet synced")
    opted = WatchRule(**{**plain.model_dump(), "originals_after_days": 0})
    component = _watch(service, opted)
    try:
        _wait(lambda: _captured(service) == 2, "the new capture")
        _wait(lambda: component.worker(opted.id).status().originals_let_go == 1, "the removal")
        status = component.worker(opted.id).status()
        assert status.last_original == "removed old.csv"
        _rescan(component, opted.id)
    finally:
        component.stop()
    assert not (watched / "old.csv").exists()
    assert (watched / "new.csv").exists()  # not verified central
    assert originals.let_go_summary(service.store, opted.id).startswith(
        "1 original(s) let go, the last at ")
    assert originals.let_go_summary(service.store, opted.id).endswith(": removed old.csv")


def test_a_bench_that_never_synced_frees_nothing_and_would_lose_everything(
        tmp_path: Path) -> None:
    with BenchService(tmp_path / "lonely") as service:
        ident = _capture(service, tmp_path / "src", "only-here.bin", b"x" * 100)
        report = _purge_json(service, "--older-than", "0", "--dry-run")
    assert report["would_free"] == {"count": 0, "bytes": 0}
    assert [i["datapoint_id"] for i in report["would_be_lost_if_wiped"]["items"]] == [ident]
