"""A full disk, for real (a small tmpfs): every write path refuses clearly, health and
doctor warn before it is full, the service starts read-only and capture resumes by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.fulldisk import FullDisk, full_disk  # noqa: F401  (the fixture)
from tests.support.waiting import wait_until

from app.api.server import ApiServer
from app.core.errors import DiskFullError
from app.core.models import ValueDataPoint
from app.service import BenchService

#: Every test here fills the disk on purpose; the product logs the refused writes (a 507
#: is a server-side condition the operator must see in the log).
pytestmark = pytest.mark.allow_error_logs

ROOT = Path(__file__).resolve().parents[2]
VALUE = {"data_type": "json", "label": "temp", "value": {"t": 23.5}}


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "BENCHDATA_HOME": str(home), "PYTHONPATH": str(ROOT)}


@pytest.fixture
def bench(full_disk: FullDisk) -> Iterator[BenchService]:  # noqa: F811
    with BenchService(full_disk.root / "bench") as service:
        service.capture_value({"before": True}, label="before")
        yield service


@pytest.fixture
def api(bench: BenchService) -> Iterator[httpx.Client]:
    with ApiServer(bench, port=0) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_store_write_on_full_disk_is_disk_full_error(bench: BenchService,
                                                      full_disk: FullDisk) -> None:  # noqa: F811
    full_disk.fill()
    with pytest.raises(DiskFullError, match="full: nothing was stored; free space"):
        bench.capture_value({"t": 1}, label="lost")
    full_disk.free()
    bench.capture_value({"t": 2}, label="after")
    assert bench.count() == 2


@pytest.mark.parametrize("how", ["fast-json", "fast-form", "multipart-value", "multipart-file"])
def test_every_rest_write_path_answers_507(api: httpx.Client, bench: BenchService,
                                           full_disk: FullDisk, how: str) -> None:  # noqa: F811
    full_disk.fill()
    text = json.dumps(VALUE)
    if how == "fast-json":
        reply = api.post("/datapoint", content=text,
                         headers={"content-type": "application/json"})
    elif how == "fast-form":
        reply = api.post("/datapoint", data={"datapoint": text})
    elif how == "multipart-value":
        reply = api.post("/datapoint", data={"datapoint": text},
                         files={"unused": ("", b"")})
    else:
        file_doc = {"data_type": "file", "label": "f"}
        reply = api.post("/datapoint", data={"datapoint": json.dumps(file_doc)},
                         files={"files": ("f.bin", os.urandom(64 * 1024))})
    assert reply.status_code == 507, reply.text
    assert "full" in reply.json()["detail"]
    full_disk.free()
    assert api.post("/datapoint", data={"datapoint": text}).status_code == 200
    assert bench.count() == 2


def test_framework_route_answers_507(bench: BenchService, full_disk: FullDisk) -> None:  # noqa: F811
    """The same POST without the fast ingest path (FastAPI's own route)."""
    from app.api.app import create_app

    full_disk.fill()
    with ApiServer(app=create_app(bench, fast_ingest=False), port=0) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        reply = client.post("/datapoint", data={"datapoint": json.dumps(VALUE)})
    assert reply.status_code == 507, reply.text


def test_group_committer_batch_on_full_disk_answers_each_caller(
        bench: BenchService, full_disk: FullDisk) -> None:  # noqa: F811
    from concurrent.futures import Future

    from app.api.group_commit import GroupCommitter

    committer = GroupCommitter(bench)
    full_disk.fill()
    batch = [(ValueDataPoint(label="b", value=i), Future()) for i in range(5)]
    outcomes = committer._commit(batch)  # one batch, as the committer thread forms it
    assert all(isinstance(error, DiskFullError) for _, error in outcomes)
    committer.close()


def test_cli_on_full_disk_says_one_sentence(full_disk: FullDisk) -> None:  # noqa: F811
    home = full_disk.root / "home"
    env = _env(home)
    done = subprocess.run([sys.executable, "-m", "app", "add", "value", '{"t": 1}'],
                          env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    full_disk.fill()
    for argv in (["add", "value", '{"t": 2}'], ["names", "id", "experiment", "NEW-EXP"]):
        done = subprocess.run([sys.executable, "-m", "app", *argv], env=env,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "full" in lines[0], \
            done.stderr
    # Reads still work on the full disk.
    done = subprocess.run([sys.executable, "-m", "app", "info", "--json"], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["datapoints"] == 1


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_service_starts_read_only_on_full_disk_and_resumes(full_disk: FullDisk,  # noqa: F811
                                                           tmp_path: Path) -> None:
    home = full_disk.root / "home"
    env = _env(home)
    subprocess.run([sys.executable, "-m", "app", "add", "value", '{"t": 1}'], env=env,
                   check=True, capture_output=True)
    from app.admin.lock import ServiceLock, is_locked
    from app.core.paths import bench_paths

    with ServiceLock(bench_paths(home / "data")):  # a service ran here before the disk filled
        pass
    full_disk.fill()
    port = _free_port()
    console = tmp_path / "console.txt"
    with open(console, "wb") as out:
        service = subprocess.Popen([sys.executable, "-m", "app", "run", "--no-sync",
                                    "--api-port", str(port)], env=env, stdout=out, stderr=out)
    def _wait_for(condition: Callable[[], Any], what: str) -> Any:
        # Until the service listens, a request fails to connect: that is "not yet".
        return wait_until(condition, 60, what, 0.1, ignoring=(httpx.TransportError,))

    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            health = _wait_for(lambda: service.poll() is None and api.get("/health").json(),
                               "the service's /health")
            assert health["healthy"] is False and health["read_only"] is True
            assert "full" in health["description"], health
            assert len(api.get("/datapoints").json()) == 1  # reads work
            text = json.dumps(VALUE)
            assert api.post("/datapoint", data={"datapoint": text}).status_code == 507
            # The REST API answers before the runner has started every component and
            # published its note, so wait for the published note, not the lock's first one.
            holder = _wait_for(lambda: (note := is_locked(bench_paths(home / "data")))
                               and "degraded" in note and note, "the lock's note")
            assert "full" in holder["degraded"], holder  # what the window and doctor show
            full_disk.free()
            _wait_for(lambda: api.post("/datapoint", data={"datapoint": text})
                      .status_code == 200, "capture to resume by itself")
            health = _wait_for(lambda: (h := api.get("/health").json())["healthy"] and h,
                               "a healthy service")
            assert health["read_only"] is False and health["total_datapoints"] == 2
            _wait_for(lambda: (note := is_locked(bench_paths(home / "data"))) is not None
                      and sorted(note.get("components") or []) == ["extract", "rest-api", "verify", "watch"]
                      and note.get("degraded") is None, "the note to say all is well")
    finally:
        service.terminate()
        service.wait(30)
    log = console.read_text(encoding="utf-8")
    assert "Traceback" not in log, log
    assert "read-only, degraded mode" in log and "capture resumed" in log, log


def test_health_and_doctor_warn_of_low_disk_before_it_is_full(
        api: httpx.Client, bench: BenchService, full_disk: FullDisk) -> None:  # noqa: F811
    from app.admin.doctor import WARN, check_free_space
    from app.core.config import save_section

    save_section(bench.paths, "disk", {"low_space_mb": 8})  # of the 16 MiB disk
    health = api.get("/health").json()
    assert health["healthy"] is True and health["disk_low"] is False
    assert health["description"] == "Bench Data Manager is running normally"
    full_disk.fill(leave_bytes=4 * 1024 * 1024)
    health = api.get("/health").json()
    assert health["healthy"] is True and health["disk_low"] is True
    assert "below the warning threshold of 0.01 GiB" in health["description"], health
    assert health["disk_free_bytes"] <= 4 * 1024 * 1024
    check = check_free_space(bench.paths)
    assert check.status == WARN and "below the warning threshold" in check.detail
    bench.capture_value({"still": "captures"})  # low, not full: capture goes on
    full_disk.fill()
    health = api.get("/health").json()
    assert health["healthy"] is False and "the disk is full" in health["description"]


def test_window_says_one_sentence_on_full_disk(qtbot: Any, bench: BenchService,
                                               full_disk: FullDisk) -> None:  # noqa: F811
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt

    from app.ui.application import build_window, make_application

    assert make_application([]) is not None
    window = build_window(bench)
    qtbot.addWidget(window)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.context.tasks.idle() and not window.model.loading,
                        timeout=30_000)
        full_disk.fill()
        dialog = window.new_value()
        dialog.editor.setPlainText('{"t": 21.5}')
        qtbot.waitUntil(dialog.save_button.isEnabled, timeout=30_000)
        qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.message.text().startswith("Not captured:"),
                        timeout=30_000)
        text = dialog.message.text()
        assert "is full" in text and "free space" in text and "\n" not in text, text
        dialog.reject()
    finally:
        window.close()
        window.context.tasks.shutdown()


def test_backup_and_restore_on_full_disk_say_one_sentence(full_disk: FullDisk,  # noqa: F811
                                                          tmp_path: Path) -> None:
    import io

    source = tmp_path / "source"
    with BenchService(source) as service:
        for number in range(20):
            service.capture_stream(io.BytesIO(os.urandom(256 * 1024)), filename=f"{number}.bin")
    env = _env(tmp_path / "home")
    backup_dir = tmp_path / "backup"
    subprocess.run([sys.executable, "-m", "app", "--data-dir", str(source), "backup",
                    str(backup_dir)], env=env, check=True, capture_output=True)
    target = full_disk.root / "bench"
    with BenchService(target) as old:
        old.capture_value({"old": True})
    full_disk.fill(leave_bytes=2 * 1024 * 1024)  # room for the database, not the files
    commands = {"restore": ["--data-dir", str(target), "restore", "--force", str(backup_dir)],
                "backup": ["--data-dir", str(source), "backup", str(full_disk.root / "b")]}
    for what, argv in commands.items():
        done = subprocess.run([sys.executable, "-m", "app", *argv], env=env,
                              capture_output=True, text=True, check=False)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: the disk holding") and "is full" in lines[0]
        if what == "restore":
            assert "nothing was restored" in lines[0]
    with BenchService(target) as old:  # the old store, untouched
        assert old.count() == 1
    assert not (target / "restore-staging").exists()
    assert not list((target / "files").rglob("*.copying"))
