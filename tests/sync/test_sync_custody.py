"""Custody receipts and ``benchdata verify`` over the real SeaweedFS + nx-27017 (issue #11
items 3 and 4).

A file's receipt says what was captured, uploaded and verified central, and
``safe_to_delete`` turns true only once the central copy is verified; the CLI and REST show
the same receipt. ``verify`` finds a local blob with one byte flipped and a central object
deleted behind the bench's back (exit 1, the datapoint named), and ``verify --repair``
heals both from the verified copy on the other side.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.servers import central_env
from tests.support.waiting import wait_until

from app.api.server import ApiServer
from app.core import custody
from app.service import BenchService
from sync.engine import SyncEngine, sync_status
from sync.objects import ObjectStore
from sync.verify import MIB, RateLimiter, ScrubComponent, Scrubber, VerifySettings, \
    next_scrub_due

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from app.cli import main; main()"]


@pytest.fixture
def configured(central: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = central_env(central)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def bench(tmp_path: Path, central: Any, configured: dict[str, str]
          ) -> Iterator[tuple[BenchService, SyncEngine]]:
    with BenchService(tmp_path / "bench") as service, SyncEngine(service, central) as engine:
        yield service, engine


def _capture(service: BenchService, folder: Path, name: str, data: bytes) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return service.capture_file(folder / name, label=name).datapoint_id


def _sync(engine: SyncEngine) -> None:
    report = engine.run_pass(force=True)
    assert report.ok and report.remaining == 0, report


def _cli(service: BenchService, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--data-dir", str(service.paths.data_dir), *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=300)


def _verify(service: BenchService, *args: str) -> tuple[int, dict[str, Any]]:
    done = _cli(service, "verify", "--json", *args)
    return done.returncode, json.loads(done.stdout)


def _problem_ids(report: dict[str, Any], where: str) -> set[str]:
    return {i for p in report["problems"] if p["where"] == where for i in p["datapoint_ids"]}


def _flip_one_byte(path: Path) -> None:
    """Bit rot: one byte changes in place (the blob is read-only, as the store keeps it)."""
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IWUSR)
    with open(path, "r+b") as blob:
        blob.seek(path.stat().st_size // 2)
        byte = blob.read(1)
        blob.seek(-1, os.SEEK_CUR)
        blob.write(bytes([byte[0] ^ 0x01]))
    path.chmod(mode)


def test_receipt_before_and_after_sync_in_the_cli_and_rest(
        bench: tuple[BenchService, SyncEngine], tmp_path: Path) -> None:
    service, engine = bench
    data = os.urandom(300_000)
    ident = _capture(service, tmp_path / "instrument" / "run 1", "spectrum.bin", data)

    before = service.custody(ident)
    assert before is not None
    assert before["captured"]["here"] is True
    assert before["captured"]["size_bytes"] == len(data)
    assert before["captured"]["source_path"] == str(tmp_path / "instrument" / "run 1" /
                                                    "spectrum.bin")
    assert before["local_copy"]["held"] and before["local_copy"]["how"] == "captured"
    assert before["uploaded"] is None and before["central_verified"] is None
    assert before["safe_to_delete"] is False
    assert not custody.central_verified(service.store, ident)

    _sync(engine)
    after = service.custody(ident)
    assert after is not None
    assert after["captured"] == before["captured"]
    assert after["uploaded"]["bucket"] == engine.settings.bucket
    assert ident in after["uploaded"]["object_name"]
    assert after["central_verified"]["how"] == "read-back"
    assert after["safe_to_delete"] is True
    assert custody.central_verified(service.store, ident)

    shown = _cli(service, "get", ident, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["custody"] == after
    with ApiServer(service, port=0) as api:
        answer = httpx.get(f"{api.url}datapoint/{ident}", timeout=30).json()
        value = service.capture_value({"t": 1}, label="a value")
        plain = httpx.get(f"{api.url}datapoint/{value.datapoint_id}", timeout=30).json()
    assert answer["custody"] == after
    assert "custody" not in plain  # a JSON value has no file to keep custody of


def test_verify_finds_a_flipped_byte_and_repair_heals_it_from_the_central_copy(
        bench: tuple[BenchService, SyncEngine], tmp_path: Path) -> None:
    service, engine = bench
    data = os.urandom(2 * MIB + 17)
    ident = _capture(service, tmp_path / "src", "run.raw", data)
    other = _capture(service, tmp_path / "src", "intact.raw", os.urandom(1000))
    _sync(engine)
    code, report = _verify(service)
    assert code == 0 and report["ok"] and report["blobs"] == 2, report
    shown = _cli(service, "verify")  # the text form, with progress on stderr
    assert shown.returncode == 0 and "all intact" in shown.stdout, shown.stderr
    assert "verify: local" in shown.stderr

    sha256 = str(service.get(ident).sha256)  # type: ignore[attr-defined]
    _flip_one_byte(service.files.path_for(sha256))
    code, report = _verify(service)
    assert code == 1, report
    assert _problem_ids(report, "local") == {ident}
    receipt = service.custody(ident)
    assert receipt is not None and receipt["last_scrub"]["local"]["ok"] is False
    assert service.custody(other)["last_scrub"]["local"]["ok"] is True  # type: ignore[index]

    code, report = _verify(service, "--repair")
    assert code == 0, report
    assert [p["repaired"] for p in report["problems"]] == [True]
    assert service.files.path_for(sha256).read_bytes() == data
    code, report = _verify(service)
    assert code == 0 and not report["problems"], report
    assert service.custody(ident)["last_scrub"]["local"]["ok"] is True  # type: ignore[index]


def test_verify_central_finds_a_deleted_object_and_repair_uploads_it_again(
        bench: tuple[BenchService, SyncEngine], central: Any, tmp_path: Path) -> None:
    service, engine = bench
    data = os.urandom(500_000)
    ident = _capture(service, tmp_path / "src", "lost.bin", data)
    kept = _capture(service, tmp_path / "src", "kept.bin", os.urandom(1000))
    _sync(engine)
    code, report = _verify(service, "--central")
    assert code == 0 and report["objects"] == 2, report

    object_name = service.custody(ident)["uploaded"]["object_name"]  # type: ignore[index]
    with ObjectStore(central) as objects:
        objects.remove(object_name)  # behind the bench's back
        code, report = _verify(service, "--central")
        assert code == 1, report
        assert _problem_ids(report, "central") == {ident}
        receipt = service.custody(ident)
        assert receipt is not None and receipt["safe_to_delete"] is False
        assert "gone" in receipt["central_problem"]
        assert not custody.central_verified(service.store, ident)
        assert custody.central_verified(service.store, kept)

        code, report = _verify(service, "--central", "--repair")
        assert code == 0, report
        assert [p["repaired"] for p in report["problems"]] == [True]
        assert objects.verified(object_name, len(data), str(service.get(ident).sha256)
                                ) is not None  # type: ignore[attr-defined]
    receipt = service.custody(ident)
    assert receipt is not None and receipt["safe_to_delete"] is True
    assert receipt["central_verified"]["how"] == "read-back"
    code, report = _verify(service, "--central", "--deep")
    assert code == 0 and report["bytes_hashed"] >= 2 * (len(data) + 1000), report
    status = _cli(service, "sync", "status")
    assert "last verified:" in status.stdout and "all intact" in status.stdout
    assert sync_status(service)["last_scrub"]["ok"] is True


def test_verify_deep_finds_an_object_whose_bytes_changed_under_the_same_metadata(
        bench: tuple[BenchService, SyncEngine], central: Any, tmp_path: Path) -> None:
    """Only ``--deep`` sees bytes that rotted under intact metadata; repair replaces them."""
    import io

    service, engine = bench
    data = os.urandom(100_000)
    ident = _capture(service, tmp_path / "src", "rot.bin", data)
    _sync(engine)
    object_name = service.custody(ident)["uploaded"]["object_name"]  # type: ignore[index]
    sha256 = str(service.get(ident).sha256)  # type: ignore[attr-defined]
    with ObjectStore(central) as objects:
        rotten = bytearray(data)
        rotten[10] ^= 0xFF
        objects.client.put_object(central.bucket, object_name, io.BytesIO(bytes(rotten)),
                                  len(rotten), metadata={"sha256": sha256})
        assert _verify(service, "--central")[0] == 0  # the metadata still looks right
        code, report = _verify(service, "--central", "--deep")
        assert code == 1 and _problem_ids(report, "central") == {ident}, report
        code, report = _verify(service, "--central", "--deep", "--repair")
        assert code == 0, report
        response = objects.open_stream(central.bucket, object_name)
        try:
            assert response.read() == data
        finally:
            response.close()
            response.release_conn()


class FakeClock:
    """Time that passes only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def test_the_rate_limit_is_honoured(tmp_path: Path) -> None:
    """At 2 MiB/s, 12 MiB take at least 5 s of (fake) time: 12 MiB less the 2 MiB burst;
    at rate 0 the scrub never waits."""
    with BenchService(tmp_path / "store") as service:
        for n in range(3):
            _capture(service, tmp_path / "src", f"f{n}.bin", os.urandom(4 * MIB))
        fake = FakeClock()
        report = Scrubber(service, limiter=RateLimiter(2, clock=fake.clock,
                                                       sleep=fake.sleep)).run()
        assert report.ok and report.bytes_hashed == 12 * MIB
        assert 5.0 <= fake.now <= 6.0
        unlimited = FakeClock()
        assert Scrubber(service, limiter=RateLimiter(0, clock=unlimited.clock,
                                                     sleep=unlimited.sleep)).run().ok
        assert unlimited.sleeps == 0


