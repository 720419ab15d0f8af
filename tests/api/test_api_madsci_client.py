"""MADSci's own ``DataClient`` (madsci-client 0.8.1, in its own venv) against our server.

Each test runs one script with the MADSci venv's python in a subprocess; the script
prints a JSON report and the test checks it, so a failure shows what MADSci's client saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.api.app import create_app
from app.api.server import ApiServer
from app.service import BenchService
from tests.support.madsci_env import run_madsci

PRELUDE = r"""
import hashlib, json, os, sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from madsci.client.data_client import DataClient
from madsci.common.types.datapoint_types import FileDataPoint, ValueDataPoint
from madsci.common.types.auth_types import OwnershipInfo

def sha(data):
    return hashlib.sha256(data).hexdigest()

url, work = sys.argv[1], Path(sys.argv[2])
client = DataClient(data_server_url=url)
report = {}
"""

EPILOGUE = r"""
print("REPORT " + json.dumps(report))
"""


def run_report(python: Path, body: str, url: str, work: Path, timeout: float = 150) -> dict[str, Any]:
    result = run_madsci(python, PRELUDE + body + EPILOGUE, url, str(work), timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, f"no report from the MADSci script:\n{result.stdout}\n{result.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(lines[-1][len("REPORT "):])
    return report


VALUES = [None, True, 0, -7, 3.25, "", "température 😀", [], [1, "a", None],
          {}, {"x": 1, "nested": {"y": [1, 2, None]}}]

VALUES_SCRIPT = r"""
values = json.loads(os.environ["VALUES"])
user = "01M858AAAAAAAAAAAAAAAAAAAB"
report["values"] = []
for value in values:
    dp = client.submit_datapoint(ValueDataPoint(label="kind", value=value,
                                                ownership_info=OwnershipInfo(user_id=user)))
    fetched = client.get_datapoint(dp.datapoint_id)
    target = work / f"{dp.datapoint_id}.txt"
    client.save_datapoint_value(dp.datapoint_id, str(target))
    report["values"].append({
        "id": dp.datapoint_id, "returned": dp.value, "type": type(dp).__name__,
        "fetched": fetched.value, "via_client": client.get_datapoint_value(dp.datapoint_id),
        "saved": target.read_text(encoding="utf-8"),
        "owner": fetched.ownership_info.user_id})
# A re-sent datapoint (what the client's retry does) is accepted and stored once.
again = client.submit_datapoint(dp)
report["resubmitted"] = again.datapoint_id == dp.datapoint_id
report["listed"] = [d.datapoint_id for d in client.get_datapoints(number=100)]
report["listed_3"] = [d.datapoint_id for d in client.get_datapoints(number=3)]
report["query_label"] = list(client.query_datapoints({"label": "kind"}))
report["query_nested"] = list(client.query_datapoints({"value.nested.y": [1, 2, None]}))
report["query_owner"] = len(client.query_datapoints({"ownership_info.user_id": user}))
report["query_gt"] = [d.value for d in client.query_datapoints(
    {"label": "kind", "value": {"$gt": 0}}).values()]
try:
    client.get_datapoint("01M858AAAAAAAAAAAAAAAAAAZZ")
    report["missing"] = "no error"
except Exception as exc:
    report["missing"] = getattr(getattr(exc, "response", None), "status_code", repr(exc))
"""


def test_madsci_client_values_lists_and_queries(madsci_python: Path, server: ApiServer,
                                                service: BenchService, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VALUES", json.dumps(VALUES))
    report = run_report(madsci_python, VALUES_SCRIPT, server.url, tmp_path)
    rows = report["values"]
    assert [row["returned"] for row in rows] == VALUES
    assert [row["fetched"] for row in rows] == VALUES
    assert [row["via_client"] for row in rows] == VALUES
    assert {row["type"] for row in rows} == {"ValueDataPoint"}
    assert {row["owner"] for row in rows} == {"01M858AAAAAAAAAAAAAAAAAAAB"}
    # save_datapoint_value writes /value's body (the JSON text), as against MADSci.
    assert [json.loads(row["saved"]) for row in rows] == VALUES
    ids = [row["id"] for row in rows]
    assert report["resubmitted"] is True and service.count() == len(VALUES)
    assert report["listed"] == ids[::-1]
    assert report["listed_3"] == ids[::-1][:3]
    assert report["query_label"] == ids[::-1]
    assert report["query_nested"] == [ids[-1]]
    assert report["query_owner"] == len(VALUES)
    # MongoDB semantics: numbers only (type bracketing), arrays match by element.
    assert report["query_gt"] == [[1, "a", None], 3.25]
    assert report["missing"] == 404


FILES_SCRIPT = r"""
report["files"] = {}
for name in sorted(os.listdir(work / "in")):
    source = work / "in" / name
    original = source.read_bytes()
    dp = client.submit_datapoint(FileDataPoint(label=name, path=str(source)))
    # The instrument overwrites its output file after capture: the bench keeps what was sent.
    source.write_bytes(b"overwritten later")
    value = client.get_datapoint_value(dp.datapoint_id)
    saved = work / "out" / name
    client.save_datapoint_value(dp.datapoint_id, str(saved))
    fetched = client.get_datapoint(dp.datapoint_id)  # parses the extra "custody" field
    report["files"][name] = {
        "fetched_type": type(fetched).__name__,
        "custody": (getattr(fetched, "custody", None) or (fetched.model_extra or {}).get(
            "custody")),
        "id": dp.datapoint_id, "type": type(dp).__name__, "sent": sha(original),
        "size": len(original), "value": sha(value) if isinstance(value, bytes) else repr(value)[:80],
        "saved": sha(saved.read_bytes()), "path_exists": os.path.exists(dp.path),
        "source_path": getattr(dp, "source_path", None)}
