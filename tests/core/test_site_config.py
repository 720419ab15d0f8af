"""Settings provisioned by the facility (``app.core.site``): defaults, locks, and what the
service, the CLI and the watcher make of them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.core.config import load_section, save_section
from app.core.paths import bench_paths
from app.core.site import LockedSettingError
from sync.settings import load_settings

SITE = {
    "central": {"preset": "seaweedfs", "endpoint": "s3.lab.example:8333",
                "bucket": "lab-data", "mongo_database": "lab_madsci"},
    "locked": ["central.endpoint", "central.bucket"],
}


def provision(site: dict[str, Any]) -> Path:
    path = Path(os.environ["BENCHDATA_SITE_CONFIG"])
    path.write_text(json.dumps(site), encoding="utf-8")
    return path


def test_facility_values_are_defaults_and_locked_ones_win() -> None:
    provision(SITE)
    paths = bench_paths()
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    # A bench config written before the facility locked the endpoint does not override it.
    paths.config_file.write_text(json.dumps({"central": {
        "endpoint": "old.example:9000", "mongo_database": "bench_db"}}), encoding="utf-8")
    section = load_section(paths, "central")
    assert section["endpoint"] == "s3.lab.example:8333"  # locked
    assert section["bucket"] == "lab-data"  # locked
    assert section["mongo_database"] == "bench_db"  # not locked: the bench's own value
    settings = load_settings(paths, environ={})
    assert settings.endpoint == "s3.lab.example:8333" and settings.bucket == "lab-data"


def test_saving_keeps_locked_values_out_of_the_bench_file_and_refuses_changes() -> None:
    provision(SITE)
    paths = bench_paths()
    save_section(paths, "central", {"endpoint": "s3.lab.example:8333", "bucket": "lab-data",
                                    "mongo_database": "mine"})
    written = json.loads(paths.config_file.read_text(encoding="utf-8"))
    assert written == {"central": {"mongo_database": "mine"}}
    with pytest.raises(LockedSettingError, match="central.endpoint.*set by the facility"):
        save_section(paths, "central", {"endpoint": "elsewhere:1", "bucket": "lab-data"})
    assert json.loads(paths.config_file.read_text(encoding="utf-8")) == written


def test_a_whole_section_can_be_locked(tmp_path: Path) -> None:
    folder = tmp_path / "instrument"
    folder.mkdir()
    rules = {"version": 1, "rules": [{"id": "r1", "path": str(folder), "include": ["*.csv"]}]}
    provision({"watch": rules, "locked": ["watch"]})
    result = CliRunner().invoke(cli, ["watch", "list"])
    assert result.exit_code == 0, result.output
    assert str(folder) in result.output
    result = CliRunner().invoke(cli, ["watch", "add", str(tmp_path)])
    assert result.exit_code == 1
    assert "set by the facility" in result.output and "ask the facility staff" in result.output


def test_cli_refuses_a_locked_setting_with_a_clear_message() -> None:
    site = provision(SITE)
    result = CliRunner().invoke(cli, ["sync", "configure", "--bucket", "other"])
    assert result.exit_code == 1
    assert f"set by the facility ({site})" in result.output
    result = CliRunner().invoke(cli, ["sync", "configure", "--mongo-database", "fine"])
    assert result.exit_code == 0, result.output
    assert load_settings(bench_paths(), environ={}).mongo_database == "fine"


def test_a_broken_facility_file_is_reported_not_ignored() -> None:
    site = provision({})
    site.write_text("{not json", encoding="utf-8")
    result = CliRunner().invoke(cli, ["watch", "list"])
    assert result.exit_code == 1
    assert f"facility's settings file {site} is not valid JSON" in result.output
    site.write_text(json.dumps({"locked": "central"}), encoding="utf-8")
    with pytest.raises(Exception, match="list of"):
        load_section(bench_paths(), "central")