def test_a_missing_blob_without_a_verified_central_copy_is_a_problem_repair_cannot_hide(
        tmp_path: Path) -> None:
    with BenchService(tmp_path / "store") as service:
        ident = _capture(service, tmp_path / "src", "only-here.bin", b"precious")
        service.files.path_for(str(service.get(ident).sha256)).unlink()  # type: ignore[attr-defined]
        report = Scrubber(service, repair=True).run()
        assert not report.ok
        assert [(p.kind, p.datapoint_ids, p.repaired) for p in report.problems] == [
            ("missing", [ident], False)]
        last = custody.last_scrub_run(service.store)
        assert last is not None and last["ok"] is False and last["problem_ids"] == [ident]


def test_the_schedule_is_weekly_by_default_and_can_be_switched_off(tmp_path: Path) -> None:
    with BenchService(tmp_path / "store") as service:
        weekly = VerifySettings()
        assert weekly.interval_days == 7
        first = next_scrub_due(service, weekly)
        assert first is not None and first > 6 * 86400  # one interval after it began
        assert next_scrub_due(service, VerifySettings(interval_days=0)) is None
        custody.record_scrub_run(service.store, "2020-01-01T00:00:00Z", True, {"files": 0})
        assert next_scrub_due(service, weekly) == 0


def test_a_local_copy_whose_central_object_a_scrub_found_gone_is_not_freed(
        bench: tuple[BenchService, SyncEngine], central: Any, tmp_path: Path) -> None:
    """``free_verified_after_days`` frees only copies whose central copy is verified now."""
    service, engine = bench
    ident = _capture(service, tmp_path / "src", "keep.bin", os.urandom(5000))
    _sync(engine)
    sha256 = str(service.get(ident).sha256)  # type: ignore[attr-defined]
    with ObjectStore(central) as objects:
        objects.remove(service.custody(ident)["uploaded"]["object_name"])  # type: ignore[index]
        assert not Scrubber(service, central=True, objects=objects).run().ok
    freeing = central.model_copy(update={"free_verified_after_days": 0})
    with SyncEngine(service, freeing) as freer:
        assert freer.run_pass(force=True).freed_files == 0
    assert service.files.exists(sha256)


