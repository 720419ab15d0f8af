"""``benchdata list`` reads row summaries, not models: the same lines, without pydantic."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from click.testing import CliRunner

from app.cli import cli
from app.commands.output import summary_line
from app.core.models import FileDataPoint, ObjectStorageDataPoint, ValueDataPoint
from app.core.paths import bench_paths
from app.core.rows import datapoint_summary
from app.core.store import LocalStore
from app.core.units import human_size

ROOT = Path(__file__).resolve().parents[2]


def _varied_datapoints() -> list:
    start = datetime(2026, 3, 1, 12, 0, 0)
    return [
        ValueDataPoint(label="short", value={"t": 21.5}, data_timestamp=start),
        ValueDataPoint(label=None, value="ä" * 80,  # cut at 60, kept unescaped
                       data_timestamp=start + timedelta(seconds=1)),
        ValueDataPoint(label="none", value=None,
                       data_timestamp=datetime(2026, 3, 1, 12, 0, 2, tzinfo=timezone.utc)),
        FileDataPoint(label="with facts", path="/bench/run 1.txt", filename="run 1.txt",
                      size_bytes=12_345_678, sha256="0" * 64,
                      data_timestamp=start + timedelta(seconds=3)),
        FileDataPoint(label="path only", path="/bench/raw.bin",
                      data_timestamp=start + timedelta(seconds=4)),
        ObjectStorageDataPoint(label="s3", storage_endpoint="s3.example:9000",
                               path="lab/obj.dat", bucket_name="b", object_name="obj.dat",
                               size_bytes=10, data_timestamp=start + timedelta(seconds=5)),
    ]


def _store_varied(data_dir: Path) -> None:
    store = LocalStore(bench_paths(data_dir).database)
    try:
        store.insert(_varied_datapoints())
    finally:
        store.close()


def test_row_summaries_equal_the_models_summaries(tmp_path: Path) -> None:
    _store_varied(tmp_path)
    store = LocalStore(bench_paths(tmp_path).database)
    try:
        from_rows = store.latest_summaries(0)
        from_models = [datapoint_summary(dp) for dp in store.latest(0)]
    finally:
        store.close()
    assert len(from_rows) == 6
    assert from_rows == from_models
    lines = [summary_line(summary) for summary in from_rows]  # newest first
    assert "  object_storage  s3  lab/obj.dat (10 B)" in lines[0]
    assert lines[1].endswith("  file    path only  /bench/raw.bin")
    assert lines[2].endswith("  file    with facts  run 1.txt (" + human_size(12_345_678) + ")")
    assert lines[3].endswith("  json    none  null")
    assert lines[4].endswith('  json    -  "' + "ä" * 56 + "...")
    assert lines[5].endswith('  json    short  {"t": 21.5}')


def test_list_prints_what_query_prints(tmp_path: Path) -> None:
    """Summaries from rows (list) and from models (query) are the same lines."""
    _store_varied(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(cli, ["--data-dir", str(tmp_path), "list", "-n", "0"],
                           catch_exceptions=False)
    queried = runner.invoke(cli, ["--data-dir", str(tmp_path), "query", "{}", "--limit", "0"],
                            catch_exceptions=False)
    assert listed.exit_code == 0 and queried.exit_code == 0
    assert listed.stdout == queried.stdout
    assert len(listed.stdout.splitlines()) == 6


def test_list_loads_no_pydantic(tmp_path: Path) -> None:
    """Most of `benchdata list`'s start-up was pydantic (bench/bench_startup.py)."""
    env = {**os.environ, "BENCHDATA_HOME": str(tmp_path / "bench"), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "app", "add", "value", "1"], env=env, check=True,
                   capture_output=True, cwd=ROOT)
    code = ("import atexit, runpy, sys; atexit.register(lambda: print(sorted({m.split('.')[0] "
            "for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core', "
            "'sqlalchemy')}), file=sys.stderr)); sys.argv = ['benchdata', 'list', '-n', '1']; "
            "runpy.run_module('app', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
