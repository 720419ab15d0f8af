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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.filestore import FileStore
from app.service import BenchService

ROOT = Path(__file__).resolve().parents[2]
CLI = "from app.cli import main; main()"
TRIALS = 16
_CAPTURED = re.compile(r"^captured ([0-9A-HJKMNP-TV-Z]{26})\b", re.MULTILINE)
_BLOB_NAME = re.compile(r"^[0-9a-f]{64}$")


FILE_SIZES = (0, 100, 70_000, 8 * 1024 * 1024 + 5, 24 * 1024 * 1024 + 1)


@dataclass
class Attempt:
    """One CLI capture: what it was asked to store and what it printed."""

    kind: str  # "value" or "file"
    token: str  # unique: the value's token, or the file's label
    sha256: str | None  # of the file's bytes
    process: subprocess.Popen[bytes]
    started: float
    acknowledged: str | None = None  # the id it printed


def _start(data_dir: Path, args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CLI, "--data-dir", str(data_dir), "add",
                             *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _launch(data_dir: Path, sources: Path, rng: random.Random, size: int | None
            ) -> Attempt:
    """`add value` (size None) or `add file` of ``size`` random bytes."""
    token = uuid.uuid4().hex
    if size is None:
        return Attempt("value", token, None, _start(data_dir, [
            "value", f'{{"token": "{token}"}}', "--label", token]), time.monotonic())
    data = rng.randbytes(size)
    source = sources / f"{token}.bin"
    source.write_bytes(data)
    process = _start(data_dir, ["file", str(source), "--quiet", "--label", token])
    return Attempt("file", token, hashlib.sha256(data).hexdigest(), process, time.monotonic())


def _finish(attempt: Attempt) -> None:
    """Collect what the process printed: its acknowledgement, if it got that far."""
    stdout, stderr = attempt.process.communicate(timeout=60)
    text = stdout.decode(errors="replace")
    assert "Traceback" not in stderr.decode(errors="replace"), stderr
    found = _CAPTURED.findall(text)
    assert len(found) <= 1, text
    attempt.acknowledged = found[0] if found else None
    if attempt.process.returncode == 0:
        assert attempt.acknowledged, text


def _calibrate(data_dir: Path, sources: Path, rng: random.Random
               ) -> tuple[dict[int | None, float], list[Attempt]]:
    """How long each kind of capture takes here, start-up included (one run each)."""
    durations: dict[int | None, float] = {}
    attempts = []
    for size in (None, *FILE_SIZES):
        attempt = _launch(data_dir, sources, rng, size)
        _finish(attempt)
        durations[size] = time.monotonic() - attempt.started
        attempts.append(attempt)
    return durations, attempts


def _kill_when(attempts: list[tuple[Attempt, Callable[[], bool], float]]) -> int:
    """SIGKILL each process once its ``ready()`` holds or its deadline passes (polled
    every millisecond); returns how many were still running when killed."""
    killed = 0
    waiting = list(attempts)
    while waiting:
        for item in list(waiting):
            attempt, ready, deadline = item
            if attempt.process.poll() is not None:
                waiting.remove(item)
            elif ready() or time.monotonic() >= deadline:
                attempt.process.send_signal(signal.SIGKILL)
                killed += 1
                waiting.remove(item)
        time.sleep(0.001)
    for attempt, _ready, _deadline in attempts:
        _finish(attempt)
    return killed


def _moment(attempt: Attempt, expected_s: float, files: FileStore, rng: random.Random
            ) -> tuple[Attempt, Callable[[], bool], float]:
    """When to kill: a random time around the end of the run (start-up is ~0.5 s; the
    capture, its commit and its acknowledgement come last), or for a file once its copy
    is under way, or once its blob is in place but maybe not yet recorded."""
    deadline = attempt.started + expected_s * rng.uniform(0.6, 1.2)
    how = rng.choice(["time", "copying", "placed"]) if attempt.kind == "file" else "time"
    if how == "copying":
        return attempt, lambda: any(files.tmp_dir.glob("*.part")), deadline + 5
    if how == "placed":
        blob = files.path_for(str(attempt.sha256))
        return attempt, blob.exists, deadline + 5
    return attempt, lambda: False, deadline


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
    with BenchService(data_dir) as bench:  # created and migrated: every CLI start is alike
        files = bench.files
    durations, attempts = _calibrate(data_dir, sources, rng)
    killed = 0
    for _trial in range(TRIALS):
        # A value and a file captured side by side, each killed at its own moment.
        sizes = [None, rng.choice(FILE_SIZES)]
        batch = [_launch(data_dir, sources, rng, size) for size in sizes]
        killed += _kill_when([_moment(attempt, durations[size], files, rng)
                              for attempt, size in zip(batch, sizes)])
        attempts.extend(batch)
    assert killed >= TRIALS // 2, f"seed {seed}: only {killed} were killed"
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
                    assert row.value == {"token": attempt.token}, f"seed {seed}"
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
