"""A bench among many: a first pull that resumes, a pull window that costs ids, not
documents, and passes that ask the central store only for what they need."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from app.core.config import save_section
from app.core.models import ValueDataPoint
from app.service import BenchService
from tests.sync.fleetcount import counted_engine
from tests.support.servers import central_env
from tests.support.stores import remote_rows
from tests.support.waiting import wait_until
from sync.central import CentralDatabase
from sync.engine import SyncEngine
from sync.fleet import server_time
from sync.verify import Scrubber
from sync.stamps import WRITE_BOUND_S

ROOT = Path(__file__).resolve().parents[2]
CLI = "from app.cli import main; main()"


def seed_central(bench_dir: Path, settings: Any, count: int, label: str = "seed") -> set[str]:
    """``count`` values captured by one bench and pushed: the lab's existing data."""
    with BenchService(bench_dir) as bench, SyncEngine(bench, settings) as engine:
        made = bench.submit_many([ValueDataPoint(value={"i": i}, label=f"{label}-{i}")
                                  for i in range(count)])
        report = engine.run_pass(force=True, pull=False)
        assert report.ok and report.remaining == 0, report
    return {d.datapoint_id for d in made}


@pytest.mark.slow
def test_first_pull_killed_at_a_random_page_resumes_at_that_page(tmp_path: Path,
                                                                  central: Any) -> None:
    seed = int(os.environ.get("BENCHDATA_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    page, total, overlap = 40, 2400, WRITE_BOUND_S  # the least overlap a pull uses
    settings = central.model_copy(update={"pull_page_size": page, "pull_overlap_s": overlap})
    ids = seed_central(tmp_path / "lab", settings, total)
    # The lab's data is older than the overlap, as a lab's history is (seeded in seconds,
    # it would all lie in a 120 s window, which a resumed pull re-reads as ids).
    newest = _newest_write(central)
    with CentralDatabase(central) as database:
        wait_until(lambda: (server_time(database) or newest) > newest + timedelta(
            seconds=overlap + 1), timeout=30, what="the seeded data to age past the overlap")
    data_dir = tmp_path / "new-bench"
    with BenchService(data_dir) as bench:
        save_section(bench.paths, "central", {"pull_page_size": page, "pull_overlap_s": overlap})
    env = {**os.environ, **central_env(settings), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", CLI, "--data-dir", str(data_dir), "sync",
                                "--once"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    kill_after = rng.randrange(3, total // page - 5) * page
    try:
        wait_until(lambda: remote_rows(data_dir) >= kill_after or process.poll() is not None,
                   timeout=120, what=f"{kill_after} rows pulled")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
    held = remote_rows(data_dir)
    assert 0 < held < total, f"seed {seed}: the pull was not interrupted ({held} rows)"

    with BenchService(data_dir) as bench, SyncEngine(bench, settings) as engine:
        mongo, _s3 = counted_engine(engine)
        report = engine.run_pass(force=True)
        assert report.ok, f"seed {seed}: {report}"
        assert {dp.datapoint_id for dp in bench.iter_query({})} == ids
    # Only what the killed run had not stored yet is read again in full, plus at most the
    # page it was in; the window before the saved cursor costs ids only.
    assert mongo.full_documents <= total - held + page, \
        f"seed {seed}: {mongo.full_documents} read in full, {held} held before"
    assert report.pull_fetched == mongo.full_documents
    # Nor is what it held scanned again as ids: it resumes right after its settled cursor.
    assert report.pull_scanned <= total - held + page, \
        f"seed {seed}: {report.pull_scanned} window entries read, {held} held before"


def _newest_write(settings: Any) -> datetime:
    with CentralDatabase(settings) as database:
        newest = next(iter(database.datapoints.find({}, sort=[("sync_written_at", -1)], limit=1)))
    moment = newest["sync_written_at"]
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def test_pull_window_reads_only_new_documents_in_full(tmp_path: Path, central: Any) -> None:
    writers = [BenchService(tmp_path / name) for name in ("a", "b")]
    engines = [SyncEngine(service, central) for service in writers]
    try:
        with BenchService(tmp_path / "reader") as reader, SyncEngine(reader, central) as engine:
            mongo, _s3 = counted_engine(engine)
            new_total = fetched_total = 0
            for round_ in range(6):
                new = 0
                for index, (service, writer) in enumerate(zip(writers, engines)):
                    count = 5 + 3 * index + round_
                    service.submit_many([ValueDataPoint(value=i, label=f"r{round_}")
                                         for i in range(count)])
                    assert writer.run_pass(force=True, pull=False).ok
                    new += count
                mongo.reset()
                report = engine.run_pass(force=True)
                assert report.ok and report.pulled == new, report
                new_total += new
                fetched_total += mongo.full_documents
                # Every earlier round is still inside the 120 s window: scanned, not read.
                assert report.pull_scanned >= new_total
            assert fetched_total <= 1.5 * new_total, (fetched_total, new_total)
            mongo.reset()
            idle = engine.run_pass(force=True)
            assert idle.ok and idle.pulled == 0 and mongo.full_documents == 0
            assert reader.count({}) == new_total
    finally:
        for service, writer in zip(writers, engines):
            writer.close()
            service.close()


def test_madsci_documents_after_the_first_pull_still_arrive(tmp_path: Path,
                                                            central: Any) -> None:
    import pymongo
    from ulid import ULID

    with BenchService(tmp_path / "reader") as reader, SyncEngine(reader, central) as engine:
        seed_central(tmp_path / "lab", central, 3)
        assert engine.run_pass(force=True).pulled == 3  # the cursor is saved
        client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value())
        try:
            collection = client[central.mongo_database][central.mongo_collection]
            ident = str(ULID())
            collection.insert_one({"_id": ident, "label": "from MADSci", "data_type": "json",
                                   "value": 7, "data_timestamp": "2026-01-01T00:00:00",
                                   "ownership_info": {}})
        finally:
            client.close()
        report = engine.run_pass(force=True)
        assert report.ok, report
        assert reader.get(ident).value == 7


def test_compound_index_only_where_the_server_can_hold_it(central: Any) -> None:
    from sync.central import CentralDatabase

    with CentralDatabase(central) as database:
        assert not database.supports_id_compound_indexes()  # nx-27017 says who it is
        database.ensure_indexes()
        keys = [list(index["key"]) for index in database.datapoints.list_indexes()]
        assert ["sync_written_at"] in keys
        assert not [key for key in keys if "_id" in key and len(key) > 1], keys
        database.datapoints.update_one({"_id": "x"}, {"$set": {"v": 1}}, upsert=True)


def test_idle_and_value_only_passes_never_touch_object_storage(tmp_path: Path, central: Any,
                                                               run_txt: Path) -> None:
    with BenchService(tmp_path / "a") as bench, SyncEngine(bench, central) as engine:
        mongo, s3 = counted_engine(engine)
        bench.capture_file(run_txt, label="a file")
        assert engine.run_pass().ok  # start: bucket checked once, the file uploaded
        assert s3.total > 0
        s3.requests.clear()
        mongo.reset()
        for round_ in range(5):
            assert engine.run_pass().ok  # idle
            bench.capture_value(round_, label="value")
            report = engine.run_pass()  # value only
            assert report.ok and report.confirmed == 1
        assert s3.total == 0, s3.requests
        assert "ping" not in mongo.commands
        # A file again: uploaded without asking for the bucket first.
        bench.capture_file(run_txt, label="another file")
        assert engine.run_pass().confirmed == 1
        assert not [r for r in s3.requests if r.startswith("HEAD ") and "/" not in r], s3.requests


def test_a_dead_object_storage_holds_back_files_only_and_is_asked_again(
        tmp_path: Path, private_central: Any, run_txt: Path) -> None:
    settings = private_central.settings
    with BenchService(tmp_path / "a") as bench, SyncEngine(bench, settings) as engine:
        assert engine.run_pass().ok
        private_central.weed.stop()
        bench.capture_file(run_txt, label="waits")
        bench.capture_value(1, label="goes")
        report = engine.run_pass(force=True)  # the upload fails; the value goes
        assert report.confirmed == 1 and report.retrying == 1, report
        report = engine.run_pass(force=True)  # after an error: the bucket is asked first
        assert report.objects_error and report.central_ok, report
        assert engine.run_pass(force=True).objects_error  # forced: asked again
        private_central.weed.start()
        report = engine.run_pass(force=True)
        assert report.ok and report.confirmed == 1, report


def test_stale_upload_cleanup_aborts_only_this_benchs_own_uploads(
        tmp_path: Path, central: Any, run_txt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from ulid import ULID

    from sync import engine as engine_module
    from sync.objectnames import object_name_for
    from sync.objects import ObjectStore

    monkeypatch.setattr(engine_module, "ABANDONED_UPLOAD_AGE", timedelta(0))
    with BenchService(tmp_path / "a") as bench, SyncEngine(bench, central) as engine, \
            ObjectStore(central) as objects:
        mine = bench.capture_value(1, label="captured here")
        theirs = str(ULID())  # another bench's, offline mid-upload
        for ident in (mine.datapoint_id, theirs):
            objects.client._create_multipart_upload(
                central.bucket, object_name_for(central, ident, "big.bin"), {})
        report = engine.run_pass(force=True)
        assert report.ok and report.aborted_uploads == 1, report
        left = [name for name, _upload in objects.list_uploads()]
        assert left == [object_name_for(central, theirs, "big.bin")]


def test_one_bench_stamps_what_madsci_wrote(tmp_path: Path, central: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import pymongo
    from ulid import ULID

    from sync import fleet

    monkeypatch.setattr(fleet, "HEARTBEAT_INTERVAL_S", 0.0)
    monkeypatch.setattr(fleet, "STAMP_INTERVAL_S", 0.0)
    services = [BenchService(tmp_path / name) for name in ("a", "b", "c")]
    engines = [SyncEngine(service, central) for service in services]
    client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value())
    try:
        counters = [counted_engine(engine)[0] for engine in engines]
        for engine in engines:
            assert engine.run_pass().ok  # each beats once: all three are live now
        for counter in counters:
            counter.reset()
        collection = client[central.mongo_database][central.mongo_collection]
        ident = str(ULID())
        collection.insert_one({"_id": ident, "label": "from MADSci", "data_type": "json",
                               "value": 7, "data_timestamp": "2026-01-01T00:00:00",
                               "ownership_info": {}})
        for _ in range(2):
            for engine in engines:
                assert engine.run_pass().ok
        stampers = [e.bench_id for e, c in zip(engines, counters) if c.commands["update"]]
        assert stampers == [min(e.bench_id for e in engines)]
        assert all(service.get(ident).value == 7 for service in services)
    finally:
        client.close()
        for service, engine in zip(services, engines):
            engine.close()
            service.close()


@pytest.mark.allow_error_logs  # one bench has a wrong secret on purpose
def test_heartbeats_and_fleet_status_show_benches_behind_and_offline(
        tmp_path: Path, central: Any, run_txt: Path) -> None:
    import json
    from datetime import datetime, timedelta, timezone

    import pymongo
    from click.testing import CliRunner

    from app.cli import cli
    from sync.central import CentralDatabase
    from sync.fleet import fleet_status

    from pydantic import SecretStr

    broken = central.model_copy(update={"secret_key": SecretStr("wrong-secret")})
    names = ("ok", "behind", "gone")
    services = {name: BenchService(tmp_path / name) for name in names}
    engines = {"ok": SyncEngine(services["ok"], central),
               "behind": SyncEngine(services["behind"], broken),
               "gone": SyncEngine(services["gone"], central)}
    try:
        services["behind"].capture_file(run_txt, label="cannot go")
        services["ok"].capture_file(run_txt, label="kept")
        assert Scrubber(services["ok"]).run().ok  # its heartbeat carries the result
        for engine in engines.values():
            engine.run_pass()
            engine.run_pass()  # a second pass within the minute writes no second heartbeat
        ids = {name: engine.bench_id for name, engine in engines.items()}
        client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value())
        try:
            benches = client[central.mongo_database]["benches"]
            assert benches.count_documents({}) == 3
            benches.update_one({"_id": ids["gone"]}, {"$set": {
                "seen_at": datetime.now(timezone.utc) - timedelta(minutes=30)}})
        finally:
            client.close()
        with CentralDatabase(central) as database:
            rows = {r["bench_id"]: r for r in fleet_status(database, behind_after_s=0)}
        assert rows[ids["gone"]]["offline"] and not rows[ids["ok"]]["offline"]
        assert rows[ids["gone"]]["silent_s"] > 29 * 60
        behind = rows[ids["behind"]]
        assert behind["behind"] and behind["attention"] and behind["backlog_count"] == 1
        assert any("denied" in p or "secret" in p.lower() for p in behind["problems"]), behind
        ok = rows[ids["ok"]]
        assert not (ok["behind"] or ok["attention"]) and ok["version"] and ok["disk_free_bytes"]
        assert ok["last_scrub"]["ok"] and ok["last_scrub"]["files"] == 1, ok["last_scrub"]
        assert "all intact (1 file(s), local)" in ok["last_scrub"]["summary"]
        assert ok["scrub_age_s"] is not None and rows[ids["gone"]]["last_scrub"] is None
        env = central_env(central)
        result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "ok"), "fleet", "status",
                                          "--json"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        listed = json.loads(result.output)
        assert listed[0]["bench_id"] == ids["gone"]  # most urgent first
        table = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "ok"), "fleet", "status"],
                                   env=env, catch_exceptions=False)
        assert "offline" in table.output and "needs attention" in table.output, table.output
        ok_line = next(line for line in table.output.splitlines() if ids["ok"] in line)
        assert " ok, " in ok_line and " ago" in ok_line, table.output
        gone_line = next(line for line in table.output.splitlines() if ids["gone"] in line)
        assert " never " in gone_line, table.output
    finally:
        for name in names:
            engines[name].close()
            services[name].close()


