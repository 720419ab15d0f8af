"""One way to a datapoint's bytes, over the real SeaweedFS + nx-27017 (issue #11 item 1).

Bench A captures and syncs; bench B, with its service running, serves A's files byte-exact
through REST, the Python API and the CLI; a file freed on A comes back; an object MADSci
wrote (no SHA-256) is verified by size and ETag; a tampered central object is refused; a
file only on MADSci's server disk is "not reachable", never a 500.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pymongo
import pytest
from ulid import ULID

from app.api.server import ApiServer
from app.client import DataClient
from app.core import custody
from app.core.errors import FileDamagedError, FileNotReachableError
from app.service import BenchService
from tests.support.servers import central_env, free_port
from tests.support.waiting import wait_until
from sync.engine import SyncEngine
from sync.objects import ObjectStore
from tests.sync.test_sync_madsci import madsci_server  # noqa: F401  (MADSci 0.8.1's server, a fixture)

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from app.cli import main; main()"]


@pytest.fixture
def configured(central: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every bench of this test (in this process and its children) is configured for
    ``central`` the way an operator configures one: through the environment."""
    env = central_env(central)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def bench_a(tmp_path: Path, central: Any, configured: dict[str, str]
            ) -> Iterator[tuple[BenchService, SyncEngine]]:
    with BenchService(tmp_path / "a") as bench, SyncEngine(bench, central) as engine:
        yield bench, engine


def _capture(bench: BenchService, folder: Path, name: str, data: bytes) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / name
    source.write_bytes(data)
    return bench.capture_file(source, label=name).datapoint_id


def _sync(engine: SyncEngine) -> None:
    report = engine.run_pass(force=True)
    assert report.ok and report.remaining == 0, report


def _collection(central: Any) -> Any:
    client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value())
    return client, client[central.mongo_database][central.mongo_collection]