"""


def test_madsci_client_files_round_trip_byte_exact(madsci_python: Path, server: ApiServer,
                                                   service: BenchService, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (tmp_path / "out").mkdir()
    contents = {"empty.dat": b"", "run.txt": "line 1\nline 2 é\n".encode(),
                "scan.bin": os.urandom(50 * 1024 * 1024)}
    for name, content in contents.items():
        (inputs / name).write_bytes(content)
    report = run_report(madsci_python, FILES_SCRIPT, server.url, tmp_path)
    for name, content in contents.items():
        row = report["files"][name]
        digest = hashlib.sha256(content).hexdigest()
        assert row["type"] == "FileDataPoint" and row["size"] == len(content)
        assert row["sent"] == digest
        assert row["value"] == digest, f"{name}: get_datapoint_value gave other bytes"
        assert row["saved"] == digest, f"{name}: save_datapoint_value wrote other bytes"
        assert row["path_exists"] and row["source_path"] == str(inputs / name)
        assert row["fetched_type"] == "FileDataPoint"
        assert row["custody"]["captured"]["sha256"] == digest
        assert row["custody"]["safe_to_delete"] is False  # no central copy yet
        stored = service.get(row["id"])
        assert stored.sha256 == digest and stored.path == str(inputs / name)


VALUE_ENDPOINT_SCRIPT = r"""
# Another machine cannot open the bench's file store: the client falls back to /value.
import madsci.client.data_client as data_client_module
real_path = data_client_module.Path

class Unreadable(type(real_path())):
    def open(self, *args, **kwargs):
        raise PermissionError("not on this machine")

dp = client.submit_datapoint(FileDataPoint(label="remote", path=str(work / "remote.txt")))
data_client_module.Path = Unreadable
report["value"] = client.get_datapoint_value(dp.datapoint_id).decode()
report["id"] = dp.datapoint_id
"""


def test_madsci_client_falls_back_to_the_value_route(
        madsci_python: Path, counted_server: tuple[ApiServer, _CountRequests],
        tmp_path: Path) -> None:
    api, counter = counted_server
    (tmp_path / "remote.txt").write_text("served over HTTP", encoding="utf-8")
    report = run_report(madsci_python, VALUE_ENDPOINT_SCRIPT, api.url, tmp_path)
    assert report["value"] == "served over HTTP"
    assert counter.counts["GET", f"/datapoint/{report['id']}/value"] == 1


TOKEN_SCRIPT = r"""
dp = client.submit_datapoint(ValueDataPoint(label="secured", value=1))
report["value"] = client.get_datapoint_value(dp.datapoint_id)
try:
    DataClient(data_server_url=url.replace("bench:", "bench:wrong")).get_datapoints(1)
    report["wrong"] = "accepted"
except Exception as exc:
    report["wrong"] = getattr(getattr(exc, "response", None), "status_code", repr(exc))
"""


def test_madsci_client_passes_a_token_in_the_url(madsci_python: Path, service: BenchService,
                                                 tmp_path: Path) -> None:
    with ApiServer(service, port=0, token="t0ken-for-test") as api:
        url = api.url.replace("http://", "http://bench:t0ken-for-test@")
        report = run_report(madsci_python, TOKEN_SCRIPT, url, tmp_path)
    assert report == {"value": 1, "wrong": 401}


class _CountRequests:
    """ASGI wrapper that counts requests by (method, path) as they arrive."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Counter[tuple[str, str]] = Counter()
        self.arrived = threading.Condition()

    @property
    def posts(self) -> int:
        return self.counts["POST", "/datapoint"]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            with self.arrived:
                self.counts[scope["method"], scope["path"]] += 1
                self.arrived.notify_all()
        await self.app(scope, receive, send)


@pytest.fixture
def counted_server(service: BenchService) -> Iterator[tuple[ApiServer, _CountRequests]]:
    counter = _CountRequests(create_app(service))
    with ApiServer(app=counter, port=0) as api:  # type: ignore[arg-type]
        yield api, counter


RETRY_SCRIPT = r"""
dp = ValueDataPoint(label="slow", value={"t": 1})
stored = client.submit_datapoint(dp, timeout=1.0)
report["id"] = stored.datapoint_id
report["sent_id"] = dp.datapoint_id
"""


def test_madsci_client_retry_after_a_timeout_stores_once(
        madsci_python: Path, counted_server: tuple[ApiServer, _CountRequests],
        service: BenchService, tmp_path: Path) -> None:
    """The store is blocked until the client has given up on its first POST and re-sent
    it: both attempts then complete, and one datapoint is stored."""
    api, counter = counted_server
    hold = threading.Event()
    holding = threading.Event()

    def block_the_store() -> None:
        with service.store.transaction():
            holding.set()
            hold.wait(120)

    blocker = threading.Thread(target=block_the_store)
    blocker.start()
    holding.wait(10)

    def release_after_the_retry() -> None:
        with counter.arrived:
            counter.arrived.wait_for(lambda: counter.posts >= 2 or hold.is_set(), timeout=120)
        hold.set()

    releaser = threading.Thread(target=release_after_the_retry)
    releaser.start()
    try:
        report = run_report(madsci_python, RETRY_SCRIPT, api.url, tmp_path)
    finally:
        hold.set()
        blocker.join(30)
        with counter.arrived:
            counter.arrived.notify_all()  # let the releaser finish
        releaser.join(30)
    assert counter.posts >= 2, "the client did not retry"
    assert report["id"] == report["sent_id"]
    assert service.count() == 1
