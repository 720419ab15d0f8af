"""The sync process SIGKILLed at random points, many times: nothing lost, nothing twice."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest

from app.core.config import save_section
from app.service import BenchService
from tests.support.servers import central_env
from sync import engine as engine_module
from sync.engine import SyncEngine
from sync.objects import ObjectStore

ROOT = Path(__file__).resolve().parents[2]
_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def ulid_in(object_name: str) -> str:
    """The datapoint id an object name carries (old and new forms)."""
    found = _ULID.search(object_name)
    assert found is not None, object_name
    return found.group(0)
TRIALS = 24
CLI = "from app.cli import main; main()"


def _sync_process(data_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", CLI, "--data-dir", str(data_dir), "sync",
                             "--once"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _capture_some(data_dir: Path, rng: random.Random, trial: int) -> None:
    with BenchService(data_dir) as bench:
        for index in range(rng.randrange(3, 8)):
            bench.capture_value({"trial": trial, "i": index}, label=f"v{trial}")
        source = data_dir.parent / f"file-{trial}.bin"
        size = rng.choice([0, 1000, 150_000, 11 * 1024 * 1024 + 17]) if trial % 4 == 0 else \
            rng.choice([0, 10, 70_000])
        source.write_bytes(rng.randbytes(size))
        bench.capture_file(source, label="same-name-everywhere")
        if trial % 5 == 3:
            victim = bench.latest(3)[-1]
            bench.delete(victim.datapoint_id)
        if trial % 5 == 4:
            target = bench.latest(2)[-1]
            bench.update(target.datapoint_id, label=f"edited in {trial}")


@pytest.mark.slow
def test_sigkill_at_random_points_converges_exactly_once(tmp_path: Path, central: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seed = int(os.environ.get("BENCHDATA_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    data_dir = tmp_path / "bench"
    settings = central.model_copy(update={"part_size": 5 * 1024 * 1024})
    with BenchService(data_dir) as bench:
        section = settings.model_dump(mode="json", exclude={"secret_key", "mongo_url"})
        save_section(bench.paths, "central", section)
    env = {**os.environ, **central_env(settings), "PYTHONPATH": str(ROOT)}
    killed = 0
    for trial in range(TRIALS):
        _capture_some(data_dir, rng, trial)
        process = _sync_process(data_dir, env)
        # A pass over a trial's few captures takes about 0.7-1.5 s here (start-up included;
        # `sync --once` no longer waits for pymongo's threads at exit), so most runs are
        # killed: during start-up, connecting, uploading parts or writing records.
        delay = rng.uniform(0.05, 1.0)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait(timeout=30)
        assert process.stderr is not None
        stderr = process.stderr.read().decode(errors="replace")
        process.stderr.close()
        assert "Traceback" not in stderr, f"seed {seed}: {stderr}"
    assert killed >= TRIALS // 3, f"seed {seed}: only {killed} runs were killed"

    final = subprocess.run([sys.executable, "-c", CLI, "--data-dir", str(data_dir), "sync",
                            "--once"], env=env, cwd=ROOT, capture_output=True, timeout=300)
    assert final.returncode == 0, f"seed {seed}: {final.stdout!r} {final.stderr!r}"

    monkeypatch.setattr(engine_module, "ABANDONED_UPLOAD_AGE", timedelta(0))
    with BenchService(data_dir) as bench, SyncEngine(bench, settings) as engine:
        report = engine.run_pass(force=True)  # also aborts uploads orphaned by a kill
        assert report.ok and report.remaining == 0, f"seed {seed}: {report}"
        with bench.store.reader() as conn:
            rows = conn.execute("SELECT id, deleted, revision, sha256, data_type, sync_state "
                                "FROM datapoints").fetchall()
        assert {r[5] for r in rows} == {"confirmed"}, f"seed {seed}"
        live = {r[0]: r for r in rows if not r[1]}
        gone = {r[0] for r in rows if r[1]}
        client: Any = pymongo.MongoClient(settings.mongo_url.get_secret_value())
        try:
            database = client[settings.mongo_database]
            docs = {d["_id"]: d for d in database[settings.mongo_collection].find()}
            tombs = {d["_id"] for d in database[settings.tombstone_collection].find()}
        finally:
            client.close()
        assert set(docs) == set(live), f"seed {seed}"
        assert tombs == gone, f"seed {seed}"
        for ident, row in live.items():
            assert docs[ident]["sync_revision"] == row[2]
        with ObjectStore(settings) as objects:
            listed = list(objects.client.list_objects(settings.bucket, recursive=True))
            assert objects.list_uploads() == [], f"seed {seed}: unfinished uploads left"
            by_id: dict[str, list[str]] = {}
            for obj in listed:
                by_id.setdefault(ulid_in(obj.object_name), []).append(obj.object_name)
            assert all(len(names) == 1 for names in by_id.values()), f"seed {seed}"
            files = {i: r for i, r in live.items() if r[4] == "file"}
            assert set(files) <= set(by_id)
            for ident, row in files.items():
                doc = docs[ident]
                response = objects.client.get_object(settings.bucket, doc["object_name"])
                try:
                    digest = hashlib.sha256(response.read()).hexdigest()
                finally:
                    response.close()
                    response.release_conn()
                assert digest == row[3] == doc["sha256"], f"seed {seed}: {ident}"


RENAME_FILES = 40
RENAME_TRIALS = 8


def _move_state(data_dir: Path) -> tuple[int, int]:
    """(objects still under old names, moves recorded and not finished), read while a
    sync process works (a reader beside the writer, as WAL allows)."""
    conn = sqlite3.connect(f"file:{data_dir / 'store.sqlite3'}?mode=ro", uri=True, timeout=5)
    try:
        old = conn.execute("SELECT COUNT(*) FROM sync_objects "
                           "WHERE instr(object_name, '/') > 0").fetchone()[0]
        try:
            moving = conn.execute("SELECT COUNT(*) FROM sync_renames").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            moving = 0
    finally:
        conn.close()
    return int(old), int(moving)


def _after_finished_moves(data_dir: Path, k: int) -> Any:
    """Ready once k recorded moves have finished (their old objects deleted), counted down
    from the most moves seen recorded at once. Monotone, so a 5 ms poll cannot miss it on a
    loaded machine, as ``0 < moving <= k`` could when a batch of moves was recorded and
    finished between two polls."""
    peak = 0

    def ready() -> bool:
        nonlocal peak
        moving = _move_state(data_dir)[1]
        peak = max(peak, moving)
        return peak > 0 and moving <= max(peak - k, 0)

    return ready


def _kill_when(process: subprocess.Popen[bytes], ready: Any) -> bool:
    """SIGKILL the process once ``ready()`` holds (polled); False if it ended first."""
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            process.send_signal(signal.SIGKILL)
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
def test_sigkill_while_old_object_names_move_leaves_each_file_once(
        tmp_path: Path, central: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects synced under ``benchdata/<ULID>/<name>`` move to new names while
    ``sync --once`` is killed at random points: each file ends as exactly one object,
    under its new name, with a record that names it."""
    from sync import push as push_module
    from sync.objectnames import legacy_object_name, object_name_for

    seed = int(os.environ.get("BENCHDATA_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    data_dir = tmp_path / "bench"
    settings = central.model_copy(update={"part_size": 5 * 1024 * 1024})
    with BenchService(data_dir) as bench:
        section = settings.model_dump(mode="json", exclude={"secret_key", "mongo_url"})
        save_section(bench.paths, "central", section)
        for index in range(RENAME_FILES):
            source = tmp_path / f"src-{index}" / ("same.csv" if index % 2 else f"f{index}.bin")
            source.parent.mkdir()
            size = 6 * 1024 * 1024 + 3 if index == 7 else rng.choice([0, 10, 5000])
            source.write_bytes(rng.randbytes(size))
            bench.capture_file(source)
        with monkeypatch.context() as patched:  # as an older bench named them
            patched.setattr(push_module, "object_name_for", legacy_object_name)
            with SyncEngine(bench, settings) as engine:
                assert engine.run_pass(force=True).ok
    env = {**os.environ, **central_env(settings), "PYTHONPATH": str(ROOT)}
    killed = 0
    for trial in range(RENAME_TRIALS):
        if trial % 3 == 1:  # an edit meanwhile: the move must not lose it
            with BenchService(data_dir) as bench:
                target = bench.latest(RENAME_FILES)[rng.randrange(RENAME_FILES)]
                bench.update(target.datapoint_id, label=f"edited in {trial}")
        old, moving = _move_state(data_dir)
        # Killed where the progress says: after k copies were recorded (copying), or
        # once k recorded moves are finished (deleting old objects), chosen at random.
        # At most a third of what is left, so work remains for the later trials (a run
        # that finds nothing left to move cannot be killed mid-move).
        k = rng.randrange(1, max(2, (old or moving) // 3 + 1))
        if old and rng.random() < 0.6:
            ready = lambda old=old, k=k: _move_state(data_dir)[0] <= old - k  # noqa: E731
        else:
            ready = _after_finished_moves(data_dir, k)
        process = _sync_process(data_dir, env)
        killed += _kill_when(process, ready)
        process.wait(timeout=30)
        assert process.stderr is not None
        stderr = process.stderr.read().decode(errors="replace")
        process.stderr.close()
        assert "Traceback" not in stderr, f"seed {seed}: {stderr}"
    assert killed >= 3, f"seed {seed}: only {killed} runs were killed"

    final = subprocess.run([sys.executable, "-c", CLI, "--data-dir", str(data_dir), "sync",
                            "--once"], env=env, cwd=ROOT, capture_output=True, timeout=300)
    assert final.returncode == 0, f"seed {seed}: {final.stdout!r} {final.stderr!r}"
    with BenchService(data_dir) as bench:
        # An edit the final run pushed moves at the pass after (only confirmed rows move).
        with SyncEngine(bench, settings) as engine:
            report = engine.run_pass(force=True)
            assert report.ok and report.remaining == 0, f"seed {seed}: {report}"
        with bench.store.reader() as conn:
            rows = {r[0]: r for r in conn.execute(
                "SELECT id, sha256, revision, sync_state, label FROM datapoints")}
            assert conn.execute("SELECT COUNT(*) FROM sync_renames").fetchone()[0] == 0
    assert {r[3] for r in rows.values()} == {"confirmed"}, f"seed {seed}"
    client: Any = pymongo.MongoClient(settings.mongo_url.get_secret_value())
    try:
        docs = {d["_id"]: d for d in
                client[settings.mongo_database][settings.mongo_collection].find()}
    finally:
        client.close()
    with ObjectStore(settings) as objects:
        listed = [o.object_name for o in objects.client.list_objects(settings.bucket,
                                                                     recursive=True)]
        by_id: dict[str, list[str]] = {}
        for name in listed:
            by_id.setdefault(ulid_in(name), []).append(name)
        odd = {i: (names, docs.get(i, {}).get("object_name"), rows[i][2])
               for i, names in by_id.items() if len(names) != 1}
        assert not odd and set(by_id) == set(rows) == set(docs), f"seed {seed}: {odd}"
        for name in listed:
            ident = ulid_in(name)
            doc, row = docs[ident], rows[ident]
            assert name == doc["object_name"] == object_name_for(
                settings, ident, doc["filename"]), f"seed {seed}"
            assert doc["sync_revision"] == row[2] and doc["label"] == row[4], f"seed {seed}"
            response = objects.client.get_object(settings.bucket, name)
            try:
                assert hashlib.sha256(response.read()).hexdigest() == row[1] == doc["sha256"]
            finally:
                response.close()
                response.release_conn()
