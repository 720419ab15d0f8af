"""MADSci's own Data Manager and DataClient (0.8.1) read what a bench synced, byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.service import BenchService
from tests.support.madsci_env import run_madsci
from tests.support.servers import free_port
from tests.support.waiting import wait_until
from sync.engine import SyncEngine

CLIENT_SCRIPT = r"""
import hashlib, json, sys, warnings
warnings.simplefilter("ignore")
from madsci.client.data_client import DataClient
from madsci.common.types.datapoint_types import ObjectStorageSettings
args = json.loads(sys.argv[1])
storage = ObjectStorageSettings(endpoint=args["endpoint"], access_key=args["access_key"],
                                secret_key=args["secret_key"], secure=False,
                                default_bucket=args["bucket"], region="us-east-1")
client = DataClient(data_server_url=args["url"], object_storage_settings=storage)
def ids(result):  # a list of datapoints, or a dict keyed by id, depending on the method
    return sorted(result) if isinstance(result, dict) else sorted(d.datapoint_id for d in result)
out = {"listed": ids(client.get_datapoints(number=0)),
       "by_label": ids(client.query_datapoints({"label": "temp"})),
       "by_experiment": ids(client.query_datapoints(
           {"ownership_info.experiment_id": args["experiment_id"]})),
       "types": {}, "values": {}, "file_sha256": {}, "saved_sha256": {}}
for ident in args["values"]:
    dp = client.get_datapoint(ident)
    out["types"][ident] = type(dp).__name__
    out["values"][ident] = client.get_datapoint_value(ident)
for ident in args["files"]:
    dp = client.get_datapoint(ident)
    out["types"][ident] = type(dp).__name__
    data = client.get_datapoint_value(ident)
    out["file_sha256"][ident] = hashlib.sha256(data).hexdigest()
    target = args["save_dir"] + "/" + ident
    client.save_datapoint_value(ident, target)
    out["saved_sha256"][ident] = hashlib.sha256(open(target, "rb").read()).hexdigest()
print(json.dumps(out))
"""


@pytest.fixture
def madsci_server(madsci_python: Path, central: Any, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    workdir = tmp_path / "madsci-server"
    workdir.mkdir()
    env = {**os.environ,
           "DATA_DOCUMENT_DB_URL": central.mongo_url.get_secret_value(),
           "DATA_DATABASE_NAME": central.mongo_database,
           "DATA_COLLECTION_NAME": central.mongo_collection,
           "DATA_SERVER_URL": url, "DATA_FILE_STORAGE_PATH": str(workdir / "files"),
           "OBJECT_STORAGE_ENDPOINT": central.endpoint,
           "OBJECT_STORAGE_ACCESS_KEY": central.access_key,
           "OBJECT_STORAGE_SECRET_KEY": central.secret_key.get_secret_value(),
           "OBJECT_STORAGE_SECURE": "false", "OBJECT_STORAGE_DEFAULT_BUCKET": central.bucket,
           "OBJECT_STORAGE_REGION": "us-east-1"}
    env.pop("PYTHONPATH", None)
    with open(workdir / "server.log", "wb") as log:
        process = subprocess.Popen([str(madsci_python), "-m", "madsci.data_manager.data_server"],
                                   cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError((workdir / "server.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(f"{url}health", timeout=2) as response:
                return bool(json.loads(response.read())["healthy"])
        except OSError:
            return False

    try:
        wait_until(healthy, 90, "MADSci's Data Manager")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_madsci_lists_queries_and_downloads_what_a_bench_synced(
        madsci_python: Path, madsci_server: str, central: Any, tmp_path: Path) -> None:
    with BenchService(tmp_path / "bench") as bench, SyncEngine(bench, central) as engine:
        ownership = bench.ownership(experiment="EXP-MADSCI", user="alice")
        values = {
            bench.capture_value({"t": 23.5, "unit": "C"}, label="temp",
                                ownership=ownership).datapoint_id: {"t": 23.5, "unit": "C"},
            bench.capture_value([1, 2.5, None, "x"], label="temp").datapoint_id:
                [1, 2.5, None, "x"],
            bench.capture_value("plain text", label="note", ownership=ownership).datapoint_id:
                "plain text",
        }
        files = {}
        for name, size in (("empty.dat", 0), ("result.csv", 2000), ("result.csv", 3000),
                           ("big.raw", 17 * 1024 * 1024 + 5)):
            folder = tmp_path / f"src-{len(files)}"
            folder.mkdir()
            source = folder / name
            data = os.urandom(size)
            source.write_bytes(data)
            dp = bench.capture_file(source, label="spectrum", ownership=ownership)
            files[dp.datapoint_id] = hashlib.sha256(data).hexdigest()
        report = engine.run_pass(force=True)
        assert report.ok and report.remaining == 0, report
    save_dir = tmp_path / "saved"
    save_dir.mkdir()
    args = {"url": madsci_server, "endpoint": central.endpoint, "access_key": central.access_key,
            "secret_key": central.secret_key.get_secret_value(), "bucket": central.bucket,
            "values": list(values), "files": list(files), "save_dir": str(save_dir),
            "experiment_id": ownership.experiment_id}
    result = run_madsci(madsci_python, CLIENT_SCRIPT, json.dumps(args), timeout=180)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(out["listed"]) == set(values) | set(files)
    temp_ids = [i for i, v in values.items() if v != "plain text"]
    assert out["by_label"] == sorted(temp_ids)
    experiment_ids = {list(values)[0], list(values)[2], *files}
    assert set(out["by_experiment"]) == experiment_ids
    for ident, value in values.items():
        assert out["types"][ident] == "ValueDataPoint"
        assert out["values"][ident] == value
    for ident, sha256 in files.items():
        assert out["types"][ident] == "ObjectStorageDataPoint"
        assert out["file_sha256"][ident] == sha256
        assert out["saved_sha256"][ident] == sha256


NO_S3_CLIENT_SCRIPT = r"""
import hashlib, json, os, sys, urllib.request, warnings
warnings.simplefilter("ignore")
for name in list(os.environ):  # MADSci's default DataClient: no object storage settings
    if name.startswith("OBJECT_STORAGE_"):
        del os.environ[name]
