"""Adapter: MADSci 0.8.1's own data-server and data-client tests, run against the bench.

``tests/madsci_suite/test_madsci_suite.py`` copies this file as ``conftest.py`` beside the
``tests/`` of madsci-data-manager 0.8.1's source distribution and runs that suite with
the MADSci venv's pytest. Only the fixtures that start MADSci's own server (an in-process
``TestClient`` over ``DataManager``) and its Docker object storage are replaced; every
test body and assertion is MADSci's, unchanged:

* ``test_client`` (test_data_server.py): an ``httpx.Client`` (what ``TestClient`` is) on a
  real ``benchdata run`` API server with a fresh, empty store, over real HTTP.
* ``test_manager`` (test_data_server.py): only ``.datapoints.delete_many(selector)`` is
  used; it deletes what the selector matches on that server (``benchdata delete``).
* ``client`` (test_data_client.py): ``DataClient(data_server_url=<that server>)``.
  With ``BENCH_CLIENT=app`` the DataClient test bodies run on the bench's own
  ``app.DataClient`` instead (``client`` and ``mock_data_client`` become a
  ``BenchDataClient``, which forwards each call to ``app_client_bridge.py``), and only
  the tests that use those fixtures run.
* ``object_storage_server``: the SeaweedFS the outer test started (``BENCH_S3``), with
  the ``madsci-test`` bucket MADSci's fixture creates.

Runs in the MADSci venv, so it imports nothing from the bench: the server is a
subprocess of the bench's python (``BENCH_PYTHON`` with ``BENCH_PYTHONPATH``).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest

#: Tests that cannot address a URL: they build MADSci's own ``DataManager`` in-process
#: (with mocked or real object storage) and check how *it* uploads files to S3 at POST
#: time. The bench is another program that stores files locally and syncs them later.
NOT_APPLICABLE: dict[str, str] = {
    "test_data_server.py::test_file_datapoint_with_object_storage":
        "builds MADSci's DataManager in-process with a mocked Minio",
    "test_data_server.py::test_object_storage_unique_keys_for_same_label":
        "builds MADSci's DataManager in-process with a mocked Minio",
    "test_data_server.py::test_real_object_storage_upload":
        "builds MADSci's DataManager in-process against S3",
}

#: With BENCH_CLIENT=app: tests that replace ``get_datapoint`` with a MagicMock inside
#: MADSci's class and check that the other methods call it; ``app.DataClient`` reads the
#: store directly (one batch for many ids), so the mock never sees those calls.
APP_NOT_APPLICABLE: dict[str, str] = {
    "test_data_client.py::test_get_datapoints_by_ids_success":
        "mocks DataClient.get_datapoint and counts its calls",
    "test_data_client.py::test_get_datapoint_metadata":
        "mocks DataClient.get_datapoint to return a datapoint that is in no store",
}

#: Tests expected to fail against the bench, each with the reason (strict: one that starts
#: to pass fails here, so the list stays true). Empty: every test that reaches a URL passes.
EXPECTED_FAILURES: dict[str, str] = {}

_STARTUP_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0


def _node_key(item: pytest.Item) -> str:
    return f"{Path(str(item.fspath)).name}::{item.name}"


def _app_mode() -> bool:
    return os.environ.get("BENCH_CLIENT") == "app"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        key = _node_key(item)
        fixtures = getattr(item, "fixturenames", ())
        if key in NOT_APPLICABLE or (_app_mode() and (
                key in APP_NOT_APPLICABLE
                or not {"client", "mock_data_client"} & set(fixtures))):
            dropped.append(item)
            continue
        if key in EXPECTED_FAILURES:
            item.add_marker(pytest.mark.xfail(reason=EXPECTED_FAILURES[key], strict=True))
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makemodule(module_path: Path, parent: Any) -> Any:
    """Put our fixtures into MADSci's test modules before pytest reads their fixtures: a
    fixture defined in a test module wins over any conftest fixture of the same name."""
    module = yield
    if module_path.name in ("test_data_server.py", "test_data_client.py"):
        for name, replacement in REPLACEMENTS.items():
            if hasattr(module.obj, name):
                setattr(module.obj, name, replacement)
    return module


# -- a real benchdata API server -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BenchServer:
    """``benchdata run`` (API only) on a fresh store in ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.log_path = home / "server.log"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.url = ""

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "BENCHDATA_HOME": str(self.home),
                "PYTHONPATH": os.environ["BENCH_PYTHONPATH"]}

    def start(self) -> None:
        for _attempt in range(3):  # a port taken between choosing and binding: try another
            port = _free_port()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [os.environ["BENCH_PYTHON"], "-m", "app", "run", "--no-sync",
                     "--no-watch", "--api-port", str(port)],
                    env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.home)
            self.url = f"http://127.0.0.1:{port}/"
            if self._wait_until_healthy():
                return
        raise RuntimeError(f"the bench API server did not start:\n{self.log_tail()}")

    def _wait_until_healthy(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(self.url + "health", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling a condition, with a deadline
        self.stop()
        raise TimeoutError(f"no answer from {self.url} in {_STARTUP_TIMEOUT_S} s:\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def delete(self, datapoint_ids: list[str]) -> None:
        if datapoint_ids:
            subprocess.run([os.environ["BENCH_PYTHON"], "-m", "app", "delete", "--yes",
                            *datapoint_ids], env=self.env, check=True, capture_output=True,
                           timeout=120)


@pytest.fixture
def bench_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchServer]:
    server = BenchServer(tmp_path_factory.mktemp("bench"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the replacements ------------------------------------------------------------------------


@pytest.fixture(name="test_client")
def bench_test_client(bench_server: BenchServer) -> Iterator[httpx.Client]:
    """In place of ``TestClient(DataManager(...).create_server())``: the same httpx API,
    over real HTTP to the bench."""
    with httpx.Client(base_url=bench_server.url, timeout=60) as client:
        yield client


class _Collection:
    """What the tests use of ``DataManager.datapoints`` (a MongoDB collection)."""

    def __init__(self, server: BenchServer) -> None:
        self._server = server

    def delete_many(self, selector: dict[str, Any]) -> Any:
        found = httpx.post(self._server.url + "datapoints/query", json=selector, timeout=60)
        found.raise_for_status()
        ids = list(found.json())
        self._server.delete(ids)
        return type("DeleteResult", (), {"deleted_count": len(ids), "acknowledged": True})()


@pytest.fixture(name="test_manager")
def bench_test_manager(bench_server: BenchServer) -> Any:
    """In place of ``DataManager``: only ``.datapoints.delete_many`` is used."""
    return type("BenchManager", (), {"datapoints": _Collection(bench_server)})()


class BenchDataClient:
    """``app.DataClient`` seen from the MADSci venv: each method call goes to
    ``app_client_bridge.py`` (the bench's python, a store of its own). MADSci datapoints
    cross as their JSON documents and come back as MADSci datapoints."""

    def __init__(self, home: Path) -> None:
        self._process = subprocess.Popen(
            [os.environ["BENCH_PYTHON"], str(Path(__file__).with_name("app_client_bridge.py"))],
            env={**os.environ, "BENCHDATA_HOME": str(home),
                 "PYTHONPATH": os.environ["BENCH_PYTHONPATH"]},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=home)

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(_STOP_TIMEOUT_S)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps({"method": method, "args": _encode(args),
                                              "kwargs": _encode(kwargs)}) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"app.DataClient bridge ended (exit {self._process.poll()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"app.DataClient.{method}: {answer['error']}: "
                               f"{answer['message']}")
        return _decode(answer["ok"])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, *args, **kwargs)

        async def async_method(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, *args, **kwargs)

        return async_method if name.startswith("async_") else method


def _encode(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        document = json.loads(value.model_dump_json(by_alias=True))
        return {"__datapoint__": document} if hasattr(value, "datapoint_id") else document
    if isinstance(value, dict):
        return {str(key): _encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, str):  # str enums (DataPointTypeEnum) as their value
        return str.__str__(value)
    return value


def _decode(value: Any) -> Any:
    from madsci.common.types.datapoint_types import DataPoint

    if isinstance(value, dict):
        if "__datapoint__" in value:
            return DataPoint.discriminate(value["__datapoint__"])
        if "__bytes__" in value:
            return base64.b64decode(value["__bytes__"])
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


@pytest.fixture
def bench_app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchDataClient]:
    client = BenchDataClient(tmp_path_factory.mktemp("app-client"))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(name="client")
def bench_data_client(request: pytest.FixtureRequest) -> Any:
    """In place of a DataClient routed into a TestClient: a DataClient on the bench's URL
    (or, with BENCH_CLIENT=app, the bench's own app.DataClient)."""
    if _app_mode():
        return request.getfixturevalue("bench_app_client")
    from madsci.client.data_client import DataClient

    return DataClient(data_server_url=request.getfixturevalue("bench_server").url)


@pytest.fixture(name="mock_data_client")
def bench_mock_data_client(request: pytest.FixtureRequest) -> Any:
    """Only with BENCH_CLIENT=app: app.DataClient in place of MADSci's, with
    ``get_datapoint`` a MagicMock as MADSci's fixture makes it."""
    if not _app_mode():
        pytest.fail("mock_data_client is replaced only with BENCH_CLIENT=app")
    from unittest.mock import MagicMock

    client = request.getfixturevalue("bench_app_client")
    client.get_datapoint = MagicMock()
    return client


@pytest.fixture(name="object_storage_server", scope="session")
def bench_object_storage_server() -> dict[str, Any]:
    """In place of a SeaweedFS Docker container: the SeaweedFS the outer test started,
    with the bucket MADSci's fixture creates."""
    settings = json.loads(os.environ.get("BENCH_S3") or "null")
    if settings is None:
        pytest.fail("BENCH_S3 is not set: the outer test starts SeaweedFS and passes it")
    from minio import Minio

    client = Minio(settings["endpoint"], access_key=settings["access_key"],
                   secret_key=settings["secret_key"], secure=False)
    if not client.bucket_exists("madsci-test"):
        client.make_bucket("madsci-test")
    return settings


REPLACEMENTS: dict[str, Any] = {
    "test_client": bench_test_client,
    "test_manager": bench_test_manager,
    "client": bench_data_client,
    **({"mock_data_client": bench_mock_data_client} if _app_mode() else {}),
    "object_storage_server": bench_object_storage_server,
}
