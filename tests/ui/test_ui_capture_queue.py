"""The capture queue panel: big captures run beside the window, never in a modal dialog."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.ui.conftest import grab, wait_idle
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from app.capture_queue import ItemState
from app.core.models import ValueDataPoint
from app.service import BenchService
from app.ui.capture_panel import ACTION, PROGRESS, STATE
from app.ui.table_model import LABEL

MiB = 1024 * 1024


class MidCopyGate:
    """Holds the queue's worker inside the copy of one file, after its first progress
    report (the copy is real; only its pace is the test's), until released."""

    def __init__(self, queue: Any, name: str) -> None:
        self.queue = queue
        self.name = name
        self.reached = threading.Event()
        self.release = threading.Event()
        queue.subscribe(self)

    def __call__(self) -> None:
        if threading.current_thread().name != "capture-queue":
            if self.queue.closed:
                self.release.set()  # the window closes (or a failed test's teardown)
            return
        if self.reached.is_set():
            return
        for item in self.queue.items():
            if item.request.path.name == self.name and item.state == ItemState.CAPTURING \
                    and item.done_bytes > 0:
                self.reached.set()
                self.release.wait(60)


@pytest.fixture(autouse=True)
def close_without_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest-qt closes the window before fixtures end: never wait on the question there."""
    monkeypatch.setattr("app.ui.main_window.confirm_close_with_captures", lambda *_a: True)


@pytest.fixture
def gates() -> Iterator[list[MidCopyGate]]:
    made: list[MidCopyGate] = []
    yield made
    for gate in made:  # never leave the worker held, whatever failed
        gate.release.set()


def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as out:
        out.truncate(size)
    return path


def drop(window: Any, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    where = QPointF(window.rect().center())
    for event_type in (QDragEnterEvent, QDropEvent):
        event = event_type(where, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                           Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(window, event)
        assert event.isAccepted()


def drop_and_capture(qtbot: Any, window: Any, paths: list[Path],
                     vanish: Path | None = None) -> None:
    """Drop files on the window and press Capture in the dialog that asks about them
    (``vanish`` is moved away between the drop and the click)."""
    drop(window, paths)
    qtbot.waitUntil(lambda: window.dialog is not None and window.dialog.capture_button.isEnabled())
    if vanish is not None:
        vanish.unlink()
    qtbot.mouseClick(window.dialog.capture_button, Qt.MouseButton.LeftButton)
    assert window.dialog is None  # handed over: nothing modal while the files are copied


def row_of(window: Any, name: str) -> int:
    for row in range(window.capture_panel.model.rowCount()):
        if window.capture_panel.model.item_at(row).request.path.name == name:
            return row
    raise AssertionError(f"{name} is not in the queue panel")


def cell(window: Any, name: str, column: int) -> Any:
    model = window.capture_panel.model
    return model.index(row_of(window, name), column).data()


def click_action(qtbot: Any, window: Any, name: str) -> None:
    table = window.capture_panel.table
    index = window.capture_panel.model.index(row_of(window, name), ACTION)
    table.scrollTo(index)
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                     pos=table.visualRect(index).center())


def blobs(service: BenchService) -> list[Path]:
    return [p for p in service.files.blobs_dir.rglob("*") if p.is_file()]


def parts(service: BenchService) -> list[Path]:
    return list(service.files.tmp_dir.glob("*.part"))


def test_a_large_capture_runs_in_the_panel_while_the_window_stays_usable(
        qtbot: Any, window: Any, tmp_path: Path, service: BenchService,
        gates: list[MidCopyGate]) -> None:
    pump = service.submit_many([ValueDataPoint(label=f"chamber-{i}", value=i) for i in range(5)]
                               + [ValueDataPoint(label="pump", value="on")])[-1]
    window.refresh()
    wait_idle(qtbot, window)
    vanished = tmp_path / "plate-reader.csv"
    vanished.write_text("well,od\nA1,0.3\n", encoding="utf-8")
    first = tmp_path / "balance.json"
    first.write_text('{"g": 12.5}', encoding="utf-8")
    big = sparse(tmp_path / "scan-2026.raw", 200 * MiB)
    small = tmp_path / "notes.txt"
    small.write_text("after the scan", encoding="utf-8")
    gate = MidCopyGate(window.capture_queue, big.name)
    gates.append(gate)
    drop_and_capture(qtbot, window, [vanished, first, big, small], vanish=vanished)
    assert window.capture_dock.isVisible()
    qtbot.waitUntil(gate.reached.is_set, timeout=30_000)
    qtbot.waitUntil(lambda: cell(window, big.name, STATE) == "capturing"
                    and 0 < cell(window, big.name, PROGRESS) < 1000)
    assert cell(window, vanished.name, STATE).startswith("failed: ")
    assert cell(window, first.name, STATE) == "done"
    assert cell(window, small.name, STATE) == "queued"
    summary = window.capture_summary
    qtbot.waitUntil(lambda: summary.isVisible()
                    and summary.text().startswith("Capturing 3 of 4 · ")
                    and summary.text().endswith(" left"))

    # Mid-copy the window filters, selects and edits as usual.
    window.filter_bar.search.setText("pump")
    window.filter_bar.apply()
    qtbot.waitUntil(lambda: window.model.rowCount() == 1
                    and window.model.index(0, LABEL).data() == "pump")
    window.table.selectRow(0)
    qtbot.waitUntil(lambda: window.detail.datapoint_id == pump.datapoint_id)
    window.edit_action.trigger()
    qtbot.waitUntil(lambda: window.dialog is not None)
    window.dialog.label.setText("pump (checked)")
    with qtbot.waitSignal(window.dialog.saved, timeout=10_000):
        window.dialog.save()
    qtbot.waitUntil(lambda: window.dialog is None)
    window.filter_bar.clear()
    qtbot.waitUntil(lambda: window.model.rowCount() == 7)  # balance.json is in already
    grab(window, "capture-queue.png")
    assert cell(window, big.name, STATE) == "capturing"  # still held mid-copy

    with qtbot.waitSignal(window.capture_panel.finished, timeout=60_000):
        gate.release.set()
    assert [cell(window, n, STATE) for n in (first.name, big.name, small.name)] == \
        ["done", "done", "done"]
    assert cell(window, big.name, PROGRESS) == 1000
    assert not summary.isVisible()
    assert window.capture_panel.headline.text() == "Captured 3 of 4 · 1 failed"
    # The captured rows appear in the table; the operator's selection stayed where it was.
    qtbot.waitUntil(lambda: window.model.rowCount() == 9, timeout=10_000)
    assert window.detail.datapoint_id == pump.datapoint_id
    assert service.get(pump.datapoint_id).label == "pump (checked)"
    assert {dp.filename for dp in service.query({"data_type": "file"}).items} == \
        {first.name, big.name, small.name}


def test_cancelling_one_item_leaves_the_others_capturing_and_nothing_of_it(
        qtbot: Any, window: Any, tmp_path: Path, service: BenchService,
        gates: list[MidCopyGate]) -> None:
    first = tmp_path / "a-first.csv"
    first.write_text("t\n1\n", encoding="utf-8")
    big = sparse(tmp_path / "b-big.raw", 200 * MiB)
    last = tmp_path / "c-last.csv"
    last.write_text("t\n3\n", encoding="utf-8")
    gate = MidCopyGate(window.capture_queue, big.name)
    gates.append(gate)
    drop_and_capture(qtbot, window, [first, big, last])
    qtbot.waitUntil(gate.reached.is_set, timeout=30_000)
    assert parts(service), "the big file is being copied"
    qtbot.waitUntil(lambda: cell(window, first.name, STATE) == "done"
                    and cell(window, big.name, ACTION) == "Cancel")
    click_action(qtbot, window, big.name)
    qtbot.waitUntil(lambda: cell(window, big.name, STATE) == "cancelling…")
    assert cell(window, last.name, STATE) == "queued"
    with qtbot.waitSignal(window.capture_panel.finished, timeout=30_000):
        gate.release.set()
    assert [cell(window, n, STATE) for n in (first.name, big.name, last.name)] == \
        ["done", "cancelled", "done"]
    assert cell(window, big.name, ACTION) == "Retry"
    captured = service.query({"data_type": "file"}).items
    assert sorted(dp.filename for dp in captured) == [first.name, last.name]
    assert sorted(p.name for p in blobs(service)) == sorted(dp.sha256 for dp in captured)
    assert parts(service) == []  # nothing half-copied is kept
    assert window.capture_panel.headline.text() == "Captured 2 of 3 · 1 cancelled"


def test_a_failed_capture_says_why_and_can_be_retried(qtbot: Any, window: Any,
                                                      tmp_path: Path,
                                                      service: BenchService) -> None:
    gone = tmp_path / "spectrum.csv"
    gone.write_text("nm,abs\n400,0.1\n", encoding="utf-8")
    with qtbot.waitSignal(window.capture_panel.finished, timeout=10_000):
        drop_and_capture(qtbot, window, [gone], vanish=gone)  # moved away before Capture
    state = cell(window, gone.name, STATE)
    assert state.startswith("failed: ") and "spectrum.csv" in state
    assert window.capture_panel.headline.text() == "Captured 0 of 1 · 1 failed"
    assert window.capture_panel.retry_failed_button.isEnabled()
    assert service.count() == 0
    grab(window.capture_dock, "capture-queue-failed.png")

    gone.write_text("nm,abs\n400,0.1\n", encoding="utf-8")  # back where it was
    with qtbot.waitSignal(window.capture_panel.finished, timeout=10_000):
        click_action(qtbot, window, gone.name)
    assert cell(window, gone.name, STATE) == "done"
    assert [dp.filename for dp in service.query({"data_type": "file"}).items] == [gone.name]
    qtbot.waitUntil(lambda: window.model.rowCount() == 1, timeout=10_000)


def test_closing_with_captures_queued_asks_and_says_what_happens_to_them(
        qtbot: Any, window: Any, tmp_path: Path, service: BenchService,
        monkeypatch: pytest.MonkeyPatch, gates: list[MidCopyGate]) -> None:
    big = sparse(tmp_path / "big.raw", 200 * MiB)
    waiting = tmp_path / "waiting.txt"
    waiting.write_text("w", encoding="utf-8")
    gate = MidCopyGate(window.capture_queue, big.name)
    gates.append(gate)
    drop_and_capture(qtbot, window, [big, waiting])
    qtbot.waitUntil(gate.reached.is_set, timeout=30_000)

    # The real question: read it, then keep capturing.
    seen: dict[str, str] = {}

    def answer() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        seen["text"] = box.text() + "\n" + box.informativeText()
        keep = next(b for b in box.buttons() if b.text() == "Keep capturing")
        keep.click()

    from app.ui import capture_panel

    monkeypatch.setattr("app.ui.main_window.confirm_close_with_captures",
                        capture_panel.confirm_close_with_captures)
    QTimer.singleShot(0, answer)
    window.close()
    assert window.isVisible() and window.capture_queue.active()
    assert "2 file(s) are not captured yet" in seen["text"]
    assert "they are NOT captured" in seen["text"] and "originals stay" in seen["text"]

    monkeypatch.setattr("app.ui.main_window.confirm_close_with_captures", lambda *_a: True)
    gate.release.set()
    window.close()
    assert not window.isVisible() and not window.capture_queue.active()
    assert [i.state for i in window.capture_queue.items()] in (
        [ItemState.CANCELLED, ItemState.CANCELLED],
        [ItemState.DONE, ItemState.CANCELLED])  # the copy may finish before the cancel lands
    assert service.count() == len([i for i in window.capture_queue.items()
                                   if i.state == ItemState.DONE])
    assert parts(service) == []