def test_a_store_synced_before_custody_receipts_keeps_its_verified_files_safe(
        tmp_path: Path, central: Any, configured: dict[str, str]) -> None:
    """Upgrading: files synced and confirmed before ``central_custody`` existed are
    verified (by read-back) from the sync engine's own record of their objects."""
    data_dir = tmp_path / "old"
    with BenchService(data_dir) as service, SyncEngine(service, central) as engine:
        synced = _capture(service, tmp_path / "src", "synced.bin", os.urandom(3000))
        _sync(engine)
        waiting = _capture(service, tmp_path / "src", "waiting.bin", os.urandom(3000))
        with service.store.transaction() as conn:  # back to custody version 1
            for trigger in ("central_custody_changed", "central_custody_row_removed"):
                conn.execute(f"DROP TRIGGER {trigger}")
            for table in ("central_custody", "scrub_marks", "scrub_runs"):
                conn.execute(f"DROP TABLE {table}")
            conn.execute("UPDATE component_versions SET version = 1 WHERE component = ?",
                         (custody.COMPONENT,))
    with BenchService(data_dir) as service:
        receipt = service.custody(synced)
        assert receipt is not None and receipt["safe_to_delete"] is True
        assert receipt["central_verified"]["how"] == "read-back"
        assert receipt["uploaded"]["object_name"] == receipt["central_verified"]["object_name"]
        assert service.custody(waiting)["safe_to_delete"] is False  # type: ignore[index]


def test_the_scheduled_scrub_runs_when_due_and_checks_the_central_copies(
        bench: tuple[BenchService, SyncEngine], tmp_path: Path) -> None:
    from app.core.config import save_section

    service, engine = bench
    ident = _capture(service, tmp_path / "src", "weekly.bin", os.urandom(3000))
    _sync(engine)
    save_section(service.paths, "verify", {"interval_days": 7, "rate_mib_s": 5})
    custody.record_scrub_run(service.store, "2020-01-01T00:00:00Z", True, {"files": 0})
    component = ScrubComponent(service)
    component.start()
    try:
        wait_until(lambda: (custody.last_scrub_run(service.store) or {}).get("files") == 1,
                   60, "the scheduled scrub")
    finally:
        component.stop()
    last = custody.last_scrub_run(service.store)
    assert last is not None and last["ok"] and last["central"] is True
    scrub = service.custody(ident)["last_scrub"]  # type: ignore[index]
    assert scrub["local"]["ok"] and scrub["central"]["ok"]
    assert next_scrub_due(service, VerifySettings()) > 6 * 86400  # type: ignore[operator]