from madsci.client.data_client import DataClient
args = json.loads(sys.argv[1])
client = DataClient(data_server_url=args["url"])
assert client._minio_client is None
out = {"saved": {}, "http": {}, "object_names": {}}
for ident in args["files"]:
    out["object_names"][ident] = client.get_datapoint(ident).object_name
    target = os.path.join(args["save_dir"], ident)
    client.save_datapoint_value(ident, target)
    out["saved"][ident] = hashlib.sha256(open(target, "rb").read()).hexdigest()
    with urllib.request.urlopen(args["url"] + "datapoint/" + ident + "/value") as response:
        out["http"][ident] = hashlib.sha256(response.read()).hexdigest()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_madsci_server_serves_bench_files_to_a_client_without_s3_settings(
        madsci_python: Path, madsci_server: str, central: Any, tmp_path: Path) -> None:
    """MADSci 0.8.1 hands an object to such a client through
    ``NamedTemporaryFile(suffix="_" + object_name)``: only names without ``/`` work."""
    files = {}
    with BenchService(tmp_path / "bench") as bench, SyncEngine(bench, central) as engine:
        for name, size, folder in (("empty.dat", 0, "a"), ("spectrum.raw", 1024 * 1024, "b"),
                                   ("測定–run1 µg°C.csv", 5000, "c"),
                                   ("deep.csv", 777, "instrument/2026/12/run 7/raw")):
            source = tmp_path / "src" / folder / name
            source.parent.mkdir(parents=True)
            data = b"\x00" + os.urandom(size - 1) if size else b""  # never valid JSON
            source.write_bytes(data)
            dp = bench.capture_file(source, label=name)
            files[dp.datapoint_id] = hashlib.sha256(data).hexdigest()
        report = engine.run_pass(force=True)
        assert report.ok and report.remaining == 0, report
    save_dir = tmp_path / "saved"
    save_dir.mkdir()
    args = {"url": madsci_server, "files": list(files), "save_dir": str(save_dir)}
    result = run_madsci(madsci_python, NO_S3_CLIENT_SCRIPT, json.dumps(args), timeout=180)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for ident, sha256 in files.items():
        assert "/" not in out["object_names"][ident] and ident in out["object_names"][ident]
        assert out["saved"][ident] == sha256, ident
        assert out["http"][ident] == sha256, ident
