"""``benchdata doctor``: OK / WARN / FAIL lines with what to do, ``--json``, exit status."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app.admin import doctor
from app.cli import cli
from app.core.paths import bench_paths
from app.ingest.rules import save_rules, validate_rule
from app.service import BenchService


def _doctor(data_dir: Path, *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "doctor", *args])
    if "--json" in args:
        return result.exit_code, json.loads(result.output)
    return result.exit_code, result.output


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {check["name"]: check for check in report["checks"]}


@pytest.fixture
def plenty_of_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "LOW_SPACE_BYTES", 0)


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


def test_unreachable_central_store_fails_clearly(tmp_path: Path, plenty_of_space: None,
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
    assert "reachable from this PC" in text
    assert "pw-never-shown" not in text and "s3-never-shown" not in text


def test_a_check_that_crashes_is_a_fail(tmp_path: Path) -> None:
    def broken(_paths: Any) -> list[doctor.Check]:
        raise RuntimeError("boom")

    results = doctor.run_checks(bench_paths(tmp_path), [broken])
    assert results[0].status == doctor.FAIL and "boom" in results[0].detail
