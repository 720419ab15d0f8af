"""`benchdata add value/file` SIGKILLed at random points, against an independent ledger.

The ledger is what each CLI process printed ("captured <id>") before it was killed: a
capture is acknowledged only then. Afterwards every acknowledged capture is present with
its exact content, no row is half-written (a file row's blob exists and hashes right),
nothing is there twice, and a blob no row uses is only ever the content of a capture that
was killed before it said "captured" (the file store has no start-up sweep of such blobs;
they cost space, never data).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from app.service import BenchService

ROOT = Path(__file__).resolve().parents[1]
CLI = "from app.cli import main; main()"
TRIALS = 10
_CAPTURED = re.compile(r"^captured ([0-9A-HJKMNP-TV-Z]{26})\b", re.M)
_BLOB_NAME = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Attempt:
    """One CLI capture: what it was asked to store and what it printed."""

    kind: str  # "value" or "file"
    token: str  # unique: the value's token, or the file's label
    sha256: Optional[str]  # of the file's bytes
    process: subprocess.Popen[bytes]
    acknowledged: Optional[str] = None  # the id it printed


def _start(data_dir: Path, args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CLI, "--data-dir", str(data_dir), "add",
                             *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _launch_trial(data_dir: Path, sources: Path, rng: random.Random, trial: int
                  ) -> list[Attempt]:
    attempts = []
    for index in range(3):
        token = f"t{trial}-{index}-{uuid.uuid4().hex}"
        if index == 1:
            size = rng.choice([0, 100, 70_000, 8 * 1024 * 1024 + 5, 24 * 1024 * 1024 + 1])
            source = sources / f"{token}.bin"
            data = rng.randbytes(size)
            source.write_bytes(data)
            process = _start(data_dir, ["file", str(source), "--quiet", "--label", token])
            attempts.append(Attempt("file", token, hashlib.sha256(data).hexdigest(), process))
        else:
            process = _start(data_dir, ["value", f'{{"token": "{token}", "n": {index}}}',
                                        "--label", token])
            attempts.append(Attempt("value", token, None, process))
    return attempts


def _kill_at_random(attempts: list[Attempt], rng: random.Random) -> int:
    """SIGKILL each process after a random delay (start-up ~0.6 s, a 24 MiB copy more);
    returns how many were still running when killed."""
    killed = 0
    started = time.monotonic()
    deadlines = sorted((started + rng.uniform(0.3, 1.5), i) for i in range(len(attempts)))
    for deadline, index in deadlines:
        process = attempts[index].process
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            killed += 1
    for attempt in attempts:
        stdout, stderr = attempt.process.communicate(timeout=60)
        text = stdout.decode(errors="replace")
        assert "Traceback" not in stderr.decode(errors="replace"), stderr
        found = _CAPTURED.findall(text)
        assert len(found) <= 1, text
        attempt.acknowledged = found[0] if found else None
        if attempt.process.returncode == 0:
            assert attempt.acknowledged, text
    return killed


def _blobs_on_disk(bench: BenchService) -> set[str]:
    return {p.name for p in bench.files.blobs_dir.rglob("*") if _BLOB_NAME.match(p.name)}


@pytest.mark.slow
def test_cli_captures_killed_at_random_points_lose_nothing_acknowledged(
        tmp_path: Path) -> None:
    seed = int(os.environ.get("BENCHDATA_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    data_dir = tmp_path / "bench"
    sources = tmp_path / "sources"
    sources.mkdir()
    with BenchService(data_dir):
        pass  # created and migrated, so every CLI start does the same work
    attempts: list[Attempt] = []
    killed = 0
    for trial in range(TRIALS):
        batch = _launch_trial(data_dir, sources, rng, trial)
        killed += _kill_at_random(batch, rng)
        attempts.extend(batch)
    assert killed >= len(attempts) // 4, f"seed {seed}: only {killed} were killed"
    assert any(a.acknowledged for a in attempts), f"seed {seed}: nothing was captured"

    with BenchService(data_dir) as bench:
        rows = list(bench.iter_query(None))
        by_label: dict[str, list] = {}
        for row in rows:
            by_label.setdefault(str(row.label), []).append(row)
        assert all(len(found) == 1 for found in by_label.values()), f"seed {seed}: twice"
        for attempt in attempts:
            found = by_label.get(attempt.token, [])
            if attempt.acknowledged:
                assert [r.datapoint_id for r in found] == [attempt.acknowledged], \
                    f"seed {seed}: acknowledged {attempt.token} missing"
            for row in found:  # acknowledged or committed just before the kill: whole
                if attempt.kind == "value":
                    assert row.value == {"token": attempt.token, "n": row.value["n"]}
                else:
                    assert row.sha256 == attempt.sha256, f"seed {seed}: {attempt.token}"
                    assert bench.files.verify(attempt.sha256), f"seed {seed}: blob damaged"
        used = {str(r.sha256) for r in rows if getattr(r, "sha256", None)}
        unacknowledged = {a.sha256 for a in attempts if a.kind == "file" and
                          not by_label.get(a.token)}
        orphans = _blobs_on_disk(bench) - used
        assert orphans <= unacknowledged, f"seed {seed}: blobs nobody captured: {orphans}"
        assert not list(bench.files.tmp_dir.iterdir()), f"seed {seed}: temp files left"
        assert bench.store.integrity_check() == "ok"
