"""The sync process SIGKILLed at random points, many times: nothing lost, nothing twice."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest

from app.core.config import save_section
from app.service import BenchService
from servers import central_env
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