def test_a_heartbeat_reports_a_failed_scrub_as_a_problem(tmp_path: Path, run_txt: Path) -> None:
    from sync.engine import sync_status
    from sync.fleet import heartbeat_fields

    with BenchService(tmp_path / "b") as bench:
        assert heartbeat_fields(bench, sync_status(bench))["last_scrub"] is None
        ident = bench.capture_file(run_txt).datapoint_id
        bench.files.path_for(str(bench.get(ident).sha256)).unlink()  # type: ignore[attr-defined]
        assert not Scrubber(bench).run().ok
        fields = heartbeat_fields(bench, sync_status(bench))
    scrub = fields["last_scrub"]
    assert not scrub["ok"] and scrub["problems"] == 1 and scrub["files"] == 1, scrub
    assert fields["problems"] == [f"last scrub: {scrub['summary']}"]
    assert "1 problem(s)" in scrub["summary"]


def test_scoped_pull_and_out_of_scope_datapoints_on_demand(
        tmp_path: Path, central: Any, run_txt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.errors import NotFoundError

    for key, value in central_env(central).items():
        monkeypatch.setenv(key, value)  # the service's own readers (records, files)
    with BenchService(tmp_path / "a") as a, SyncEngine(a, central) as engine_a:
        inside = [a.capture_value(i, label="in", ownership=a.ownership(experiment="EXP1"))
                  for i in range(4)]
        inside += [a.capture_value(i, label="in", ownership=a.ownership(campaign="C1"))
                   for i in range(3)]
        outside = [a.capture_value(i, label="out", ownership=a.ownership(experiment="EXP2"))
                   for i in range(5)]
        far_file = a.capture_file(run_txt, label="far", ownership=a.ownership(experiment="EXP3"))
        assert engine_a.run_pass(force=True).ok
    # Pages of 2: the scope must hold across the keyset's pages (nx-27017 answers some
    # forms of it with nothing after the first page).
    scoped = central.model_copy(update={"pull_page_size": 2, "pull_scope": {
        "experiment": ["EXP1"], "campaign": ["C1"]}})
    with BenchService(tmp_path / "b") as b, SyncEngine(b, scoped) as engine_b:
        mongo, _s3 = counted_engine(engine_b)
        report = engine_b.run_pass(force=True)
        assert report.ok and report.pulled == 7 and mongo.full_documents == 7, report
        keys = [list(i["key"]) for i in engine_b._central_db().datapoints.list_indexes()]
        assert ["ownership_info.experiment_id", "sync_written_at"] in keys
        assert b.count({}) == 7
        assert {d.datapoint_id for d in b.iter_query({})} == {d.datapoint_id for d in inside}
        # Out of scope: read from the central store when asked for by id, then kept.
        assert b.get(outside[2].datapoint_id).value == 2
        assert b.get_stored(outside[2].datapoint_id).origin == "remote"
        assert b.value(far_file.datapoint_id) == run_txt.read_bytes()
        with pytest.raises(NotFoundError):
            b.get("01M97CFB174Z4RTCEAE5G1RK0F")  # nowhere
        # Widening the scope pulls the rest from the scope's own start.
        wider = scoped.model_copy(update={"pull_scope": {"experiment": ["EXP1", "EXP2"],
                                                         "campaign": ["C1"]}})
        with SyncEngine(b, wider) as engine_wide:
            assert engine_wide.run_pass(force=True).pulled == 4  # one was held already
        assert b.count({}) == 7 + 5 + 1


def test_pull_scope_can_be_locked_by_the_site_file(tmp_path: Path) -> None:
    import json

    from app.core.config import save_section
    from app.core.site import LockedSettingError
    from sync.settings import load_settings

    site = Path(os.environ["BENCHDATA_SITE_CONFIG"])
    site.write_text(json.dumps({"central": {"pull_scope": {"lab": ["Chemistry"]}},
                                "locked": ["central.pull_scope"]}), encoding="utf-8")
    with BenchService(tmp_path / "b") as bench:
        assert load_settings(bench.paths).pull_scope == {"lab": ["Chemistry"]}
        with pytest.raises(LockedSettingError):
            save_section(bench.paths, "central", {"pull_scope": "everything"})


@pytest.mark.parametrize("selector, scope, expected", [
    ({"sync_written_at": {"$ne": None}}, None, {"sync_written_at": {"$ne": None}}),
    # One term: side by side (nx-27017 reads the whole collection in Python for a $and).
    ({"sync_written_at": {"$ne": None}}, {"experiment_id": ["E1"]},
     {"sync_written_at": {"$ne": None}, "ownership_info.experiment_id": "E1"}),
    ({"sync_written_at": {"$gte": 5}}, {"experiment_id": ["E1"]},
     {"sync_written_at": {"$gte": 5}, "ownership_info.experiment_id": "E1"}),
    # Beside a $or, nx-27017 lets other scopes through: $and.
    ({"sync_written_at": 1, "$or": [{"a": 1}]}, {"experiment_id": ["E1"]},
     {"$and": [{"sync_written_at": 1, "$or": [{"a": 1}]},
               {"ownership_info.experiment_id": "E1"}]}),
    # Several terms beside the keyset's own $or: only $and can hold both.
    ({"$or": [{"a": 1}]}, {"experiment_id": ["E1"], "lab_id": ["L1"]},
     {"$and": [{"$or": [{"a": 1}]}, {"$or": [{"ownership_info.experiment_id": "E1"},
                                             {"ownership_info.lab_id": "L1"}]}]}),
    ({"b": 2}, {"experiment_id": ["E1", "E2"]},
     {"$and": [{"b": 2}, {"$or": [{"ownership_info.experiment_id": "E1"},
                                  {"ownership_info.experiment_id": "E2"}]}]}),
])
def test_a_scope_narrows_the_pull_selector_without_and_where_it_can(
        selector: dict[str, Any], scope: Any, expected: dict[str, Any]) -> None:
    from sync.pull import in_scope

    assert in_scope(selector, scope) == expected


def test_a_scope_of_one_experiment_holds_across_pages(tmp_path: Path, central: Any) -> None:
    """One scope term beside the keyset's pages (the two-kind scope above goes under $and
    anyway): every page must still hold only the scope."""
    with BenchService(tmp_path / "a") as a, SyncEngine(a, central) as engine_a:
        mine = []
        for i in range(12):
            mine.append(a.capture_value(i, ownership=a.ownership(experiment="EXP1")))
            a.submit_many([ValueDataPoint(value=i, ownership_info=a.ownership(
                experiment=f"EXP{9 + j}")) for j in range(3)])
        assert engine_a.run_pass(force=True).ok
    scoped = central.model_copy(update={"pull_page_size": 3,
                                        "pull_scope": {"experiment": ["EXP1"]}})
    with BenchService(tmp_path / "b") as b, SyncEngine(b, scoped) as engine_b:
        report = engine_b.run_pass(force=True)
        assert report.ok and report.pulled == len(mine), report
        assert {d.datapoint_id for d in b.iter_query({})} == {d.datapoint_id for d in mine}
