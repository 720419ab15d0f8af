"""``benchdata watch ...`` and ``benchdata run`` as an operator uses them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.core.errors import ValidationError
from app.core.ids import name_to_id
from app.core.paths import bench_paths
from app.ingest.component import IngestComponent, make_component
from app.ingest.rules import (
    add_rule,
    derive_rule_id,
    find_rule,
    load_rules,
    remove_rule,
    update_rule,
)
from app.runner import RunOptions, component_factories, factory_name
from app.service import BenchService

#: watchdog 7's inotify reader warns (RuntimeWarning) when a folder's watch is added twice
#: as folders are created in quick succession, and carries on. Under ``filterwarnings =
#: error`` that warning would become an exception that kills watchdog's reader thread —
#: a test-only failure (the watcher detects and restarts a dead reader; see
#: test_a_dead_inotify_reader_is_detected).
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_add_list_edit_pause_resume_remove(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    code, out, err = invoke("watch", "add", str(folder), "--include", "*.csv", "--quiet", "2",
                            "--label", "{stem}", "--meta", "user_id=alice",
                            "--path-template", "{experiment_id}/{sample}/*", "--json")
    assert code == 0, err
    rule = json.loads(out)
    assert rule["include"] == ["*.csv"] and rule["quiet_seconds"] == 2
    assert rule["metadata"] == {"user_id": "alice"} and rule["enabled"] is True
    assert rule["id"].startswith("out-")

    code, out, _ = invoke("watch", "list", "--json")
    [listed] = json.loads(out)
    assert listed["id"] == rule["id"] and listed["captured"] == 0 and listed["folder_present"]

    code, out, err = invoke("watch", "edit", "out", "--quiet", "0.5", "--marker", "{name}.done",
                            "--meta", "project=P1", "--unset-meta", "user_id", "--json")
    assert code == 0, err
    edited = json.loads(out)
    assert edited["quiet_seconds"] == 0.5 and edited["marker"] == "{name}.done"
    assert edited["metadata"] == {"project": "P1"} and edited["include"] == ["*.csv"]

    assert invoke("watch", "pause", rule["id"])[0] == 0
    assert load_rules(bench_paths())[0].enabled is False
    code, out, _ = invoke("watch", "list")
    assert "(paused)" in out and str(folder) in out
    assert invoke("watch", "resume", str(folder))[0] == 0
    assert load_rules(bench_paths())[0].enabled is True

    code, out, _ = invoke("watch", "remove", rule["id"])
    assert code == 0 and "removed" in out
    assert load_rules(bench_paths()) == []


def test_bad_rules_are_refused_with_one_clear_line(tmp_path: Path) -> None:
    code, _, err = invoke("watch", "add", str(tmp_path), "--label", "{sample}")
    assert code == 1 and err.startswith("error: watch rule:") and "{sample}" in err
    code, _, err = invoke("watch", "add", str(tmp_path), "--path-template", "{exp")
    assert code == 1 and "unmatched" in err
    code, _, err = invoke("watch", "edit", "nothing-here", "--quiet", "1")
    assert code == 1 and "no watch rule" in err
    code, _, err = invoke("watch", "add", str(tmp_path / "not-yet"))
    assert code == 0 and "not there now" in err  # an unmounted share may be added


def test_test_template_shows_what_a_path_would_be_captured_with(tmp_path: Path) -> None:
    folder = tmp_path / "uv"
    folder.mkdir()
    invoke("watch", "add", str(folder), "--path-template", "{experiment}/{sample}/*",
           "--label", "{sample}: {stem}", "--meta", "user=alice")
    code, out, _ = invoke("watch", "test-template", "--rule", "uv", "--json",
                          "EXP42/S7/run1.csv", str(folder / "stray.csv"))
    assert code == 0
    matched, stray = json.loads(out)
    assert matched["template_match"] is True and matched["label"] == "S7: run1"
    assert matched["ownership"]["experiment_id"] == {"name": "EXP42",
                                                     "id": name_to_id("experiment", "EXP42")}
    assert matched["custom_metadata"] == {"sample": "S7", "template_match": "yes"}
    assert stray["path"] == "stray.csv" and stray["template_match"] is False
    code, out, _ = invoke("watch", "test-template", "--path-template", "{a}_{b}.txt",
                          "x_y.txt")
    assert "matches" in out and "a: x" in out


def test_rule_ids_follow_the_folder_so_re_adding_keeps_the_ledger(tmp_path: Path) -> None:
    paths = bench_paths()
    folder = tmp_path / "Instrument Out"
    first = add_rule(paths, str(folder))
    second = add_rule(paths, str(folder), include=["*.raw"])
    assert first.id.startswith("instrument-out-") and second.id == f"{first.id}-2"
    remove_rule(paths, first.id)
    again = add_rule(paths, str(folder))
    assert again.id == first.id == derive_rule_id(str(folder), [])
    with pytest.raises(ValidationError, match="several"):
        find_rule(load_rules(paths), "Instrument Out")  # two rules share the name
    assert update_rule(paths, second.id, {"quiet_seconds": 7}).quiet_seconds == 7


def test_make_component_is_off_only_when_watching_is_switched_off(
        tmp_path: Path, service: BenchService) -> None:
    assert "watch" in [factory_name(factory) for factory in component_factories()]
    assert make_component(service, RunOptions(watch=False)) is None
    # With nothing configured it still runs, to pick up rules added later.
    component = make_component(service, RunOptions())
    assert isinstance(component, IngestComponent) and component.name == "watch"


def test_a_running_service_follows_rules_added_paused_and_removed(
        tmp_path: Path, service: BenchService, wait: Any) -> None:
    folder = tmp_path / "late"
    folder.mkdir()
    component = make_component(service, RunOptions())
    assert component is not None
    component.CONFIG_POLL_SECONDS = 0.05
    component.start()
    try:
        assert component.status() == []
        rule = add_rule(service.paths, str(folder), quiet_seconds=0.2)
        (folder / "first.csv").write_text("1,2\n")
        wait(lambda: service.count({"filename": "first.csv"}) == 1)
        update_rule(service.paths, rule.id, {"enabled": False})  # benchdata watch pause
        wait(lambda: component.status() == [])
        (folder / "while-paused.csv").write_text("3,4\n")
        update_rule(service.paths, rule.id, {"enabled": True})  # benchdata watch resume
        wait(lambda: service.count({"filename": "while-paused.csv"}) == 1)
    finally:
        component.stop()


def test_benchdata_run_captures_headless_and_stops_cleanly_on_sigterm(
        tmp_path: Path, bench_home: Path, wait: Any) -> None:
    folder = tmp_path / "instrument"
    folder.mkdir()
    (folder / "waiting.csv").write_text("arrived before the service started\n")
    assert invoke("watch", "add", str(folder), "--quiet", "0.3")[0] == 0
    env = {**os.environ, "BENCHDATA_HOME": str(bench_home), "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from app.cli import main; main(sys.argv[1:])",
             "run", "--no-api", "--no-sync"], env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait(lambda: "watching 1 folder" in log_path.read_text(), timeout=30,
                 what="the service to start")
            (folder / "live.csv").write_text("arrived while it ran\n")
            wait(lambda: log_path.read_text().count("captured ") >= 2, timeout=30,
                 what="both files to be captured")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
    log_text = log_path.read_text()
    assert code == 0, log_text
    assert "stopped watch" in log_text
    with BenchService() as bench:
        assert sorted(dp.filename for dp in bench.latest(0)) == ["live.csv", "waiting.csv"]
