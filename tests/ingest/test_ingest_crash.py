"""`benchdata run` SIGKILLed at random moments while files arrive in a watched folder.

Files (unique content, placed by rename as instruments' writers do) keep arriving while
the watching service is killed and restarted. At the end every file is captured exactly
once with its SHA-256, the ingest ledger names each file once with the right datapoint,
and nothing is left pending.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.support.waiting import wait_until

from app.ingest.rules import add_rule
from app.service import BenchService

ROOT = Path(__file__).resolve().parents[2]
CLI = "from app.cli import main; main()"
RUNNING = "service running"
TRIALS = 8


def _start(data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", CLI, "--data-dir", str(data_dir), "run", "--no-api",
             "--no-sync", "--log-level", "INFO"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _captured_count(data_dir: Path) -> int:
    """Datapoints committed so far, read beside the running service (WAL allows it)."""
    conn = sqlite3.connect(f"file:{data_dir / 'store.sqlite3'}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM datapoints").fetchone()[0])
    finally:
        conn.close()


class Arrivals:
    """Files placed into the watched folder (by rename from a sibling folder)."""

    def __init__(self, folder: Path, staging: Path, rng: random.Random) -> None:
        self.folder, self.staging, self.rng = folder, staging, rng
        self.expected: dict[str, str] = {}  # relative path -> SHA-256

    def place(self, count: int) -> None:
        for _ in range(count):
            index = len(self.expected)
            rel = f"run{index % 3}/f{index:04d}.dat" if index % 2 else f"f{index:04d}.dat"
            size = self.rng.choice([1, 500, 60_000, 2 * 1024 * 1024 + 3])
            data = f"{rel}\n".encode() + self.rng.randbytes(size)
            staged = self.staging / f"{index}.tmp"
            staged.write_bytes(data)
            (self.folder / rel).parent.mkdir(exist_ok=True)
            os.replace(staged, self.folder / rel)
            self.expected[rel] = hashlib.sha256(data).hexdigest()
            time.sleep(self.rng.uniform(0, 0.03))  # arrivals spread over the run, not a wait


@pytest.mark.slow
def test_watcher_killed_at_random_moments_captures_each_file_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("BENCHDATA_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    data_dir, folder, staging = tmp_path / "bench", tmp_path / "instrument", tmp_path / "stage"
    folder.mkdir()
    staging.mkdir()
    log = tmp_path / "run.log"
    with BenchService(data_dir) as bench:
        rule = add_rule(bench.paths, str(folder), quiet_seconds=0.2)
    arrivals = Arrivals(folder, staging, rng)
    arrivals.place(5)  # waiting before the first start
    for _trial in range(TRIALS):
        process = _start(data_dir, log)
        arriving = rng.randrange(3, 10)
        total = len(arrivals.expected) + arriving
        writer = threading.Thread(target=arrivals.place, args=(arriving,))
        writer.start()
        try:
            # Killed once a random number more were captured (0: during start-up), then
            # after a random moment more, among the next captures.
            target = min(_captured_count(data_dir) + rng.randrange(0, 6), total)
            wait_until(lambda t=target, p=process: _captured_count(data_dir) >= t
                       or p.poll() is not None, 60, "captures before the kill", interval=0.005)
            assert process.poll() is None, f"seed {seed}: {log.read_text(errors='replace')}"
            time.sleep(rng.uniform(0, 0.3))  # a random moment among the next captures
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            writer.join(60)

    runs_before = log.read_text(errors="replace").count(RUNNING)  # the killed ones
    process = _start(data_dir, log)
    try:
        wait_until(lambda: log.read_text(errors="replace").count(RUNNING) > runs_before
                   or process.poll() is not None, 60, "the last run to start")
        wait_until(lambda: _captured_count(data_dir) >= len(arrivals.expected)
                   or process.poll() is not None, 120, "every file to be captured")
        assert process.poll() is None, f"seed {seed}: {log.read_text(errors='replace')}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text(errors="replace")
    assert "Traceback" not in log.read_text(errors="replace"), f"seed {seed}"

    with BenchService(data_dir) as bench:
        rows = list(bench.iter_query(None))
        by_sha: dict[str, list] = {}
        for row in rows:
            by_sha.setdefault(str(row.sha256), []).append(row)
        twice = {sha: len(found) for sha, found in by_sha.items() if len(found) > 1}
        assert not twice, f"seed {seed}: captured more than once: {twice}"
        assert set(by_sha) == set(arrivals.expected.values()), f"seed {seed}"
        for sha in by_sha:
            assert bench.files.verify(sha), f"seed {seed}: blob {sha} damaged"
        # A blob a killed run placed but never recorded is the same content the next run
        # captured: none is left that no row uses.
        on_disk = {p.name for p in bench.files.blobs_dir.rglob("*") if len(p.name) == 64}
        assert on_disk == set(by_sha), f"seed {seed}: {on_disk - set(by_sha)}"
        with bench.store.reader() as conn:
            ledger = {r[0]: (r[1], r[2]) for r in conn.execute(
                "SELECT rel_path, sha256, datapoint_id FROM ingest_ledger WHERE rule_id = ?",
                (rule.id,))}
            pending = conn.execute("SELECT COUNT(*) FROM ingest_pending").fetchone()[0]
        assert pending == 0, f"seed {seed}"
        assert set(ledger) == set(arrivals.expected), f"seed {seed}"
        for rel, (sha, ident) in ledger.items():
            assert sha == arrivals.expected[rel], f"seed {seed}: {rel}"
            assert [r.datapoint_id for r in by_sha[sha]] == [ident], f"seed {seed}: {rel}"
