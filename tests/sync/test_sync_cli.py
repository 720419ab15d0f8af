"""``benchdata sync``: --once exit codes, status, retry, configure, and bad settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.service import BenchService
from tests.support.servers import central_env
from sync.settings import CentralSettings, load_settings


def _run(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), "sync", *args], env=env,
                              catch_exceptions=False)


def test_once_pushes_everything_and_exits_zero(tmp_path: Path, central: Any) -> None:
    data_dir = tmp_path / "bench"
    with BenchService(data_dir) as bench:
        bench.capture_value(1, label="a")
        bench.capture_value(2, label="b")
    env = central_env(central)
    status = _run(data_dir, "status", "--json", env=env)
    assert status.exit_code == 0
    assert json.loads(status.output)["backlog"]["count"] == 2
    result = _run(data_dir, "--once", env=env)
    assert result.exit_code == 0, result.output
    assert "confirmed 2" in result.output
    facts = json.loads(_run(data_dir, "status", "--json", env=env).output)
    assert facts["backlog"]["count"] == 0 and facts["last_success"]
    assert facts["quarantined"] == []


@pytest.mark.allow_error_logs  # a configuration error on purpose: sync logs it
def test_wrong_secret_is_a_configuration_error_not_retried(tmp_path: Path, central: Any) -> None:
    data_dir = tmp_path / "bench"
    source = tmp_path / "f.txt"
    source.write_bytes(b"file bytes")
    with BenchService(data_dir) as bench:
        value = bench.capture_value(1)
        bench.capture_file(source)
    env = {**central_env(central), "OBJECT_STORAGE_SECRET_KEY": "wrong-secret"}
    result = _run(data_dir, "--once", env=env)
    assert result.exit_code == 2
    assert "configuration error" in result.output and "secret key" in result.output
    assert "wrong-secret" not in result.output
    facts = json.loads(_run(data_dir, "status", "--json", env=env).output)
    # The value went to MongoDB anyway (values never depend on S3); the file waits.
    assert facts["config_error"] and facts["backlog"]["count"] == 1
    with BenchService(data_dir) as bench:
        assert bench.get_stored(value.datapoint_id).sync_state == "confirmed"
        with bench.store.reader() as conn:
            attempts = conn.execute("SELECT attempts FROM sync_outbox").fetchall()
    assert attempts == [(0,)]  # not tried, so it does not back off: it goes once fixed
    assert "secret key" in facts["retrying"][0]["error"]
    assert _run(data_dir, "--once", env=central_env(central)).exit_code == 0


def test_missing_bucket_is_created_as_madsci_does(tmp_path: Path, central: Any,
                                                  seaweed: Any) -> None:
    """The fixture's SeaweedFS runs with -s3.autoCreateBucket=false: only we create it."""
    import secrets

    bucket = f"made-by-bench-{secrets.token_hex(4)}"
    client, pool = seaweed.client()
    try:
        assert not client.bucket_exists(bucket)
        source = tmp_path / "f.txt"
        source.write_bytes(b"first file")
        with BenchService(tmp_path / "bench") as bench:
            bench.capture_file(source)
        env = {**central_env(central), "OBJECT_STORAGE_DEFAULT_BUCKET": bucket}
        result = _run(tmp_path / "bench", "--once", env=env)
        assert result.exit_code == 0, result.output
        assert client.bucket_exists(bucket)
        assert len(list(client.list_objects(bucket))) == 1
    finally:
        pool.clear()


def test_unconfigured_sync_says_what_is_missing(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "b"), "sync", "--once"],
                                env={"BENCHDATA_MONGO_URL": ""})
    assert result.exit_code == 1
    assert "BENCHDATA_MONGO_URL" in result.output


def test_configure_keeps_secrets_out_of_the_config_file(tmp_path: Path, central: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in central_env(central):
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "bench"
    secret = central.secret_key.get_secret_value()
    result = _run(data_dir, "configure", "--preset", "seaweedfs", "--endpoint",
                  f"http://{central.endpoint}", "--access-key", central.access_key,
                  "--secret-key", secret, "--bucket", central.bucket,
                  "--mongo-url", central.mongo_url.get_secret_value(),
                  "--mongo-database", central.mongo_database)
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    config_text = (data_dir / "config.json").read_text()
    assert secret not in config_text and central.bucket in config_text
    with BenchService(data_dir) as bench:
        settings = load_settings(bench.paths, environ={})
        assert settings.secret_key.get_secret_value() == secret
        assert settings.secure is False and settings.endpoint == central.endpoint
        bench.capture_value(3)
    assert _run(data_dir, "test").exit_code == 0
    assert _run(data_dir, "--once").exit_code == 0


def test_environment_and_presets(tmp_path: Path) -> None:
    with BenchService(tmp_path / "b") as bench:
        settings = load_settings(bench.paths, environ={
            "OBJECT_STORAGE_ENDPOINT": "https://s3.example.org:9000/",
            "OBJECT_STORAGE_ACCESS_KEY": "AK", "OBJECT_STORAGE_SECRET_KEY": "SK",
            "OBJECT_STORAGE_DEFAULT_BUCKET": "lab", "OBJECT_STORAGE_REGION": "eu-1",
            "BENCHDATA_MONGO_URL": "mongodb://u:pw@db.example.org/"})
        assert settings.endpoint == "s3.example.org:9000" and settings.secure
        assert settings.mongo_database == "madsci_data"
        assert settings.mongo_collection == "datapoints"
        assert "pw" not in json.dumps(settings.describe()) and "SK" not in repr(settings)
        gcs = load_settings(bench.paths, environ={"BENCHDATA_CENTRAL_PRESET": "gcs"})
        assert gcs.endpoint == "storage.googleapis.com" and gcs.secure
        aws = load_settings(bench.paths, environ={"BENCHDATA_CENTRAL_PRESET": "aws",
                                                  "OBJECT_STORAGE_SECURE": "false"})
        assert aws.endpoint == "s3.amazonaws.com" and aws.secure is False
    assert CentralSettings(endpoint="h:1").endpoint_url == "http://h:1"


def test_once_as_a_process_flushes_its_report_and_keeps_its_exit_code(
        tmp_path: Path, central: Any) -> None:
    """``sync --once`` ends its process without waiting for pymongo's threads at exit
    (``app.cli.exit_promptly_when_done``): output and exit codes must survive that."""
    import os
    import subprocess
    import sys

    data_dir = tmp_path / "bench"
    with BenchService(data_dir) as bench:
        captured = bench.capture_value({"n": 1}, label="a")
    command = [sys.executable, "-c", "from app.cli import main; main()", "--data-dir",
               str(data_dir), "sync", "--once", "--json"]
    env = {**os.environ, **central_env(central)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["confirmed"] == 1
    with BenchService(data_dir) as bench:
        assert bench.get_stored(captured.datapoint_id).sync_state == "confirmed"
    env["OBJECT_STORAGE_SECRET_KEY"] = "wrong-secret"
    done = subprocess.run(command[:-1], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "configuration error" in done.stderr and "wrong-secret" not in done.stderr
