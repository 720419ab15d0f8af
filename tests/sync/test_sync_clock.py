"""A wrong bench clock (libfaketime, 30 minutes off) against the real SeaweedFS +
nx-27017; S3 trouble never holds values back; status describes the latest attempt."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from app.service import BenchService
from tests.support.servers import PrivateCentral, central_env
from tests.support.waiting import wait_until
from sync.engine import SyncEngine
from sync.objects import ObjectStore
from sync.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]
CLI = "from app.cli import main; main()"
#: Checks, with a bare minio client, that the server refuses a skewed signature at all.
PROBE = """
import sys, urllib3
from minio import Minio
from minio.error import S3Error
endpoint, key, secret, bucket = sys.argv[1:5]
client = Minio(endpoint, key, secret, secure=False, region="us-east-1",
               http_client=urllib3.PoolManager(retries=urllib3.Retry(total=0)))
try:
    client.bucket_exists(bucket)
except S3Error as exc:
    print(exc.code)
else:
    print("accepted")
"""


def _faketime(offset: str) -> list[str]:
    binary = shutil.which("faketime")
    if binary is None:
        pytest.fail("Debian's faketime package is needed (apt-get install -y faketime; "
                    ".ci/run installs it)")
    return [binary, "-f", offset]


def _env(settings: Any) -> dict[str, str]:
    # Monotonic clocks stay true: only the wall clock is wrong, as on a misset PC.
    return {**os.environ, **central_env(settings), "PYTHONPATH": str(ROOT),
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def _bench(data_dir: Path, env: dict[str, str], *args: str,
           offset: str = "-30m") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_faketime(offset), sys.executable, "-c", CLI, "--data-dir",
                           str(data_dir), *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("offset", ["-30m", "+30m"])
def test_bench_clock_30_minutes_off_still_syncs_and_says_so(
        tmp_path: Path, central: Any, offset: str) -> None:
    env = _env(central)
    probe = subprocess.run([*_faketime(offset), sys.executable, "-c", PROBE, central.endpoint,
                            central.access_key, central.secret_key.get_secret_value(),
                            central.bucket], env=env, capture_output=True, text=True,
                           timeout=120)
    assert probe.stdout.strip() == "AccessDenied", probe  # the server does check the time

    data_dir = tmp_path / "bench"
    source = tmp_path / "spectrum.csv"
    source.write_bytes(os.urandom(70_000))
    with BenchService(data_dir) as bench:
        value = bench.capture_value({"t": 21.5}, label="temp")
        file_dp = bench.capture_file(source)
    result = _bench(data_dir, env, "sync", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bench clock is 30 minutes off" in result.stderr
    with BenchService(data_dir) as bench:
        for dp in (value, file_dp):
            assert bench.get_stored(dp.datapoint_id).sync_state == "confirmed"
    status = _bench(data_dir, env, "sync", "status", "--json")
    facts = json.loads(status.stdout)
    assert facts["clock"]["minutes_off"] == 30 and facts["clock"]["corrected"]
    assert "bench clock is 30 minutes off" in facts["clock"]["message"]
    assert facts["config_error"] is None and facts["last_attempt"]["ok"]
    with BenchService(data_dir) as bench, ObjectStore(central) as objects:  # true clock
        stored = Outbox(bench.store).objects_for([file_dp.datapoint_id])[file_dp.datapoint_id]
        response = objects.client.get_object(central.bucket, stored["object_name"])
        try:
            assert hashlib.sha256(response.read()).hexdigest() == file_dp.sha256
        finally:
            response.close()
            response.release_conn()


@pytest.mark.allow_error_logs  # a configuration error on purpose: sync logs it
def test_status_describes_the_latest_attempt_not_a_stale_error(
        tmp_path: Path, private_central: PrivateCentral) -> None:
    settings = private_central.settings.model_copy(update={"timeout_s": 2.0})
    wrong = settings.model_copy(update={"secret_key": SecretStr("not-the-secret")})
    source = tmp_path / "f.bin"
    source.write_bytes(b"bytes")
    with BenchService(tmp_path / "b") as bench:
        bench.capture_file(source)
        with SyncEngine(bench, wrong) as engine:
            report = engine.run_pass(force=True)
            assert report.config_error and "secret key" in report.config_error
            assert "secret key" in engine.status()["retrying"][0]["error"]
        private_central.mongo.kill()  # credentials fixed; now MongoDB is down
        with SyncEngine(bench, settings) as engine:
            report = engine.run_pass(force=True)
            assert report.config_error is None and "MongoDB" in str(report.error)
            status = engine.status()
            assert status["config_error"] is None
            assert "MongoDB" in status["last_attempt"]["message"]
            assert not status["last_attempt"]["ok"]
            assert all("secret key" not in r["error"] for r in status["retrying"])
        private_central.mongo.start()
        with SyncEngine(bench, settings) as engine:
            assert engine.run_pass(force=True).ok
            status = engine.status()
            assert status["last_attempt"] == {**status["last_attempt"], "ok": True,
                                              "message": "ok"}
            assert status["retrying"] == []


def test_dead_object_storage_does_not_hold_back_values(
        tmp_path: Path, private_central: PrivateCentral) -> None:
    settings = private_central.settings
    source = tmp_path / "f.bin"
    source.write_bytes(b"bytes")
    with BenchService(tmp_path / "b") as bench, SyncEngine(bench, settings) as engine:
        file_dp = bench.capture_file(source)
        private_central.weed.kill()
        value = bench.capture_value(42)
        report = engine.run_pass(force=True)
        assert report.objects_error and report.config_error is None and report.central_ok
        assert bench.get_stored(value.datapoint_id).sync_state == "confirmed"
        assert bench.get_stored(file_dp.datapoint_id).sync_state == "pending"
        assert "waiting for object storage" in engine.status()["retrying"][0]["error"]
        with bench.store.reader() as conn:  # not tried, so no backoff of its own
            assert conn.execute("SELECT attempts, next_attempt_at FROM sync_outbox").fetchall() \
                == [(0, 0)]
        later = bench.capture_value(43)
        report = engine.run_pass()  # the background loop's pass: the bucket is not asked
        assert report.objects_error and report.confirmed == 1
        assert bench.get_stored(later.datapoint_id).sync_state == "confirmed"
        private_central.weed.start()
        # Asked for (sync now), the bucket is tried at once; a SeaweedFS just restarted
        # may still time out its first writes, so a few passes are allowed.
        wait_until(lambda: engine.run_pass(force=True).ok, 120, "the file synced", 0.5)
        assert engine.status()["backlog"]["count"] == 0


@pytest.mark.parametrize(("skew_s", "corrects", "says"), [
    (1800, True, "bench clock is 30 minutes off (behind"),
    (-1800, True, "bench clock is 30 minutes off (ahead of"),
    (90, True, None),  # corrected, too small to mention
    (10, False, None),  # latency and the header's one-second resolution
])
def test_server_clock_adopts_a_far_server_time(skew_s: int, corrects: bool,
                                               says: Any) -> None:
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from sync.clock import ServerClock

    clock = ServerClock()
    date = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=skew_s),
                           usegmt=True)
    assert clock.observe({"Date": date}) is corrects
    assert clock.observe({"Date": date}) is False  # already signing with it
    assert abs(clock.offset_s - (skew_s if corrects else 0)) < 3
    status = clock.status()
    if says is None:
        assert status is None
    else:
        assert status is not None and says in status["message"]
    assert clock.observe({}) is False and clock.observe({"Date": "garbage"}) is False
