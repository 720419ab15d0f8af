"""``benchdata doctor``: OK / WARN / FAIL lines with what to do, ``--json``, exit status.

The central-store checks run against the real SeaweedFS and nx-27017 servers of
``tests/support/servers.py`` (right keys, a wrong secret, a wrong access key, a missing bucket) and
against real sockets where nothing answers (a closed port, a port that never replies)."""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from tests.support.servers import central_env

from app.admin import doctor
from app.cli import cli
from app.core.paths import bench_paths
from app.ingest.rules import save_rules, validate_rule
from app.service import BenchService
from sync.settings import save_settings


def _doctor(data_dir: Path, *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "doctor", *args])
    if "--json" in args:
        return result.exit_code, json.loads(result.output)
    return result.exit_code, result.output


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {check["name"]: check for check in report["checks"]}


@pytest.fixture
def plenty_of_space(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core import diskspace

    monkeypatch.setattr(diskspace, "load_disk_settings",
                        lambda _paths: diskspace.DiskSettings(low_space_mb=0))


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_healthy_store_is_all_ok(tmp_path: Path, plenty_of_space: None) -> None:
    data_dir = tmp_path / "store"
    watched = tmp_path / "instrument"
    watched.mkdir()
    with BenchService(data_dir) as service:
        service.capture_value({"x": 1}, label="t")
        save_rules(service.paths, [validate_rule({"id": "r1", "name": "uv", "path": str(watched)})])
    code, report = _doctor(data_dir, "--json")
    assert code == 0 and report["ok"] is True
    assert {c["status"] for c in report["checks"]} == {"OK"}, report
    names = _by_name(report)
    assert {"data directory", "free space", "store integrity", "schema version",
            "watched folder uv", "central store", "versions"} <= set(names)
    assert "SQLite" in names["versions"]["detail"]
    code, text = _doctor(data_dir)
    assert code == 0 and "All checks passed." in text and "FAIL" not in text


def test_unwritable_data_dir_and_missing_folder_fail(tmp_path: Path, plenty_of_space: None) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    data_dir = blocker / "store"  # mkdir fails: its parent is a regular file
    code, report = _doctor(data_dir, "--json")
    assert code == 1 and report["ok"] is False
    check = _by_name(report)["data directory"]
    assert check["status"] == "FAIL" and "not writable" in check["detail"]
    assert "writable folder" in check["fix"]

    good = tmp_path / "good"
    save_rules(bench_paths(good), [validate_rule({"id": "r1", "name": "gone",
                                                 "path": str(tmp_path / "unplugged")})])
    code, text = _doctor(good)
    assert code == 1
    assert "FAIL  watched folder gone:" in text and "does not exist" in text
    assert "-> mount the share" in text

    # A rule whose completeness profile (a plugin) is no longer installed captures nothing.
    there = tmp_path / "there"
    there.mkdir()
    save_rules(bench_paths(good), [validate_rule({"id": "r2", "name": "plugged", "path":
                                                 str(there), "profile": "removed-plugin"})])
    code, text = _doctor(good)
    assert code == 1
    assert ("FAIL  watched folder plugged: nothing is captured: no completeness profile "
            "'removed-plugin' is installed") in text


@pytest.fixture
def quick_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probes of dead servers give up after half a second instead of three."""
    monkeypatch.setattr(doctor.central, "CENTRAL_TIMEOUT_S", 0.5)


def _configure_env(monkeypatch: pytest.MonkeyPatch, settings: Any, **overrides: str) -> None:
    for name, value in {**central_env(settings), **overrides}.items():
        monkeypatch.setenv(name, value)


def _assert_no_secret(settings: Any, *outputs: Any, also: str = "") -> None:
    secret = settings.secret_key.get_secret_value()
    for output in outputs:
        text = output if isinstance(output, str) else json.dumps(output)
        assert secret not in text
        assert not also or also not in text


def test_right_credentials_are_ok(tmp_path: Path, plenty_of_space: None, central: Any,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _configure_env(monkeypatch, central)
    code, report = _doctor(tmp_path / "store", "--json")
    names = _by_name(report)
    assert names["central MongoDB"]["status"] == "OK", names["central MongoDB"]
    assert central.mongo_database in names["central MongoDB"]["detail"]
    storage = names["central object storage"]
    assert storage["status"] == "OK", storage
    assert storage["detail"] == f"bucket {central.bucket} at http://{central.endpoint} is accessible"
    assert code == 0 and report["ok"] is True
    code, text = _doctor(tmp_path / "store")
    assert "OK    central MongoDB:" in text and "OK    central object storage:" in text
    _assert_no_secret(central, report, text)


def test_wrong_secret_key_is_refused_with_what_to_change(
        tmp_path: Path, plenty_of_space: None, central: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    _configure_env(monkeypatch, central, OBJECT_STORAGE_SECRET_KEY=wrong)
    code, text = _doctor(tmp_path / "store")
    assert code == 1
    assert "OK    central MongoDB:" in text  # the other server is still reported fine
    line = next(line for line in text.splitlines() if "central object storage" in line)
    assert line.startswith("FAIL  central object storage:")
    assert "refused the credentials" in line
    assert f"the secret key does not match access key '{central.access_key}'" in line
    assert "SignatureDoesNotMatch" in line
    assert ("-> set the right secret key for access key 'benchaccess': OBJECT_STORAGE_SECRET_KEY"
            " is set in this environment") in text
    assert "1 check(s) failed." in text
    code, report = _doctor(tmp_path / "store", "--json")
    storage = _by_name(report)["central object storage"]
    assert code == 1 and storage["status"] == "FAIL" and "secret key" in storage["fix"]
    _assert_no_secret(central, text, report, also=wrong)


def test_wrong_saved_secret_points_at_sync_configure(
        tmp_path: Path, plenty_of_space: None, central: Any) -> None:
    """Settings saved by `benchdata sync configure` (no environment): the fix names it."""
    data_dir = tmp_path / "store"
    wrong = f"wrong-{secrets.token_hex(8)}"
    save_settings(bench_paths(data_dir), central.model_copy(update={"secret_key": SecretStr(wrong)}))
    code, text = _doctor(data_dir)
    assert code == 1
    assert "refused the credentials: the secret key does not match" in text
    assert "run `benchdata sync configure` as the user the service runs as" in text
    _assert_no_secret(central, text, also=wrong)


def test_unknown_access_key_and_missing_bucket(tmp_path: Path, plenty_of_space: None,
                                               central: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _configure_env(monkeypatch, central, OBJECT_STORAGE_ACCESS_KEY="nobody-here")
    code, text = _doctor(tmp_path / "store")
    assert code == 1
    assert "refused the credentials: access key 'nobody-here' is not known there" in text
    assert "-> set the right access key and secret key" in text

    _configure_env(monkeypatch, central, OBJECT_STORAGE_DEFAULT_BUCKET="no-such-bucket")
    code, text = _doctor(tmp_path / "store")
    assert code == 1
    assert f"FAIL  central object storage: bucket 'no-such-bucket' does not exist at " \
           f"http://{central.endpoint}" in text
    assert "-> create the bucket, or fix the bucket name" in text
    _assert_no_secret(central, text)


def test_object_storage_down_beside_a_live_mongodb(tmp_path: Path, plenty_of_space: None,
                                                   central: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    port = _dead_port()
    _configure_env(monkeypatch, central, OBJECT_STORAGE_ENDPOINT=f"127.0.0.1:{port}")
    code, text = _doctor(tmp_path / "store")
    assert code == 1
    assert "OK    central MongoDB:" in text
    assert (f"FAIL  central object storage: cannot reach object storage at "
            f"http://127.0.0.1:{port} (connection refused: nothing listens on that port)") in text
    assert "-> check that the server is up and reachable from this PC" in text
    _assert_no_secret(central, text)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


@pytest.mark.timeout(120)  # the hang guard: the probes must give up by themselves
def test_servers_that_never_answer_are_reported_not_waited_for(
        tmp_path: Path, plenty_of_space: None, quick_probes: None, silent_port: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHDATA_MONGO_URL", f"mongodb://127.0.0.1:{silent_port}/")
    monkeypatch.setenv("OBJECT_STORAGE_ENDPOINT", f"127.0.0.1:{silent_port}")
    monkeypatch.setenv("OBJECT_STORAGE_DEFAULT_BUCKET", "raw")
    monkeypatch.setenv("OBJECT_STORAGE_ACCESS_KEY", "bench")
    monkeypatch.setenv("OBJECT_STORAGE_SECRET_KEY", "s3-never-shown")
    monkeypatch.setenv("OBJECT_STORAGE_REGION", "us-east-1")
    code, report = _doctor(tmp_path / "store", "--json")
    assert code == 1
    names = _by_name(report)
    assert names["central MongoDB"]["status"] == "FAIL"
    assert "cannot reach MongoDB (no answer within 0.5 s)" in names["central MongoDB"]["detail"]
    storage = names["central object storage"]
    assert storage["status"] == "FAIL"
    assert storage["detail"] == (f"cannot reach object storage at http://127.0.0.1:{silent_port}"
                                 " (no answer within 0.5 s)")
    assert "s3-never-shown" not in json.dumps(report)


def test_a_probe_past_its_deadline_is_a_fail_not_a_hang() -> None:
    """A probe stuck where no socket timeout reaches (a name lookup against a dead DNS
    server) is reported after the deadline and left behind."""
    release = threading.Event()

    def stuck() -> doctor.Check:
        release.wait()
        return doctor.Check("central MongoDB", doctor.OK, "too late")

    def quick() -> doctor.Check:
        return doctor.Check("central object storage", doctor.OK, "fine")

    try:
        results = doctor.run_with_deadline(
            [("central MongoDB", stuck), ("central object storage", quick)], 0.05)
    finally:
        release.set()
    assert [(c.name, c.status) for c in results] == [("central MongoDB", "FAIL"),
                                                     ("central object storage", "OK")]
    assert results[0].detail == "no answer within 0.05 s"
    assert "reachable from this PC" in results[0].fix


def test_network_reasons_read_any_wording() -> None:
    cases = {
        "[Errno 111] Connection refused": "connection refused",
        "[WinError 10061] No connection could be made because the target machine actively "
        "refused it": "connection refused",
        "[Errno -2] Name or service not known": "host name",
        "[Errno 11001] getaddrinfo failed": "host name",
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed": "TLS certificate",
        "[SSL: WRONG_VERSION_NUMBER] wrong version number": "TLS mismatch",
        "Read timed out. (read timeout=3)": "no answer within",
    }
    for message, expected in cases.items():
        assert expected in doctor.network_reason(OSError(message)), message
    assert doctor.network_reason(ValueError("odd")) == "ValueError"


def test_unreachable_central_store_fails_clearly(tmp_path: Path, plenty_of_space: None,
                                                 quick_probes: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    port = _dead_port()
    monkeypatch.setenv("BENCHDATA_MONGO_URL", f"mongodb://bench:pw-never-shown@127.0.0.1:{port}/")
    monkeypatch.setenv("OBJECT_STORAGE_ENDPOINT", f"127.0.0.1:{port}")
    monkeypatch.setenv("OBJECT_STORAGE_DEFAULT_BUCKET", "raw")
    monkeypatch.setenv("OBJECT_STORAGE_ACCESS_KEY", "bench")
    monkeypatch.setenv("OBJECT_STORAGE_SECRET_KEY", "s3-never-shown")
    code, text = _doctor(tmp_path / "store")
    assert code == 1
    assert f"FAIL  central MongoDB: mongodb://bench:***@127.0.0.1:{port}/" in text
    assert "cannot reach MongoDB" in text
    assert "FAIL  central object storage:" in text and "cannot reach object storage" in text
    # (MongoDB's reason depends on whether its monitor finished a first attempt in time;
    # the object storage's is deterministic)
    assert f"cannot reach object storage at http://127.0.0.1:{port} (connection refused" in text
    assert "reachable from this PC" in text
    assert "pw-never-shown" not in text and "s3-never-shown" not in text


def test_a_check_that_crashes_is_a_fail(tmp_path: Path) -> None:
    def broken(_paths: Any) -> list[doctor.Check]:
        raise RuntimeError("boom")

    results = doctor.run_checks(bench_paths(tmp_path), [broken])
    assert results[0].status == doctor.FAIL and "boom" in results[0].detail


def test_doctor_shows_the_last_verify_and_fails_when_it_left_a_problem(
        tmp_path: Path, plenty_of_space: None) -> None:
    from sync.verify import Scrubber

    data_dir = tmp_path / "store"
    source = tmp_path / "run.txt"
    source.write_bytes(b"measured")
    with BenchService(data_dir) as service:
        ident = service.capture_file(source).datapoint_id
        code, report = _doctor(data_dir, "--json")
        assert _by_name(report)["last verify"]["detail"] == "never verified"
        assert Scrubber(service).run().ok
        code, report = _doctor(data_dir, "--json")
        check = _by_name(report)["last verify"]
        assert check["status"] == "OK" and "all intact (1 file(s), local)" in check["detail"]
        service.files.path_for(str(service.get(ident).sha256)).unlink()  # type: ignore[attr-defined]
        assert not Scrubber(service).run().ok
    code, report = _doctor(data_dir, "--json")
    check = _by_name(report)["last verify"]
    assert code != 0 and check["status"] == "FAIL" and ident in check["detail"]
    assert "benchdata verify" in check["fix"]


def _freed_after_upload(service: BenchService, path: Path) -> tuple[str, Path]:
    """A file captured, uploaded by sync (its object row and custody, as the engine writes
    them), its record read back, and its local copy freed."""
    from app.core import custody
    from sync.outbox import Outbox

    datapoint = service.capture_file(path, label="spectrum")
    sha256 = datapoint.sha256
    Outbox(service.store)  # the sync engine's tables, sync_objects among them
    with service.store.transaction() as conn:
        conn.execute(
            "INSERT INTO sync_objects (datapoint_id, bucket, object_name, size, etag, sha256, "
            "content_type, endpoint, verified_at) VALUES (?, 'lab', 'obj', 5, 'e', ?, "
            "'application/octet-stream', 'http://s3', '2026-12-07T06:00:00Z')",
            (datapoint.datapoint_id, sha256))
        custody.note_uploaded(conn, datapoint.datapoint_id, sha256, "lab", "obj")
        custody.note_records_verified(conn, [datapoint.datapoint_id])
    blob = service.files.path_for(sha256)
    blob.chmod(0o644)
    blob.unlink()
    return datapoint.datapoint_id, blob


def test_stored_files_reads_custody_a_freed_file_whose_central_copy_a_scrub_lost_fails(
        tmp_path: Path) -> None:
    """A file kept only centrally is fine while its central copy is verified
    (``app.core.custody``), not because sync once uploaded it: after a scrub found the
    central object missing, the freed file is missing everywhere and doctor says so."""
    from app.core import custody

    source = tmp_path / "spectrum.csv"
    source.write_bytes(b"1,2,3")
    data_dir = tmp_path / "store"
    with BenchService(data_dir) as service:
        datapoint_id, _blob = _freed_after_upload(service, source)
    [check] = doctor.check_blobs(bench_paths(data_dir))
    assert check.status == doctor.OK and "1 kept only centrally (verified)" in check.detail
    with BenchService(data_dir) as service:
        custody.note_central_problem(service.store, datapoint_id, "central object missing")
    [check] = doctor.check_blobs(bench_paths(data_dir))
    assert check.status == doctor.FAIL, check
    assert f"1 file(s) missing (e.g. datapoint {datapoint_id})" in check.detail


def test_stored_files_accepts_a_central_copy_verified_by_download(tmp_path: Path) -> None:
    """Custody verified by downloading the central copy (no upload from here, so no sync
    object row) makes a freed local file fine too."""
    from app.core import custody

    source = tmp_path / "run.raw"
    source.write_bytes(b"raw bytes")
    data_dir = tmp_path / "store"
    with BenchService(data_dir) as service:
        datapoint = service.capture_file(source)
        custody.note_central_verified(service.store, datapoint.datapoint_id, datapoint.sha256,
                                      "lab", "obj", "download-sha256")
        blob = service.files.path_for(datapoint.sha256)
        blob.chmod(0o644)
        blob.unlink()
    [check] = doctor.check_blobs(bench_paths(data_dir))
    assert check.status == doctor.OK and "1 kept only centrally (verified)" in check.detail
