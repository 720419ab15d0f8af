"""The GUI thread's share of a long sync upload stays small (issue 13: the stall figure).

While a big file uploads, the store changes every few seconds (each uploaded part is saved
for a resume) and the sync status is read several times a second. These tests pin the
behaviours that keep that off the GUI thread and out of the GIL: unchanged rows and
unchanged tables are not rebuilt, status reads do not pile up, and a status read with a
running engine does not load the settings again.
"""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import Qt

from app.core.models import ValueDataPoint
from app.service import BenchService
from app.ui.sync_panel import SyncPanel
from app.ui.sync_status import QuarantinedItem, SyncSnapshot, read_snapshot
from app.ui.tasks import TaskManager

MARK = Qt.ItemDataRole.UserRole + 7


def test_run_latest_keeps_one_task_per_key_and_runs_the_newest_waiting_one(qtbot: Any) -> None:
    tasks = TaskManager()
    release = threading.Event()
    started: list[str] = []
    delivered: list[str] = []

    def read(name: str) -> Any:
        def work() -> str:
            started.append(name)
            if name == "first":
                release.wait(30)
            return name
        return work

    try:
        for name in ("first", "second", "third"):
            tasks.run_latest("status", read(name), delivered.append)
        qtbot.waitUntil(lambda: started == ["first"], timeout=10_000)
        assert tasks.pending == 1  # the others wait instead of taking pool threads
        release.set()
        qtbot.waitUntil(lambda: delivered == ["first", "third"], timeout=10_000)
        qtbot.waitUntil(tasks.idle, timeout=10_000)
        assert started == ["first", "third"]  # "second" was superseded before it ran
        tasks.run_latest("status", read("again"), delivered.append)
        qtbot.waitUntil(lambda: delivered[-1:] == ["again"], timeout=10_000)
    finally:
        release.set()
        tasks.shutdown()


def test_run_latest_reports_a_failure_and_still_runs_the_waiting_request(qtbot: Any) -> None:
    tasks = TaskManager()
    release = threading.Event()
    errors: list[str] = []
    delivered: list[str] = []

    def broken() -> str:
        release.wait(30)
        raise OSError("disk gone")

    try:
        tasks.run_latest("status", broken, delivered.append, lambda e: errors.append(str(e)))
        tasks.run_latest("status", lambda: "fine", delivered.append)
        release.set()
        qtbot.waitUntil(lambda: delivered == ["fine"], timeout=10_000)
        assert errors == ["disk gone"]
    finally:
        release.set()
        tasks.shutdown()


def test_reloading_an_unchanged_row_keeps_the_detail_pane_as_it_is(
        qtbot: Any, window: Any, service: BenchService) -> None:
    ident = service.submit(ValueDataPoint(label="oven", value={"t": 21.5})).datapoint_id
    with qtbot.waitSignal(window.detail.shown, timeout=10_000):
        window.detail.show_datapoint(ident)
    window.detail.facts.topLevelItem(0).setData(0, MARK, "built once")

    # A commit elsewhere (here: nothing about this row changed) reloads the shown row.
    with qtbot.waitSignal(window.detail.shown, timeout=10_000):
        window.detail.reload()
    assert window.detail.facts.topLevelItem(0).data(0, MARK) == "built once"

    service.update(ident, label="oven 2")
    with qtbot.waitSignal(window.detail.shown, timeout=10_000):
        window.detail.reload()
    assert window.detail.facts.topLevelItem(0).data(0, MARK) is None  # rebuilt
    assert window.detail.title.text() == "oven 2"


def _snapshot(counts: dict[str, int], done: int,
              quarantined: list[QuarantinedItem]) -> SyncSnapshot:
    return SyncSnapshot(counts=counts, backlog_count=1, backlog_bytes=2 << 30,
                        oldest_age_s=3.0, configured=True, engine_running=True, online=True,
                        uploading=("big.bin", done, 2 << 30), quarantined=quarantined)


def test_sync_panel_rebuilds_its_tables_only_when_their_contents_change(qtbot: Any) -> None:
    panel = SyncPanel()
    qtbot.addWidget(panel)
    refused = [QuarantinedItem("ID1", "bad.bin", "refused")]
    panel.show_snapshot(_snapshot({"pending": 1, "confirmed": 5}, 1 << 20, refused))
    panel.counts.item(0, 1).setData(MARK, "kept")
    panel.quarantine.item(0, 0).setData(MARK, "kept")

    # Upload progress alone changes: the counts and the quarantine stay as they are.
    panel.show_snapshot(_snapshot({"pending": 1, "confirmed": 5}, 900 << 20, list(refused)))
    assert panel.upload.value() == 439
    assert panel.counts.item(0, 1).data(MARK) == "kept"
    assert panel.quarantine.item(0, 0).data(MARK) == "kept"

    panel.show_snapshot(_snapshot({"pending": 0, "confirmed": 6}, 2 << 30, []))
    texts = {panel.counts.item(r, 0).text(): panel.counts.item(r, 1).text()
             for r in range(panel.counts.rowCount())}
    assert texts[next(k for k in texts if "(confirmed)" in k)] == "6"
    assert panel.quarantine.rowCount() == 0 and panel.quarantine.isHidden()


class RunningEngine:
    """Just what ``read_snapshot`` reads of a running engine (unit test of its logic)."""

    last_report = None
    progress: dict[str, tuple[int, int]] = {}

    def status(self) -> dict[str, Any]:
        return {"configured": True, "backlog": {"count": 0, "bytes": 0}, "quarantined": []}


def test_a_status_read_with_a_running_engine_does_not_load_the_settings(
        service: BenchService, monkeypatch: Any) -> None:
    import sync.settings

    loads: list[Any] = []
    real = sync.settings.load_settings
    monkeypatch.setattr(sync.settings, "load_settings",
                        lambda *a, **k: loads.append(a) or real(*a, **k))
    snapshot = read_snapshot(service, RunningEngine())
    assert snapshot.configured and snapshot.engine_running
    assert loads == []
    # Without an engine the settings still say whether a central store is set up.
    assert read_snapshot(service).configured is False
    assert loads
