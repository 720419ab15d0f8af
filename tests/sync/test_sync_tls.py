"""TLS with ``secure`` on: the bench verifies the servers against the lab's own CA.

SeaweedFS serves its S3 API over HTTPS itself; nx-27017 cannot, so a TLS-terminating
proxy sits in front of it (``tls_central.py``). Certificates come from a throwaway CA made
at test time. An untrusted certificate must be a configuration error (said once, clearly,
nothing retried or quarantined), never a network fault retried forever.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pymongo
import pytest
from click.testing import CliRunner

from app.cli import cli
from app.service import BenchService
from tests.support.servers import MongoServer, central_env, central_settings
from sync.central import url_uses_tls
from sync.engine import SyncEngine
from sync.objects import ObjectStore
from sync.settings import load_settings
from tests.sync.tls_central import TestCA, TlsProxy, TlsSeaweed, make_ca


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TestCA]:
    """The lab's CA (signs the servers' certificates) and an unrelated one."""
    folder = tmp_path_factory.mktemp("cas")
    return {"lab": make_ca(folder, "lab-ca"), "other": make_ca(folder, "other-ca")}


@pytest.fixture(scope="module")
def tls_weed(tmp_path_factory: pytest.TempPathFactory,
             cas: dict[str, TestCA]) -> Iterator[TlsSeaweed]:
    workdir = tmp_path_factory.mktemp("tls-weed")
    server = TlsSeaweed(workdir, cas["lab"].issue_server_cert(workdir / "cert"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_mongo(tmp_path_factory: pytest.TempPathFactory, cas: dict[str, TestCA],
              mongo: MongoServer) -> Iterator[TlsProxy]:
    cert = cas["lab"].issue_server_cert(tmp_path_factory.mktemp("mongo-cert"))
    assert mongo.port is not None
    with TlsProxy(mongo.port, cert) as proxy:
        yield proxy


def _tls_url(proxy: TlsProxy) -> str:
    return f"mongodb://127.0.0.1:{proxy.port}/?tls=true"


@pytest.fixture
def tls_central(tls_weed: TlsSeaweed, mongo: MongoServer, tls_mongo: TlsProxy,
                cas: dict[str, TestCA]) -> Any:
    """Settings for a fresh bucket and database, both reached over TLS only."""
    return central_settings(tls_weed, mongo, tls_weed.make_bucket(),
                            f"madsci_{secrets.token_hex(4)}", endpoint=tls_weed.https_endpoint,
                            secure=True, mongo_url=_tls_url(tls_mongo),
                            ca_file=str(cas["lab"].cert_file))


def _tls_url_of(settings: Any) -> str:
    return str(settings.mongo_url.get_secret_value())


def _tls_env(settings: Any) -> dict[str, str]:
    return {**central_env(settings), "BENCHDATA_CA_FILE": str(settings.ca_file)}


def _object_sha256(settings: Any, name: str) -> str:
    digest = hashlib.sha256()
    with ObjectStore(settings) as objects:  # over HTTPS, verified against the lab CA
        response = objects.client.get_object(settings.bucket, name)
        try:
            for chunk in response.stream(1024 * 1024):
                digest.update(chunk)
        finally:
            response.close()
            response.release_conn()
    return digest.hexdigest()


def test_values_and_files_sync_over_tls_verified_against_the_lab_ca(
        tmp_path: Path, tls_central: Any, cas: dict[str, TestCA]) -> None:
    small, large = tmp_path / "result.csv", tmp_path / "scan.raw"
    small.write_bytes(b"t,v\n1,2\n")
    large.write_bytes(os.urandom(12 * 1024 * 1024 + 7))  # three parts: multipart over TLS
    with BenchService(tmp_path / "bench") as bench:
        # Configured the way a lab would: environment variables, CA from BENCHDATA_CA_FILE.
        settings = load_settings(bench.paths, environ=_tls_env(tls_central))
        assert settings.secure and settings.ca_file == str(cas["lab"].cert_file)
        values = [bench.capture_value({"run": i, "ok": True}, label=f"v{i}") for i in range(3)]
        files = [bench.capture_file(small), bench.capture_file(large)]
        with SyncEngine(bench, settings.model_copy(update={"part_size": 5 * 1024 * 1024})) \
                as engine:
            report = engine.run_pass(force=True)
        assert report.ok and report.remaining == 0, report
        assert report.confirmed == 5 and report.uploaded_bytes == small.stat().st_size + \
            large.stat().st_size
    client: Any = pymongo.MongoClient(_tls_url_of(tls_central),
                                      tlsCAFile=str(cas["lab"].cert_file),
                                      serverSelectionTimeoutMS=5000)
    try:
        coll = client[tls_central.mongo_database][tls_central.mongo_collection]
        for index, value in enumerate(values):
            doc = coll.find_one({"_id": value.datapoint_id})
            assert doc is not None and doc["value"] == {"run": index, "ok": True}
        for captured in files:
            doc = coll.find_one({"_id": captured.datapoint_id})
            assert doc is not None and doc["data_type"] == "object_storage"
            assert doc["url"].startswith(f"https://{tls_central.endpoint}/")
            assert _object_sha256(tls_central, doc["object_name"]) == captured.sha256
        assert coll.count_documents({}) == 5
    finally:
        client.close()


@pytest.mark.allow_error_logs  # a configuration error on purpose: sync logs it
@pytest.mark.parametrize("server", ["object storage", "MongoDB"])
@pytest.mark.parametrize("trust", ["other CA", "default store", "missing file"])
def test_an_untrusted_certificate_is_a_configuration_error(
        tmp_path: Path, server: str, trust: str, tls_central: Any, central: Any,
        cas: dict[str, TestCA]) -> None:
    """Not retried, not quarantined: the pass stops and says to set the CA bundle."""
    ca_file: Optional[str] = {"other CA": str(cas["other"].cert_file), "default store": None,
                              "missing file": str(tmp_path / "no-such-ca.pem")}[trust]
    if server == "object storage":
        settings = tls_central.model_copy(update={"ca_file": ca_file})
    else:  # plain S3 beside a TLS MongoDB: the CA only matters for MongoDB
        settings = central.model_copy(update={"mongo_url": tls_central.mongo_url,
                                              "ca_file": ca_file})
    settings = settings.model_copy(update={"timeout_s": 1.0})
    with BenchService(tmp_path / "bench") as bench, SyncEngine(bench, settings) as engine:
        captured = bench.capture_value(1)
        report = engine.run_pass(force=True)
        assert not report.ok and report.confirmed == 0
        assert report.config_error is not None, report
        if trust == "missing file":
            assert "no-such-ca.pem" in report.config_error
        else:
            assert server in report.config_error and "certificate" in report.config_error
        assert "ca_file" in report.config_error and "BENCHDATA_CA_FILE" in report.config_error
        status = engine.status()
        assert status["config_error"] == report.config_error
        assert status["retrying"] == [] and status["quarantined"] == []
        assert status["backlog"]["count"] == 1
        assert bench.get_stored(captured.datapoint_id).sync_state == "pending"


@pytest.mark.allow_error_logs  # a configuration error on purpose: sync logs it
def test_https_to_a_plain_http_server_is_a_configuration_error(tmp_path: Path,
                                                                central: Any) -> None:
    """"Use HTTPS" ticked for a server that only speaks HTTP will never start working:
    say so (and what to change) instead of retrying it as a network fault."""
    settings = central.model_copy(update={"secure": True, "timeout_s": 1.0})
    with BenchService(tmp_path / "bench") as bench, SyncEngine(bench, settings) as engine:
        bench.capture_value(1)
        report = engine.run_pass(force=True)
        assert report.config_error is not None, report
        assert "does not speak TLS" in report.config_error
        assert "OBJECT_STORAGE_SECURE" in report.config_error
        assert engine.status()["retrying"] == []


def _cli(data_dir: Path, *args: str, env: Optional[dict[str, str]] = None) -> Any:
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), "sync", *args], env=env,
                              catch_exceptions=False)


@pytest.mark.allow_error_logs  # a configuration error on purpose: sync logs it
def test_cli_configure_ca_file_then_sync_once(tmp_path: Path, tls_central: Any,
                                              cas: dict[str, TestCA],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`sync configure --ca-file` is stored; a wrong CA exits 2 with a message, no traceback."""
    for name in (*central_env(tls_central), "BENCHDATA_CA_FILE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "bench"
    with BenchService(data_dir) as bench:
        bench.capture_value({"x": 1})

    def configure(ca: TestCA) -> None:
        result = _cli(data_dir, "configure", "--preset", "custom",
                      "--endpoint", f"https://{tls_central.endpoint}",
                      "--access-key", str(tls_central.access_key),
                      "--secret-key", tls_central.secret_key.get_secret_value(),
                      "--bucket", str(tls_central.bucket), "--region", "us-east-1",
                      "--ca-file", str(ca.cert_file), "--mongo-url", _tls_url_of(tls_central),
                      "--mongo-database", tls_central.mongo_database)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output[result.output.index("{"):])["ca_file"] == \
            str(ca.cert_file)

    configure(cas["other"])
    refused = _cli(data_dir, "--once")
    assert refused.exit_code == 2, refused.output
    assert "configuration error" in refused.output and "certificate" in refused.output
    assert "--ca-file" in refused.output and "Traceback" not in refused.output
    configure(cas["lab"])
    tested = _cli(data_dir, "test")
    assert tested.exit_code == 0, tested.output
    assert "MongoDB: ok" in tested.output and "object storage: ok" in tested.output
    synced = _cli(data_dir, "--once")
    assert synced.exit_code == 0, synced.output
    facts = json.loads(_cli(data_dir, "status", "--json").output)
    assert facts["backlog"]["count"] == 0 and facts["config_error"] is None


@pytest.mark.parametrize(("url", "tls"), [
    ("mongodb://h:27017/", False),
    ("mongodb://h:27017/?tls=true", True),
    ("mongodb://u:p@h1:1,h2:2/db?replicaSet=rs&TLS=True", True),
    ("mongodb://h/?ssl=true", True),
    ("mongodb://h/?tls=false", False),
    ("mongodb+srv://cluster.example.org/", True),
    ("mongodb+srv://cluster.example.org/?tls=false", False),
])
def test_which_mongodb_urls_use_tls(url: str, tls: bool) -> None:
    """tlsCAFile is only passed then: pymongo would take it as "turn TLS on"."""
    assert url_uses_tls(url) is tls
