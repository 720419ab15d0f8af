"""Hostile files in a watched folder (issue 14): names that are not UTF-8, symbolic links
out of the folder, replacements that keep size and mtime, and a concurrent failing capture
of the same bytes. Real files, the real store, real observers."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bson
import pytest
from click.testing import CliRunner

from app.cli import cli
from app.core import fsnames
from app.core.errors import ConflictError, SourceRefusedError, ValidationError
from app.core.models import FileDataPoint
from app.core.rows import row_to_document
from app.ingest.capture import Capturer, Prepared
from app.ingest.component import IngestComponent
from app.ingest.ledger import Ledger, LedgerEntry
from app.ingest.rules import WatchRule, add_rule
from app.service import BenchService
from tests.ingest.conftest import FAST

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

Start = Callable[..., Any]
ROOT = Path(__file__).resolve().parents[2]
LATIN1 = b"r\xe9sultat.csv"  # "résultat.csv" written by a Latin-1 system


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_document(service: BenchService, datapoint_id: str) -> dict[str, Any]:
    """The row as sync reads it, rebuilt into the MADSci document sync sends."""
    with service.store.reader() as conn:
        cursor = conn.execute("SELECT * FROM datapoints WHERE id = ?", (datapoint_id,))
        names = [column[0] for column in cursor.description]
        return row_to_document(dict(zip(names, cursor.fetchone())))


# -- names that are not UTF-8 (defect 1) ---------------------------------------------


def test_fsnames_keys_round_trip_and_never_collide_with_text_names() -> None:
    names = [os.fsdecode(raw) for raw in
             (LATIN1, b"a\\xe9\xff", b"dir\x80/c\xe9", b"plain.csv", "é.csv".encode())]
    keys = [fsnames.to_key(name) for name in names]
    assert [fsnames.from_key(key) for key in keys] == names
    assert all(fsnames.is_text(key) for key in keys)
    # The key of a non-text name is not the key of the text name it reads like.
    assert fsnames.to_key(os.fsdecode(b"a\\xe9\xff")) != fsnames.to_key("a\\xe9\\xff")
    assert fsnames.readable(os.fsdecode(LATIN1)) == "r\\xe9sultat.csv"


def test_a_latin1_file_name_does_not_stop_the_folder(
        service: BenchService, watched: Path, start_watch: Start) -> None:
    raw_path = os.fsencode(watched) + b"/" + LATIN1
    with open(raw_path, "wb") as out:
        out.write(b"latin-1 named result\n")
    (watched / "plain.csv").write_text("plainly named\n")
    h = start_watch()
    h.wait_captured(2)

    [odd] = h.captured("r\\xe9sultat.csv")
    assert odd.filename == "r\\xe9sultat.csv"
    assert odd.path == fsnames.readable(os.fsdecode(raw_path))
    assert odd.custom_metadata["ingest_path"] == "r\\xe9sultat.csv"
    assert base64.b64decode(odd.custom_metadata[fsnames.RAW_PATH_KEY]) == raw_path
    assert service.value(odd.datapoint_id) == b"latin-1 named result\n"
    # What sync sends to MongoDB encodes as BSON (strings must be valid UTF-8).
    bson.encode(stored_document(service, odd.datapoint_id))

    # The ledger knows it: rescans capture nothing again, and the folder keeps going.
    h.rescan_and_wait()
    (watched / "later.csv").write_text("arrived after the odd one\n")
    h.wait_captured(1, "later.csv")
    h.rescan_and_wait()
    assert service.count() == 3
    assert h.status().problems == {}


def test_add_file_captures_a_latin1_name_without_a_traceback(tmp_path: Path) -> None:
    raw_path = os.fsencode(tmp_path) + b"/" + LATIN1
    with open(raw_path, "wb") as out:
        out.write(b"1,2\n")
    env = {**os.environ, "BENCHDATA_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "app", "add", "file", raw_path, "--json"],
                          env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    document = json.loads(done.stdout)
    assert document["filename"] == "r\\xe9sultat.csv"
    assert base64.b64decode(document["custom_metadata"][fsnames.RAW_PATH_KEY]) == raw_path


# -- symbolic links (defect 2) -------------------------------------------------------


def test_links_out_of_the_folder_are_never_captured_and_the_status_says_why(
        service: BenchService, watched: Path, tmp_path: Path) -> None:
    secrets = service.paths.config_dir / "central.secrets"
    secrets.write_text("secret_key = do-not-capture\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "elsewhere.csv").write_text("not in the watched folder\n")
    (watched / "real.csv").write_text("the one real file\n")
    (watched / "secret.csv").symlink_to(secrets)
    (watched / "hostname.csv").symlink_to("/etc/hostname")
    (watched / "elsewhere.csv").symlink_to(outside / "elsewhere.csv")
    (watched / "outdir").symlink_to(outside, target_is_directory=True)
    (watched / "latest.csv").symlink_to(watched / "real.csv")  # stays inside: skipped

    rule = add_rule(service.paths, str(watched), quiet_seconds=0.3, observer="native")
    component = IngestComponent(service, [rule], options=FAST)
    component.start()
    try:
        worker = component.worker(rule.id)
        wait_for_status = _waiter(worker)
        wait_for_status(lambda s: s.captured == 1 and len(s.problems) == 4)
        problems = worker.status().problems
        assert "this bench's own data or configuration folder" in problems["secret.csv"]
        assert "outside the watched folder" in problems["hostname.csv"]
        assert "outside the watched folder" in problems["elsewhere.csv"]
        assert "outside the watched folder" in problems["outdir"]

        # A file linked in later, while watching, is refused too (events path).
        (watched / "late.csv").symlink_to(secrets)
        wait_for_status(lambda s: "late.csv" in s.problems)

        # `watch list` (another process, in practice) shows the same reasons, once the
        # worker has saved them (after the step that found them).
        ledger = Ledger(service.store)
        wait_for_status(lambda _s: len(ledger.problems(rule.id)) == 5)
        listed = CliRunner().invoke(cli, ["--data-dir", str(service.paths.data_dir), "watch",
                                          "list", "--json"], catch_exceptions=False)
        assert listed.exit_code == 0, listed.output
        [shown] = json.loads(listed.output)
        assert set(shown["problems"]) == {"secret.csv", "hostname.csv", "elsewhere.csv",
                                          "outdir", "late.csv"}

        # A removed link stops being reported after the next full scan.
        (watched / "hostname.csv").unlink()
        component.rescan(rule.id)
        wait_for_status(lambda s: "hostname.csv" not in s.problems)
    finally:
        component.stop()
    datapoints = list(service.iter_query({}))
    assert [dp.filename for dp in datapoints] == ["real.csv"]
    assert all(b"do-not-capture" not in service.value(dp.datapoint_id) for dp in datapoints)


def test_the_bench_folders_inside_a_watched_folder_reached_through_a_link_are_skipped(
        tmp_path: Path) -> None:
    """The watched folder holds the bench's own store and is named through a link: the
    store's files (blobs, database, secrets) are never captured; the instrument's are."""
    real = tmp_path / "real-instrument"
    real.mkdir()
    (real / "run.csv").write_text("instrument output\n")
    alias = tmp_path / "instrument"
    alias.symlink_to(real, target_is_directory=True)
    with BenchService(real / "bench") as service:
        (service.paths.config_dir / "central.secrets").write_text("secret_key = no\n")
        service.capture_value({"already": "stored"})
        rule = WatchRule(id="rule1", path=str(alias), quiet_seconds=0.3, observer="native")
        component = IngestComponent(service, [rule], options=FAST)
        component.start()
        try:
            worker = component.worker(rule.id)
            wait = _waiter(worker)
            wait(lambda s: s.captured == 1 and s.scans >= 1)
            component.rescan(rule.id)
            wait(lambda s: s.scans >= 2 and s.waiting == 0)
            assert worker.status().captured == 1
            assert worker.status().problems == {}  # not entered at all, so nothing refused
        finally:
            component.stop()
        assert sorted(dp.data_type.value for dp in service.iter_query({})) == ["file", "json"]


def test_a_dataset_archive_never_holds_the_bench_folders(tmp_path: Path) -> None:
    watched = tmp_path / "instrument"
    (watched / "exp1").mkdir(parents=True)
    (watched / "exp1" / "fid").write_bytes(b"free induction decay")
    (watched / "exp2").mkdir()
    (watched / "exp2" / "acqus").write_text("parameters\n")
    with BenchService(watched / "exp2" / "bench") as service:
        (service.paths.config_dir / "central.secrets").write_text("secret_key = no\n")
        rule = WatchRule(id="rule1", path=str(watched), quiet_seconds=0.3, observer="native",
                         datasets=True)
        component = IngestComponent(service, [rule], options=FAST)
        component.start()
        try:
            _waiter(component.worker(rule.id))(lambda s: s.captured == 2)
        finally:
            component.stop()
        archives = {dp.filename: dp for dp in service.iter_query({})}
        with service.open_file(archives["exp2.zip"].datapoint_id) as stream, \
                zipfile.ZipFile(stream) as bundle:
            assert bundle.namelist() == ["acqus"]


def test_a_rule_on_the_bench_folders_is_refused_with_one_sentence(
        service: BenchService) -> None:
    with pytest.raises(ValidationError, match="this bench's own data or configuration"):
        add_rule(service.paths, str(service.paths.data_dir / "files"))


def _waiter(worker: Any) -> Callable[[Callable[[Any], bool]], None]:
    def wait(check: Callable[[Any], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not check(worker.status()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; status is {worker.status()}")
            time.sleep(0.02)
    return wait


def test_a_capture_refuses_a_folder_swapped_for_a_link_after_the_scan(
        service: BenchService, watched: Path, tmp_path: Path) -> None:
    """The scan saw sub/data.csv; before the copy, sub became a link to another folder
    holding a file of the same name: the copy is refused, nothing is stored."""
    (watched / "sub").mkdir()
    seen = watched / "sub" / "data.csv"
    seen.write_text("inside\n")
    before = os.lstat(seen)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.csv").write_text("outside\n")
    os.rename(watched / "sub", tmp_path / "moved-away")
    (watched / "sub").symlink_to(outside, target_is_directory=True)
    capturer = Capturer(service, Ledger(service.store), WatchRule(id="r", path=str(watched)),
                        tmp_path / "staging")
    with pytest.raises(SourceRefusedError, match="outside the watched folder"):
        capturer.prepare_file("sub/data.csv", before)
    assert not service.files.exists(sha256_of(b"outside\n"))


def test_add_file_on_a_link_names_its_target_and_refuses_the_bench_folders(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "BENCHDATA_HOME": str(home), "PYTHONPATH": str(ROOT)}
    (home / "config").mkdir(parents=True)
    (home / "config" / "central.secrets").write_text("secret_key = do-not-capture\n")
    (tmp_path / "target.csv").write_text("1,2\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "target.csv")
    (tmp_path / "secret.csv").symlink_to(home / "config" / "central.secrets")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app", *args], env=env, text=True,
                              capture_output=True, timeout=120)

    linked = run("add", "file", str(tmp_path / "link.csv"))
    assert linked.returncode == 0, linked.stderr
    assert f"capturing its target {tmp_path / 'target.csv'}" in linked.stderr
    refused = run("add", "file", str(tmp_path / "secret.csv"))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "bench's own data or configuration folder" in refused.stderr
    assert run("query", "{}", "--json").stdout.count("do-not-capture") == 0


# -- replacements that keep size and mtime (defect 4) ----------------------------------


def _replace_keeping_stats(path: Path, data: bytes, *, new_inode: bool) -> None:
    """What ``rsync -t`` (new inode, renamed into place) or ``cp -p`` onto an existing
    file (same inode, rewritten) leave: new bytes, the same size and the old mtime."""
    old = os.stat(path)
    assert len(data) == old.st_size
    if new_inode:
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_bytes(data)
        os.utime(temp, ns=(old.st_atime_ns, old.st_mtime_ns))
        os.replace(temp, path)
    else:
        with open(path, "r+b") as out:
            out.write(data)
        os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    now = os.stat(path)
    assert (now.st_size, now.st_mtime_ns) == (old.st_size, old.st_mtime_ns)


@pytest.mark.parametrize("new_inode", [True, False], ids=["rsync-t", "cp-p"])
def test_a_replacement_with_the_same_size_and_mtime_is_captured_live(
        service: BenchService, watched: Path, start_watch: Start, new_inode: bool) -> None:
    target = watched / "run.csv"
    target.write_bytes(b"first  result\n")
    h = start_watch()
    [first] = h.wait_captured(1, "run.csv")
    _replace_keeping_stats(target, b"second result\n", new_inode=new_inode)
    second = h.wait_captured(2, "run.csv")[1]
    assert second.replaces == first.datapoint_id
    assert second.sha256 == sha256_of(b"second result\n")
    h.rescan_and_wait()
    assert service.count() == 2


def test_a_replacement_with_the_same_size_and_mtime_is_captured_at_restart(
        service: BenchService, watched: Path, start_watch: Start) -> None:
    target = watched / "run.csv"
    target.write_bytes(b"first  result\n")
    first_run = start_watch()
    [first] = first_run.wait_captured(1, "run.csv")
    first_run.stop()
    _replace_keeping_stats(target, b"second result\n", new_inode=True)
    second_run = start_watch()
    [second] = second_run.wait_captured(1, "run.csv")
    assert second.replaces == first.datapoint_id
    assert second.sha256 == sha256_of(b"second result\n")


def test_same_content_under_a_new_identity_is_read_once_not_captured_again(
        service: BenchService, watched: Path, start_watch: Start) -> None:
    target = watched / "run.csv"
    target.write_bytes(b"same bytes\n")
    h = start_watch()
    h.wait_captured(1, "run.csv")
    _replace_keeping_stats(target, b"same bytes\n", new_inode=True)  # a copy of itself
    h.wait_event("unchanged", "run.csv")
    row = h.component.ledger.lookup("rule1", "run.csv")
    assert (row.ino, row.ctime_ns) == (os.stat(target).st_ino, os.stat(target).st_ctime_ns)
    h.rescan_and_wait()
    assert len(h.of_kind("unchanged", "run.csv")) == 1 and service.count() == 1


def test_rows_from_before_inode_tracking_learn_it_without_a_capture(
        service: BenchService, watched: Path, start_watch: Start) -> None:
    target = watched / "old.csv"
    target.write_bytes(b"captured by an older version\n")
    stat = os.stat(target)
    Ledger(service.store).record([LedgerEntry("rule1", "old.csv", stat.st_size,
                                              stat.st_mtime_ns, sha256_of(target.read_bytes()),
                                              "01JAAAAAAAAAAAAAAAAAAAAAAA")])
    h = start_watch()
    h.wait_first_scan()
    h.wait_idle()
    row = h.component.ledger.lookup("rule1", "old.csv")
    assert (row.ino, row.ctime_ns) == (stat.st_ino, stat.st_ctime_ns)
    assert h.captured() == [] and h.of_kind("unchanged") == []


# -- the watcher's blob is held until its commit (defect 8) ----------------------------


def test_a_failing_capture_of_the_same_bytes_cannot_remove_the_watchers_blob(
        service: BenchService, watched: Path, tmp_path: Path) -> None:
    data = b"instrument output\n"
    source = watched / "run.csv"
    source.write_bytes(data)
    rule = WatchRule(id="rule1", path=str(watched))
    ledger = Ledger(service.store)
    capturer = Capturer(service, ledger, rule, tmp_path / "staging")
    prepared = capturer.prepare_file("run.csv", os.stat(source))
    assert isinstance(prepared, Prepared)
    sha256 = sha256_of(data)

    # Meanwhile someone captures the same bytes and fails (an id already used): the
    # failed capture removes the blobs it brought in that no row uses.
    copy = tmp_path / "copy.csv"
    copy.write_bytes(data)
    taken = service.capture_value(1)
    with pytest.raises(ConflictError):
        service.submit(FileDataPoint(path=str(copy), datapoint_id=taken.datapoint_id))
    assert service.files.exists(sha256)  # held by the watcher's capture

    [stored] = capturer.store([prepared])
    assert service.value(stored.datapoint_id) == data
    assert ledger.lookup("rule1", "run.csv").datapoint_id == stored.datapoint_id


def test_a_capture_that_is_not_stored_releases_its_blob(
        service: BenchService, watched: Path, tmp_path: Path) -> None:
    source = watched / "run.csv"
    source.write_bytes(b"never stored\n")
    capturer = Capturer(service, Ledger(service.store),
                        WatchRule(id="rule1", path=str(watched)), tmp_path / "staging")
    prepared = capturer.prepare_file("run.csv", os.stat(source))
    assert isinstance(prepared, Prepared)
    Capturer.abandon(prepared)
    assert not service.files.exists(sha256_of(b"never stored\n"))
