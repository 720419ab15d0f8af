"""The window beside a running ``benchdata run``: it attaches instead of starting a second
service, captures into the same store, lets the service's engine sync its captures (also
after the central store is set up from the window), and takes over when the service stops.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import grab, wait_idle
from tests.support.servers import free_port
from tests.support.waiting import wait_until

from app.admin.lock import read_holder
from app.core.paths import bench_paths
from app.service import BenchService
from app.ui.application import build_window, make_application, start_or_attach

ROOT = Path(__file__).resolve().parents[2]


def start_service(*args: str, watch: bool = False) -> subprocess.Popen[bytes]:
    """``benchdata run`` in its own process, on this test's BENCHDATA_HOME."""
    command = [sys.executable, "-c", "from app.cli import main; main()", "run",
               *([] if watch else ["--no-watch"]), *args]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)

    def running() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the service exited early: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        holder = read_holder(bench_paths())
        return bool(holder and holder.get("pid") == proc.pid and "components" in holder)

    wait_until(running, timeout=60, what="benchdata run to start its components")
    return proc


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture
def attached(qtbot: Any, service: BenchService) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Yields (window, run options); the window is built like ``python -m app`` builds it."""
    make_application([])
    win = build_window(service)
    qtbot.addWidget(win)
    win.resize(1280, 800)
    options: dict[str, Any] = {"api_port": free_port(), "watch": False}
    win.show()
    yield win, options
    win.close()
    if win.attachment is not None:
        win.attachment.stop()
    win.context.tasks.shutdown()
    if win.runner is not None:
        win.runner.stop()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[BenchService]:
    # The store of this test's BENCHDATA_HOME: the one ``benchdata run`` opens too.
    with BenchService() as bench:
        yield bench


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_window_attaches_to_the_running_service_and_takes_over_when_it_stops(
        qtbot: Any, attached: tuple[Any, dict[str, Any]]) -> None:
    win, options = attached
    api_port = free_port()
    proc = start_service("--no-sync", "--api-port", str(api_port))
    try:
        start_or_attach(win, options)
        assert win.runner is None  # no second watcher, API or sync in this window
        assert win.attachment is not None
        assert f"pid {proc.pid}" in win.service_label.text()
        assert f"REST API at http://127.0.0.1:{api_port}/" in win.service_label.toolTip()
        assert win.service_label.isVisible()

        # Captured here, served there: one store.
        captured = win.context.service.capture_value({"t": 1}, label="from-the-window")
        served = get_json(f"http://127.0.0.1:{api_port}/datapoint/{captured.datapoint_id}")
        assert served["_id"] == captured.datapoint_id and served["value"] == {"t": 1}
        qtbot.waitUntil(lambda: win.model.rowCount() == 1, timeout=10_000)
        wait_idle(qtbot, win)
        grab(win, "window-attached.png")
        # Help → Show logs opens the log of the process doing the work: the service's.
        from app.admin.logs import LOG_NAME

        viewer = win.show_logs()
        assert viewer.which.currentData() == LOG_NAME
        viewer.close()
    finally:
        stop_service(proc)

    qtbot.waitUntil(lambda: win.runner is not None, timeout=20_000)
    assert win.attachment is None and not win.service_label.isVisible()
    qtbot.waitUntil(lambda: win.component("rest-api") is not None, timeout=20_000)
    holder = read_holder(bench_paths())
    assert holder is not None and holder["pid"] == os.getpid()
    # The window's own API now serves the store, on the port it was given.
    served = get_json(f"http://127.0.0.1:{options['api_port']}/datapoints?number=5")
    assert captured.datapoint_id in served


def test_a_second_window_attaches_to_the_first(qtbot: Any,
                                               attached: tuple[Any, dict[str, Any]]) -> None:
    """A window that hosts the service is a service like any other to a second window."""
    first, options = attached
    start_or_attach(first, dict(options, sync=False))
    qtbot.waitUntil(lambda: first.component("rest-api") is not None, timeout=20_000)
    with BenchService() as same_store:
        second = build_window(same_store)
        qtbot.addWidget(second)
        try:
            start_or_attach(second, dict(options, api_port=free_port()))
            assert second.runner is None and second.attachment is not None
            qtbot.waitUntil(lambda: "REST API" in second.service_label.toolTip(), timeout=10_000)
        finally:
            second.close()
            if second.attachment is not None:
                second.attachment.stop()
            second.context.tasks.shutdown()


def test_the_services_engine_syncs_what_the_attached_window_captures(
        qtbot: Any, attached: tuple[Any, dict[str, Any]], central: Any) -> None:
    """The service starts with no central store; the window saves the settings (as its
    Settings dialog does); the service's sync follows them and pushes the window's capture,
    and the window's sync panel shows the service's engine at work."""
    from sync.settings import save_settings

    win, options = attached
    proc = start_service("--no-api")
    try:
        start_or_attach(win, options)
        assert win.attachment is not None
        service = win.context.service
        captured = service.capture_value({"t": 2}, label="synced-by-the-service")
        save_settings(service.paths, central)
        win.restart_sync()  # what the dialog calls after saving; a no-op when attached

        def state() -> str:
            with service.store.reader() as conn:
                return str(conn.execute("SELECT sync_state FROM datapoints WHERE id = ?",
                                        (captured.datapoint_id,)).fetchone()[0])

        qtbot.waitUntil(lambda: state() == "confirmed", timeout=60_000)
        with __import__("pymongo").MongoClient(central.mongo_url.get_secret_value()) as client:
            document = client[central.mongo_database][central.mongo_collection].find_one(
                {"_id": captured.datapoint_id})
        assert document is not None and document["value"] == {"t": 2}

        # A snapshot read before the service's engine first ran (no outbox yet) may still be
        # the latest one shown; the window's change poll replaces it, so wait for a fresh one.
        win.refresh_sync()
        qtbot.waitUntil(lambda: win.sync_snapshot is not None
                        and win.sync_snapshot.runs_in is not None
                        and win.sync_snapshot.engine_running, timeout=20_000)
        win.show_sync_panel()
        panel = win.sync_panel
        assert panel.sync_now_button.isEnabled()
        assert not panel.pause_button.isEnabled()
        assert f"pid {proc.pid}" in panel.pause_button.toolTip()
        qtbot.waitUntil(lambda: win.sync_indicator.text.text() == "All synced", timeout=20_000)
        qtbot.waitUntil(lambda: win.sync_snapshot.last_success is not None, timeout=20_000)
        # The table notices the other process's commits too; the status its change poll
        # reads still knows who syncs (it used to lose that, and Pause came back).
        qtbot.waitUntil(lambda: win.model.index(0, 5).data() == "Synced", timeout=20_000)
        service.capture_value({"t": 3}, label="second")
        qtbot.waitUntil(lambda: win.model.rowCount() == 2, timeout=20_000)
        qtbot.waitUntil(lambda: win.sync_snapshot.backlog_count == 0, timeout=60_000)
        assert win.sync_snapshot.runs_in is not None and not panel.pause_button.isEnabled()
        grab(win, "window-attached-sync.png")
    finally:
        stop_service(proc)


def test_the_watch_panel_shows_the_services_watchers_live(
        qtbot: Any, attached: tuple[Any, dict[str, Any]], tmp_path: Path) -> None:
    """The watchers run in the service; the panel shows their state as it changes (it
    said "watching" for every folder, whatever happened), and Scan now reaches them."""
    from app.ingest.health import HealthBoard
    from app.ingest.rules import add_rule

    win, options = attached
    folder = tmp_path / "instrument"
    folder.mkdir()
    add_rule(win.context.service.paths, str(folder), quiet_seconds=0.5)
    proc = start_service("--no-sync", "--no-api", watch=True)
    try:
        start_or_attach(win, options)
        assert win.attachment is not None and win.component("watch") is None
        win.toggle_watch_panel()
        panel = win.watch_panel

        def state() -> str:
            item = panel.table.item(0, 3)
            return item.text() if item is not None else ""

        qtbot.waitUntil(lambda: state().startswith("watching"), timeout=20_000)
        (folder / "run1.csv").write_text("t,v\n1,2\n", encoding="utf-8")
        qtbot.waitUntil(lambda: "1 captured since start" in state(), timeout=20_000)
        grab(win, "watch-panel-live.png")
        panel.table.selectRow(0)
        assert panel.scan_button.isEnabled()
        panel.scan_button.click()
        qtbot.waitUntil(lambda: panel.message.text().startswith("Scanning"), timeout=10_000)
        # The service picks the request up on its next beat.
        board = HealthBoard(win.context.service.store)
        with win.context.service.store.reader() as conn:
            wait_until(lambda: conn.execute(
                "SELECT COUNT(*) FROM ingest_health WHERE scan_requested IS NOT NULL"
            ).fetchone()[0] == 0, timeout=20, what="the service to take the scan request")
        assert list(board.read())
    finally:
        stop_service(proc)
    # The service stopped: its watcher no longer runs, and the panel says so; the window
    # took over without a watcher (this test's options), and the status bar warns.
    qtbot.waitUntil(lambda: state().startswith("not watched"), timeout=20_000)
    win.check_watch_health()
    qtbot.waitUntil(lambda: win.watch_health.isVisible(), timeout=10_000)
    assert win.watch_health.text() == "⚠ 1 watched folder needs attention"
    assert win.watch_health.toolTip() == "instrument: not watched"
    if win.tray is not None:  # where the platform has a tray
        assert "instrument: not watched" in win.tray.toolTip()
