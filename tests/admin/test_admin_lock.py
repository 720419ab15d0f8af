"""One service per store: the lock file taken by the headless runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.waiting import wait_until

from app.admin.lock import ServiceLock, ServiceLockedError, is_locked, read_holder
from app.core.paths import bench_paths
from app.runner import HeadlessRunner, RunOptions
from app.service import BenchService

RUN = [sys.executable, "-c", "from app.cli import main; main()", "run", "--no-api",
       "--no-sync", "--no-watch"]


def _holds_lock(proc: subprocess.Popen[bytes], runs: int = 1) -> bool:
    """The lock names ``proc`` and the log says the service is up ``runs`` times (its
    signal handlers are then installed, so SIGTERM stops it cleanly)."""
    if proc.poll() is not None:
        raise AssertionError(f"service exited early with {proc.returncode}")
    holder = read_holder(bench_paths())
    if not (holder and holder.get("pid") == proc.pid):
        return False
    log = bench_paths().log_dir / "benchdata.log"
    return log.exists() and log.read_text(encoding="utf-8").count("service running") >= runs


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM if os.name != "nt" else signal.CTRL_BREAK_EVENT)
    try:
        return proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM")
def test_second_service_on_same_store_fails_with_holder_pid() -> None:
    first = subprocess.Popen(RUN, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _holds_lock(first), what="the first service to hold the lock")
        second = subprocess.run(RUN, capture_output=True, text=True, timeout=30)
        assert second.returncode != 0
        assert f"pid {first.pid}" in second.stderr
        assert "already running on this store" in second.stderr
        assert "--data-dir" in second.stderr
        # one-shot commands are not blocked
        added = subprocess.run([*RUN[:3], "add", "value", "1"], capture_output=True,
                               text=True, timeout=30)
        assert added.returncode == 0, added.stderr
    finally:
        assert _stop(first) == 0
    third = subprocess.Popen(RUN, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _holds_lock(third, runs=2), what="a new service after the first stopped")
    finally:
        assert _stop(third) == 0
    assert is_locked(bench_paths()) is None


def test_runner_takes_and_releases_the_lock(tmp_path: Path) -> None:
    with BenchService(tmp_path / "store") as service:
        first = HeadlessRunner(service, RunOptions(), factories=[])
        first.start()
        try:
            assert is_locked(service.paths)["pid"] == os.getpid()  # type: ignore[index]
            second = HeadlessRunner(service, RunOptions(), factories=[])
            with pytest.raises(ServiceLockedError, match=f"pid {os.getpid()}"):
                second.start()
            second.stop()
        finally:
            first.stop()
        assert is_locked(service.paths) is None
        with ServiceLock(service.paths):
            pass


def test_other_store_is_not_blocked(tmp_path: Path) -> None:
    with ServiceLock(bench_paths(tmp_path / "a")):
        with ServiceLock(bench_paths(tmp_path / "b")) as other:
            assert other.held