@pytest.fixture
def running_b(tmp_path: Path, configured: dict[str, str]) -> Iterator[tuple[Path, str]]:
    """Bench B's service (`benchdata run`: sync + REST API) in its own process."""
    data_dir = tmp_path / "b"
    port = free_port()
    env = {**os.environ, **configured, "BENCHDATA_API_PORT": str(port)}
    log = open(tmp_path / "b-run.log", "wb")
    process = subprocess.Popen([*CLI, "--data-dir", str(data_dir), "run", "--no-watch",
                                "--log-level", "WARNING"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"

    def answering() -> bool:
        assert process.poll() is None, (tmp_path / "b-run.log").read_text()[-3000:]
        try:
            return httpx.get(f"{url}health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answering, 60, "bench B's service")
        yield data_dir, url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _wait_pulled(url: str, ids: list[str]) -> None:
    def pulled() -> bool:
        return all(httpx.get(f"{url}datapoint/{i}", timeout=5).status_code == 200 for i in ids)

    wait_until(pulled, 60, "bench B to pull bench A's datapoints")


def test_second_bench_with_its_service_running_serves_the_first_benchs_files(
        bench_a: tuple[BenchService, SyncEngine], running_b: tuple[Path, str],
        tmp_path: Path) -> None:
    a, engine_a = bench_a
    files = {
        _capture(a, tmp_path / "src" / "empty", "empty.dat", b""): b"",
        _capture(a, tmp_path / "src" / "nested" / "deeper", "mesure-é✓ 1.csv",
                 "t,°C\n1,23.5\n".encode() * 1000): "t,°C\n1,23.5\n".encode() * 1000,
        _capture(a, tmp_path / "src" / "mb", "one-mb.bin", os.urandom(1024 * 1024)): b"",
    }
    ids = list(files)
    files[ids[2]] = a.value(ids[2])
    _sync(engine_a)
    data_dir, url = running_b
    _wait_pulled(url, ids)
    empty, named, big = ids

    # Each front end is the first to ask for one file, so each one fetches on its own.
    with DataClient(data_dir) as client:
        assert client.get_datapoint_value(big) == files[big]
        saved = tmp_path / "saved" / "big.bin"
        client.save_datapoint_value(big, saved)
        assert saved.read_bytes() == files[big]
    answer = httpx.get(f"{url}datapoint/{named}/value", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.content == files[named]
    done = subprocess.run([*CLI, "--data-dir", str(data_dir), "value", empty], cwd=ROOT,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""

    for ident, data in files.items():
        assert httpx.get(f"{url}datapoint/{ident}/value", timeout=30).content == data
        done = subprocess.run([*CLI, "--data-dir", str(data_dir), "value", ident], cwd=ROOT,
                              capture_output=True, timeout=60)
        assert done.stdout == data
    with BenchService(data_dir) as b:
        for ident, data in files.items():
            record = custody.custody_of(b.store, ident)
            assert record is not None and record.how == "sha256"
            assert record.sha256 == hashlib.sha256(data).hexdigest()


def test_a_file_freed_on_the_capturing_bench_is_served_again(
        bench_a: tuple[BenchService, SyncEngine], central: Any, tmp_path: Path) -> None:
    a, engine_a = bench_a
    data = os.urandom(200_000)
    ident = _capture(a, tmp_path / "src", "freed.bin", data)
    _sync(engine_a)
    sha256 = hashlib.sha256(data).hexdigest()
    freeing = central.model_copy(update={"free_verified_after_days": 0})
    with SyncEngine(a, freeing) as engine:
        assert engine.run_pass(force=True).freed_files == 1
    assert not a.files.exists(sha256)
    with ApiServer(a, port=0) as api:
        answer = httpx.get(f"{api.url}datapoint/{ident}/value", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.content == data
    assert a.files.exists(sha256)
    record = custody.custody_of(a.store, ident)
    assert record is not None and record.how == "captured"  # the same bytes came back


def _madsci_write(central: Any, data: bytes, label: str) -> str:
    """An object_storage datapoint written the way MADSci 0.8.1's server writes one:
    ``fput_object`` to ``<id>_<label>``, then ``insert_one`` of ``to_mongo()`` plus the
    upload's facts (no SHA-256; data_timestamp a naive ISO string)."""
    ident = str(ULID())
    object_name = f"{ident}_{label}"
    with ObjectStore(central) as objects:
        result = objects.client.put_object(central.bucket, object_name, io.BytesIO(data),
                                           len(data), content_type="application/octet-stream",
                                           metadata={"original_datapoint_id": ident})
    client, collection = _collection(central)
    try:
        collection.insert_one({
            "_id": ident, "label": label, "data_type": "object_storage",
            "data_timestamp": datetime.now().isoformat(), "ownership_info": {},
            "custom_metadata": {}, "path": f"/tmp/tmpabc_{label}",
            "bucket_name": central.bucket, "object_name": object_name,
            "etag": result.etag, "size_bytes": len(data),
            "content_type": "application/octet-stream",
            "storage_endpoint": central.endpoint, "public_endpoint": central.endpoint,
            "url": f"http://{central.endpoint}/{central.bucket}/{object_name}"})
    finally:
        client.close()
    return ident


@pytest.mark.allow_error_logs  # tampers with the central copy on purpose: the refused fetch is logged
def test_objects_madsci_wrote_are_served_verified_by_size_and_etag_and_tampering_is_refused(
        bench_a: tuple[BenchService, SyncEngine], central: Any) -> None:
    b, engine_b = bench_a  # a bench that only pulls here
    small = os.urandom(70_000)
    # Larger than one part of minio's put_object: a multipart ETag (not an MD5).
    large = os.urandom(6 * 1024 * 1024 + 3)
    small_id = _madsci_write(central, small, "small.bin")
    large_id = _madsci_write(central, large, "large.bin")
    tampered_id = _madsci_write(central, b"original bytes", "tampered.bin")
    with ObjectStore(central) as objects:  # replaced behind the record's back
        objects.client.put_object(central.bucket, f"{tampered_id}_tampered.bin",
                                  io.BytesIO(b"modified bytes"), 14)
    _sync(engine_b)
    assert b.get(small_id).data_type.value == "object_storage"
    with ApiServer(b, port=0) as api:
        for ident, data in ((small_id, small), (large_id, large)):
            answer = httpx.get(f"{api.url}datapoint/{ident}/value", timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.content == data
            record = custody.custody_of(b.store, ident)
            assert record is not None and record.how == "etag"
        refused = httpx.get(f"{api.url}datapoint/{tampered_id}/value", timeout=30)
    assert refused.status_code == 502
    assert "has changed since it was recorded" in refused.json()["detail"]
    assert b"modified" not in refused.content
    assert custody.custody_of(b.store, tampered_id) is None
    assert not b.files.exists(hashlib.sha256(b"modified bytes").hexdigest())


def test_a_tampered_central_copy_of_a_bench_file_is_refused(
        bench_a: tuple[BenchService, SyncEngine], central: Any, tmp_path: Path) -> None:
    a, engine_a = bench_a
    data = b"measured value 1\n" * 100
    ident = _capture(a, tmp_path / "src", "run.txt", data)
    _sync(engine_a)
    client, collection = _collection(central)
    try:
        object_name = collection.find_one({"_id": ident})["object_name"]
    finally:
        client.close()
    forged = data.replace(b"1", b"7")
    with ObjectStore(central) as objects:
        stat = objects.client.stat_object(central.bucket, object_name)
        metadata = {k[len("x-amz-meta-"):]: v for k, v in stat.metadata.items()
                    if k.lower().startswith("x-amz-meta-")}
        objects.client.put_object(central.bucket, object_name, io.BytesIO(forged),
                                  len(forged), metadata=metadata)
    with BenchService(tmp_path / "b") as b, SyncEngine(b, central) as engine_b:
        _sync(engine_b)
        with pytest.raises(FileDamagedError, match="does not match its record"):
            b.value(ident)
        assert custody.custody_of(b.store, ident) is None
        assert not b.files.exists(hashlib.sha256(forged).hexdigest())
        done = subprocess.run([*CLI, "--data-dir", str(tmp_path / "b"), "value", ident],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "does not match its record" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_file_only_on_madscis_server_disk_is_not_reachable_never_a_500(
        bench_a: tuple[BenchService, SyncEngine], central: Any) -> None:
    b, engine_b = bench_a
    ident = str(ULID())
    client, collection = _collection(central)
    try:  # MADSci without object storage keeps uploads on its own disk
        collection.insert_one({"_id": ident, "label": "on server disk", "data_type": "file",
                               "data_timestamp": datetime.now().isoformat(),
                               "ownership_info": {}, "custom_metadata": {},
                               "path": f"/srv/madsci/2026/1/1/{ident}_result.csv"})
    finally:
        client.close()
    _sync(engine_b)
    with ApiServer(b, port=0) as api:
        answer = httpx.get(f"{api.url}datapoint/{ident}/value", timeout=30)
    assert answer.status_code == 404
    assert "not reachable from this bench" in answer.json()["detail"]
    with pytest.raises(FileNotReachableError):
        b.value(ident)


@pytest.mark.slow
def test_a_file_madscis_own_server_stored_is_served_by_a_bench(
        madsci_server: str, bench_a: tuple[BenchService, SyncEngine]) -> None:
    """MADSci 0.8.1's server, with object storage, turns an uploaded file into an
    object_storage record without SHA-256; a bench serves it, verified by size and ETag."""
    b, engine_b = bench_a
    data = os.urandom(300_000)
    ident = str(ULID())
    posted = httpx.post(f"{madsci_server}datapoint", timeout=60, data={"datapoint": json.dumps(
        {"datapoint_id": ident, "data_type": "file", "label": "spectrum",
         "path": "spectrum.bin"})}, files={"files": ("spectrum.bin", data)})
    assert posted.status_code == 200, posted.text
    _sync(engine_b)
    stored = b.get(ident)
    assert stored.data_type.value == "object_storage" and getattr(stored, "sha256", None) is None
    with ApiServer(b, port=0) as api:
        answer = httpx.get(f"{api.url}datapoint/{ident}/value", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.content == data
    record = custody.custody_of(b.store, ident)
    assert record is not None and record.how == "etag"
