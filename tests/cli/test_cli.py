"""The ``benchdata`` command line, as a script or an operator uses it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.core.ids import name_to_id


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(cli, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_add_get_value_list_query_round_trip(runner: CliRunner, run_txt: Path, tmp_path: Path) -> None:
    code, out, _ = invoke(runner, "add", "value", '{"t": 23.5, "unit": "C"}', "--label", "Temperature",
                          "--experiment", "EXP42", "--user", "alice", "--meta", "sample=S1", "--json")
    assert code == 0, out
    value_dp = json.loads(out)
    assert value_dp["ownership_info"]["experiment_id"] == name_to_id("experiment", "EXP42")
    assert value_dp["custom_metadata"] == {"sample": "S1", "experiment_name": "EXP42", "user_name": "alice"}

    code, out, _ = invoke(runner, "add", "file", str(run_txt), "--label", "Run log", "--json")
    assert code == 0
    file_dp = json.loads(out)
    assert file_dp["filename"] == "run.txt" and file_dp["size_bytes"] == run_txt.stat().st_size

    code, out, _ = invoke(runner, "get", value_dp["_id"], "--json")
    assert json.loads(out)["value"] == {"t": 23.5, "unit": "C"} and json.loads(out)["sync_state"] == "pending"
    code, out, _ = invoke(runner, "get", value_dp["_id"])
    assert "experiment_id" in out and "(EXP42)" in out

    code, out, _ = invoke(runner, "value", value_dp["_id"])
    assert json.loads(out) == {"t": 23.5, "unit": "C"}

    dest = tmp_path / "out"
    dest.mkdir()
    code, out, _ = invoke(runner, "save", file_dp["_id"], str(dest))
    assert code == 0 and (dest / "run.txt").read_bytes() == run_txt.read_bytes()

    code, out, _ = invoke(runner, "list", "--json")
    assert [d["_id"] for d in json.loads(out)] == [file_dp["_id"], value_dp["_id"]]
    code, out, _ = invoke(runner, "list")
    assert "Temperature" in out and "Run log" in out

    code, out, _ = invoke(runner, "query", '{"ownership_info.experiment_id": "EXP42", "value.t": {"$gt": 20}}', "--json")
    assert [d["_id"] for d in json.loads(out)["items"]] == [value_dp["_id"]]
    code, out, _ = invoke(runner, "query", '{"data_type": "file"}', "--count")
    assert out.strip() == "1"


def test_edit_delete_export_and_names(runner: CliRunner, tmp_path: Path) -> None:
    _, out, _ = invoke(runner, "add", "value", "42", "--json")
    ident = json.loads(out)["_id"]
    code, out, _ = invoke(runner, "edit", ident, "--label", "answer", "--meta", "k=v", "--json")
    assert code == 0 and json.loads(out)["label"] == "answer"
    code, out, _ = invoke(runner, "export", "{}", "-o", str(tmp_path / "all.csv"))
    assert code == 0 and "exported 1" in out
    code, out, _ = invoke(runner, "delete", ident, "--yes")
    assert code == 0
    code, _, err = invoke(runner, "get", ident)
    assert code == 1 and "no datapoint" in err
    code, out, _ = invoke(runner, "names", "id", "experiment", "EXP42")
    assert out.strip() == name_to_id("experiment", "EXP42")
    code, out, _ = invoke(runner, "names", "pin", "experiment", "Legacy", "01JD3Q9V6X5J8Z0K2M4N6P8R0T")
    code, out, _ = invoke(runner, "names", "list", "experiment", "--json")
    assert {"name": "Legacy", "id": "01JD3Q9V6X5J8Z0K2M4N6P8R0T"} in json.loads(out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "value", "{not json"), "not valid JSON"),
        (("add", "value", "NaN"), "NaN is not JSON"),
        (("query", "[1, 2]"), "a selector is a JSON object"),
        (("query", '{"$where": "sleep(1)"}'), "$where"),
        (("add", "value", "1", "--meta", "novalue"), "not KEY=VALUE"),
        (("add", "value", "1", "--timestamp", "yesterday"), "timestamp"),
    ],
)
def test_bad_input_gets_a_clear_error(runner: CliRunner, args: tuple[str, ...], message: str) -> None:
    result = runner.invoke(cli, list(args))
    assert result.exit_code != 0
    assert message in result.stderr + result.stdout


def test_missing_and_directory_files_are_reported(runner: CliRunner, tmp_path: Path, run_txt: Path) -> None:
    result = runner.invoke(cli, ["add", "file", str(run_txt), str(tmp_path / "gone.csv"), str(tmp_path)])
    assert result.exit_code == 1
    assert "gone.csv" in result.stderr and "2 of 3 file(s) were not captured" in result.stderr
    assert "captured" in result.stdout  # the good file still went in
    assert json.loads(runner.invoke(cli, ["query", "{}", "--count", "--json"]).stdout) == {"count": 1}


def test_large_file_shows_progress(runner: CliRunner, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(40 * 1024 * 1024)
    result = runner.invoke(cli, ["add", "file", str(big)])
    assert result.exit_code == 0
    assert "Capturing big.bin" in result.stderr


def test_value_from_stdin(runner: CliRunner) -> None:
    code, out, _ = invoke(runner, "add", "value", "-", "--json", input='{"from": "stdin"}')
    assert code == 0 and json.loads(out)["value"] == {"from": "stdin"}


def test_console_script(tmp_path: Path) -> None:
    env = dict(os.environ, BENCHDATA_HOME=str(tmp_path / "home"))
    root = Path(__file__).resolve().parents[2]
    added = subprocess.run(["benchdata", "add", "value", '{"x": 1}', "--json"], capture_output=True, text=True, env=env, cwd=root, check=True)
    ident = json.loads(added.stdout)["_id"]
    info = subprocess.run(["benchdata", "info", "--json"], capture_output=True, text=True, env=env, check=True)
    facts = json.loads(info.stdout)
    assert facts["datapoints"] == 1 and facts["data_dir"].startswith(str(tmp_path / "home"))
    assert ident


def test_save_never_replaces_a_file_unasked_and_leaves_a_readable_copy(
        runner: CliRunner, run_txt: Path, tmp_path: Path) -> None:
    """An unrelated file at the destination was overwritten silently, and saved copies were
    mode 0600 (colleagues could not read them)."""
    code, out, _ = invoke(runner, "add", "file", str(run_txt), "--json")
    datapoint_id = json.loads(out)["_id"]
    unrelated = tmp_path / "existing.txt"
    unrelated.write_text("someone else's notes", encoding="utf-8")
    code, _out, err = invoke(runner, "save", datapoint_id, str(unrelated))
    assert code == 1 and err.strip() == (f"error: {unrelated} exists; nothing was written "
                                         "(--force replaces it)")
    assert unrelated.read_text(encoding="utf-8") == "someone else's notes"
    code, _out, _err = invoke(runner, "save", datapoint_id, str(unrelated), "--force")
    assert code == 0 and unrelated.read_bytes() == run_txt.read_bytes()

    previous = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.txt"
        code, _out, _err = invoke(runner, "save", datapoint_id, str(fresh))
    finally:
        os.umask(previous)
    assert code == 0 and fresh.stat().st_mode & 0o777 == 0o644
