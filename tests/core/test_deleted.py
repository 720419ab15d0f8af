"""Recently deleted datapoints: listed with when and by whom, restorable as a new revision
for ``deleted.retention_days``; ``benchdata deleted`` and ``benchdata undelete``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.core.config import save_section
from app.core.errors import NotFoundError, ValidationError
from app.service import BenchService


def test_a_deleted_datapoint_is_listed_and_restored_as_a_new_revision(tmp_path: Path) -> None:
    source = tmp_path / "trace.csv"
    source.write_text("1,2\n")
    with BenchService(tmp_path / "bench") as bench:
        save_section(bench.paths, "bench", {"user": "alice", "node": "UV-Vis 2"})
        dp = bench.capture_file(source, label="trace")
        bench.delete(dp.datapoint_id)
        [gone] = bench.recently_deleted()
        assert gone.datapoint.datapoint_id == dp.datapoint_id
        assert gone.deleted_by == "alice on UV-Vis 2" and gone.revision == 2
        assert bench.files.exists(str(dp.sha256))
        restored = bench.restore(dp.datapoint_id)
        assert restored.label == "trace"
        stored = bench.get_stored(dp.datapoint_id)
        assert stored.revision == 3 and stored.sync_state == "pending"
        assert bench.value(dp.datapoint_id) == b"1,2\n"
        assert [d.datapoint_id for d in bench.search("trace").items] == [dp.datapoint_id]
        assert bench.recently_deleted() == []
        with pytest.raises(NotFoundError):
            bench.restore(dp.datapoint_id)  # not deleted (any more)
        bench.delete(dp.datapoint_id)  # deleted again: listed again
        assert [d.revision for d in bench.recently_deleted()] == [4]


def test_past_the_retention_period_a_deletion_is_final(tmp_path: Path) -> None:
    with BenchService(tmp_path / "bench") as bench:
        dp = bench.capture_value(1)
        bench.delete(dp.datapoint_id)
        save_section(bench.paths, "deleted", {"retention_days": 0})
        assert bench.recently_deleted() == []
        with pytest.raises(ValidationError, match="can no longer be restored"):
            bench.restore(dp.datapoint_id)


def test_cli_lists_and_undeletes(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "bench")]
    with BenchService(tmp_path / "bench") as bench:
        dp = bench.capture_value({"v": 1}, label="run 9")
        bench.delete(dp.datapoint_id, by="bob")
    listed = runner.invoke(cli, [*data, "deleted", "--json"])
    assert listed.exit_code == 0, listed.output
    [entry] = json.loads(listed.output)
    assert (entry["datapoint_id"], entry["label"], entry["deleted_by"]) == (
        dp.datapoint_id, "run 9", "bob")
    assert "by bob" in runner.invoke(cli, [*data, "deleted"]).output
    done = runner.invoke(cli, [*data, "undelete", dp.datapoint_id])
    assert done.exit_code == 0 and f"restored {dp.datapoint_id}" in done.output
    again = runner.invoke(cli, [*data, "undelete", dp.datapoint_id])
    assert again.exit_code == 1 and "no deleted datapoint" in again.output
    assert "Nothing was deleted recently." in runner.invoke(cli, [*data, "deleted"]).output
